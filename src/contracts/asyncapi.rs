//! The AsyncAPI 3.0 document of orderflow's topics: every topic the
//! services write or read (the public ones, the internal repartition and
//! changelog topics, the dead-letter topics), each with its key, its
//! payload's schema, its headers and its Kafka bindings, and one operation
//! per service and topic saying who sends and who receives.
//!
//! Internal topics are named after a consumer group (`--group`), so their
//! addresses have a `{group}` parameter whose default is the service's own
//! default group. The payload schemas are the ones `orderflow schema` prints,
//! in the AsyncAPI schema format (a superset of JSON Schema draft-07, the
//! format AsyncAPI tools read), with their shared types under
//! `components/schemas`.

use serde_json::{json, Map, Value};

use super::schemas::{dead_letter_headers, layouts, settings, Draft, DEAD_LETTER_HEADERS};

/// The Kafka bindings' version this document follows.
const BINDING_VERSION: &str = "0.5.0";

/// Who uses a topic, by subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Produce,
    Api,
    Inventory,
    Analytics,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Produce => "produce",
            Service::Api => "api",
            Service::Inventory => "inventory",
            Service::Analytics => "analytics",
        }
    }

    /// The default `--group`, which names its internal topics.
    fn group(self) -> Option<&'static str> {
        match self {
            Service::Produce => None,
            Service::Api => Some("api"),
            Service::Inventory => Some("inventory"),
            Service::Analytics => Some("analytics"),
        }
    }
}

/// What a topic's records are.
#[derive(Debug, Clone, Copy)]
enum Payload {
    /// A layout of `schemas`, by name.
    Layout(&'static str),
    /// A stage's state and the engine's markers (offsets, resets): read
    /// back only by the stage that wrote it.
    State,
    /// A record set aside, as it was read.
    DeadLetter,
}

/// One topic: its channel id in the document, its address (with
/// `{group}` for internal topics), what its key is, what it holds.
struct Topic {
    id: &'static str,
    address: &'static str,
    /// The service whose group names it (internal topics only).
    owner: Option<Service>,
    about: &'static str,
    key: &'static str,
    payload: Payload,
    compacted: bool,
    sent_by: &'static [Service],
    received_by: &'static [Service],
}

use Service::{Analytics, Api, Inventory, Produce};

const TOPICS: &[Topic] = &[
    Topic {
        id: "orderEvents",
        address: "OrderEvents",
        owner: None,
        about: "Orders placed (`--orders-topic`).",
        key: "The order id (a UUID), so all of an order's records share a partition.",
        payload: Payload::Layout("OrderPlaced"),
        compacted: false,
        sent_by: &[Produce, Api],
        received_by: &[Inventory, Api],
    },
    Topic {
        id: "inventoryEvents",
        address: "InventoryEvents",
        owner: None,
        about: "Inventory's decision on each order (`--inventory-topic`).",
        key: "The order id (a UUID).",
        payload: Payload::Layout("InventoryChecked"),
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[Analytics, Api],
    },
    Topic {
        id: "orderMetrics",
        address: "OrderMetrics",
        owner: None,
        about: "Each one-minute window's counts, published once when the window closes (`--metrics-topic`).",
        key: "The window's start, RFC 3339 in UTC with milliseconds.",
        payload: Payload::Layout("WindowClosed"),
        compacted: false,
        sent_by: &[Analytics],
        received_by: &[],
    },
    Topic {
        id: "stockRepartition",
        address: "{group}-stock-repartition",
        owner: Some(Inventory),
        about: "Internal: each order's lines, and what became of the units they took, to the one partition that holds the SKU's stock.",
        key: "The SKU (a batch run's end marker: its upstream partition).",
        payload: Payload::Layout("StockRecord"),
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[Inventory],
    },
    Topic {
        id: "ordersRepartition",
        address: "{group}-orders-repartition",
        owner: Some(Inventory),
        about: "Internal: each line's answer, back to the partition that gathers its order's answers into one decision.",
        key: "The order id.",
        payload: Payload::Layout("OrderRecord"),
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[Inventory],
    },
    Topic {
        id: "stockChangelog",
        address: "{group}-stock-changelog",
        owner: Some(Inventory),
        about: "Internal: the stock stage's state (each SKU's units left, units held for orders in flight, requests waiting).",
        key: "What the value is about: a SKU's level, a held line, a waiting request, or the engine's offset marker.",
        payload: Payload::State,
        compacted: true,
        sent_by: &[Inventory],
        received_by: &[Inventory, Api],
    },
    Topic {
        id: "ordersChangelog",
        address: "{group}-orders-changelog",
        owner: Some(Inventory),
        about: "Internal: the orders stage's state (the orders in flight and their answers so far).",
        key: "The order id, or the engine's offset marker.",
        payload: Payload::State,
        compacted: true,
        sent_by: &[Inventory],
        received_by: &[Inventory],
    },
    Topic {
        id: "mergeRepartition",
        address: "{group}-merge-repartition",
        owner: Some(Analytics),
        about: "Internal: each input partition's share of a window's counts, to the one partition that merges the window, and each input partition's progress in event time, to every partition.",
        key: "The window's start in ms since the epoch (a share), or none (progress).",
        payload: Payload::Layout("Partial"),
        compacted: false,
        sent_by: &[Analytics],
        received_by: &[Analytics],
    },
    Topic {
        id: "countsChangelog",
        address: "{group}-counts-changelog",
        owner: Some(Analytics),
        about: "Internal: the counting stage's state (open windows' counts per input partition).",
        key: "The window's start in ms, or the engine's offset marker.",
        payload: Payload::State,
        compacted: true,
        sent_by: &[Analytics],
        received_by: &[Analytics],
    },
    Topic {
        id: "mergeChangelog",
        address: "{group}-merge-changelog",
        owner: Some(Analytics),
        about: "Internal: the merging stage's state (merged windows not yet closed, each source's progress).",
        key: "What the value is about, or the engine's offset marker.",
        payload: Payload::State,
        compacted: true,
        sent_by: &[Analytics],
        received_by: &[Analytics],
    },
    Topic {
        id: "keysRepartition",
        address: "{group}-keys-repartition",
        owner: Some(Api),
        about: "Internal: orders placed under an `Idempotency-Key`, to the one partition that decides the key.",
        key: "The idempotency key.",
        payload: Payload::Layout("KeyedOrder"),
        compacted: false,
        sent_by: &[Api],
        received_by: &[Api],
    },
    Topic {
        id: "keysChangelog",
        address: "{group}-keys-changelog",
        owner: Some(Api),
        about: "Internal: each idempotency key's answer (its order id and request fingerprint) for the key's retention.",
        key: "The idempotency key, or the engine's offset marker.",
        payload: Payload::State,
        compacted: true,
        sent_by: &[Api],
        received_by: &[Api],
    },
    Topic {
        id: "orderEventsDlq",
        address: "OrderEvents.DLQ",
        owner: None,
        about: "Records of OrderEvents inventory could not use, set aside with the reason.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[],
    },
    Topic {
        id: "inventoryEventsDlq",
        address: "InventoryEvents.DLQ",
        owner: None,
        about: "Records of InventoryEvents analytics could not use, set aside with the reason.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Analytics],
        received_by: &[],
    },
    Topic {
        id: "stockRepartitionDlq",
        address: "{group}-stock-repartition.DLQ",
        owner: Some(Inventory),
        about: "Records of the stock repartition topic set aside.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[],
    },
    Topic {
        id: "ordersRepartitionDlq",
        address: "{group}-orders-repartition.DLQ",
        owner: Some(Inventory),
        about: "Records of the orders repartition topic set aside.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Inventory],
        received_by: &[],
    },
    Topic {
        id: "mergeRepartitionDlq",
        address: "{group}-merge-repartition.DLQ",
        owner: Some(Analytics),
        about: "Records of the merge repartition topic set aside.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Analytics],
        received_by: &[],
    },
    Topic {
        id: "keysRepartitionDlq",
        address: "{group}-keys-repartition.DLQ",
        owner: Some(Api),
        about: "Records of the keys repartition topic set aside.",
        key: "The record's own key.",
        payload: Payload::DeadLetter,
        compacted: false,
        sent_by: &[Api],
        received_by: &[],
    },
];

/// The whole document.
pub fn document() -> Value {
    let (schemas, references) = payload_schemas();
    let mut channels = Map::new();
    let mut operations = Map::new();
    let mut messages = Map::new();
    for topic in TOPICS {
        let message = message_name(topic);
        messages
            .entry(message.clone())
            .or_insert_with(|| message_object(topic, &message, &references));
        channels.insert(topic.id.into(), channel(topic, &message));
        for (action, services) in [("send", topic.sent_by), ("receive", topic.received_by)] {
            for &service in services {
                let id = format!(
                    "{}{}{}",
                    service.name(),
                    capitalized(action),
                    capitalized(topic.id)
                );
                operations.insert(id, operation(topic, &message, action, service));
            }
        }
    }
    json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "orderflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The topics of orderflow, an event-driven order system on Apache Kafka: orders in, stock decisions out, one-minute windows of counts. Values are JSON (UTF-8); with a schema registry they are framed in the Confluent wire format (a zero byte, the 4-byte schema id, then the JSON). Readers ignore fields they do not know. Generated by `orderflow schema --asyncapi`.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The local Apache Kafka of `scripts/kafka up`; any cluster given to `--brokers` serves the same topics.",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "schemas": schemas,
        },
    })
}

/// The payload schemas of every layout, in the AsyncAPI schema format,
/// their shared types beside them; and each layout's reference.
fn payload_schemas() -> (Map<String, Value>, Map<String, Value>) {
    let mut generator = settings(Draft::Draft07)
        .with(|settings| {
            settings.definitions_path = "/components/schemas".into();
            settings.meta_schema = None;
        })
        .into_generator();
    let mut references = Map::new();
    for layout in layouts() {
        let reference = (layout.schema)(&mut generator);
        references.insert(layout.name.into(), reference.to_value());
    }
    let mut schemas = generator.take_definitions(true);
    schemas.insert(DEAD_LETTER_HEADERS.into(), dead_letter_headers());
    (schemas, references)
}

/// A topic's message's name: its layout's, or what all dead letters and
/// all changelogs share.
fn message_name(topic: &Topic) -> String {
    match topic.payload {
        Payload::Layout(name) => name.into(),
        Payload::State => "StateRecord".into(),
        Payload::DeadLetter => "DeadLetter".into(),
    }
}

fn message_object(topic: &Topic, name: &str, references: &Map<String, Value>) -> Value {
    let key_binding =
        |key: Value| json!({ "kafka": { "key": key, "bindingVersion": BINDING_VERSION } });
    match topic.payload {
        Payload::Layout(layout) => {
            let mut message = json!({
                "name": name,
                "title": name,
                "payload": references[layout],
                "bindings": key_binding(json!({ "type": "string" })),
            });
            if topic.owner.is_none() {
                // A public topic: with `--schema-registry`, its values are
                // framed with the id of their schema under `<topic>-value`.
                let kafka = &mut message["bindings"]["kafka"];
                kafka["schemaIdLocation"] = "payload".into();
                kafka["schemaIdPayloadEncoding"] = "confluent".into();
                kafka["schemaLookupStrategy"] = "TopicNameStrategy".into();
            }
            message
        }
        Payload::State => json!({
            "name": name,
            "title": "A stage's state",
            "summary": "What a stage keeps, and the engine's records: only the stage that wrote it reads it back, and its layout is the stage's own.",
            "payload": {
                "description": "JSON per kind of key; the engine's offset marker (key `__orderflow.offset`) holds the next input offset as text, its reset record (key `__orderflow.reset`) the text `reset`; a null value deletes the key.",
            },
            "bindings": key_binding(json!({ "type": "string" })),
        }),
        Payload::DeadLetter => json!({
            "name": name,
            "title": "A record set aside",
            "summary": "A record the service could not use, unchanged (key, value, timestamp), with headers saying why and where it was read.",
            "contentType": "application/octet-stream",
            "headers": { "$ref": format!("#/components/schemas/{DEAD_LETTER_HEADERS}") },
            "payload": { "description": "The record's value as it was read: any bytes." },
            "bindings": key_binding(json!({ "description": "The record's key as it was read: any bytes." })),
        }),
    }
}

fn channel(topic: &Topic, message: &str) -> Value {
    let mut kafka = json!({ "topic": topic.address, "bindingVersion": BINDING_VERSION });
    if topic.compacted {
        kafka["topicConfiguration"] = json!({ "cleanup.policy": ["compact"] });
    }
    let mut channel = json!({
        "address": topic.address,
        "description": format!("{} Key: {}", topic.about, topic.key),
        "messages": { message: { "$ref": format!("#/components/messages/{message}") } },
        "bindings": { "kafka": kafka },
    });
    if let Some(owner) = topic.owner {
        channel["parameters"] = json!({
            "group": {
                "description": format!("The `--group` of `orderflow {}`, which names its internal topics.", owner.name()),
                "default": owner.group(),
            },
        });
    }
    channel
}

fn operation(topic: &Topic, message: &str, action: &str, service: Service) -> Value {
    let verb = if action == "send" { "writes" } else { "reads" };
    let mut operation = json!({
        "action": action,
        "channel": { "$ref": format!("#/channels/{}", topic.id) },
        "summary": format!("`orderflow {}` {verb} {}.", service.name(), topic.address),
        "messages": [{ "$ref": format!("#/channels/{}/messages/{message}", topic.id) }],
    });
    if let (Some(group), "receive") = (service.group(), action) {
        operation["bindings"] = json!({
            "kafka": {
                "groupId": { "type": "string", "description": "Its consumer groups are named after its `--group`.", "default": group },
                "bindingVersion": BINDING_VERSION,
            },
        });
    }
    operation
}

fn capitalized(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::services::{analytics, api, inventory};

    /// Every internal topic a service makes is in the document, with its
    /// group as the address's parameter.
    #[test]
    fn every_internal_topic_is_a_channel() {
        let document = document();
        let addresses: Vec<String> = document["channels"]
            .as_object()
            .unwrap()
            .values()
            .map(|channel| channel["address"].as_str().unwrap().to_owned())
            .collect();
        let made = [
            inventory::internal_topics("{group}"),
            analytics::internal_topics("{group}"),
            api::internal_topics("{group}"),
        ];
        for topic in made.concat() {
            assert!(addresses.contains(&topic), "{topic} is missing");
        }
        for public in ["OrderEvents", "InventoryEvents", "OrderMetrics"] {
            assert!(addresses.contains(&public.to_owned()), "{public}");
            assert!(addresses.contains(&format!("{public}.DLQ")) || public == "OrderMetrics");
        }
    }

    /// Every `$ref` in the document points at something in it.
    #[test]
    fn every_reference_resolves() {
        let document = document();
        let text = document.to_string();
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let pointer = target.strip_prefix('#').expect(target);
            assert!(document.pointer(pointer).is_some(), "{target}");
        }
    }

    #[test]
    fn operations_say_which_service_does_what() {
        let document = document();
        let operations = &document["operations"];
        assert_eq!(
            operations["inventoryReceiveOrderEvents"]["action"],
            "receive"
        );
        assert_eq!(operations["inventorySendInventoryEvents"]["action"], "send");
        assert_eq!(operations["apiSendOrderEvents"]["action"], "send");
        assert_eq!(
            operations["analyticsReceiveMergeRepartition"]["bindings"]["kafka"]["groupId"]
                ["default"],
            "analytics"
        );
        assert!(operations.get("produceReceiveOrderEvents").is_none());
    }
}
