//! Every record layout orderflow writes or reads, by name, as a JSON Schema
//! generated from its Rust type.
//!
//! The public events (`OrderPlaced`, `InventoryChecked`, `WindowClosed`)
//! are the contracts other teams build on. The records of the internal
//! topics (the repartition topics between stages) are listed too: they are
//! orderflow's own and may change with any release, but a tool reading an
//! internal topic can still check what it sees. A dead letter's value is
//! the record set aside, whatever it was; what orderflow adds is its
//! headers, whose schema is [`dead_letter_headers`].
//!
//! The public events' objects are closed (`additionalProperties: false`,
//! `#[schemars(deny_unknown_fields)]` on their types): a record is
//! exactly its fields, so that adding an optional field makes a new schema
//! that can read every record of the old one, the change a registry's
//! BACKWARD rule allows (an open object may have held the new field with
//! any type, so adding it to one is not backward compatible). Readers
//! still ignore fields they do not know (see `domain::events`): a record
//! is checked against the schema it was written with, not the reader's.
//!
//! The schemas are printed in draft 2020-12. A schema registry is given
//! them in draft-07 ([`Draft::Draft07`]): Apicurio Registry's
//! Confluent-compatible API checks the compatibility of draft-04 to
//! draft-07 schemas only, and draft-07 is the draft every JSON Schema
//! library reads.

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde_json::{json, Map, Value};

use crate::domain::events::{InventoryChecked, OrderPlaced, WindowClosed};
use crate::domain::lines::{OrderRecord, StockRecord};
use crate::domain::partials::Partial;
use crate::domain::placing::KeyedOrder;
use crate::engine::dlq_headers;

/// The name of the headers-only layout of dead letters.
pub const DEAD_LETTER_HEADERS: &str = "DeadLetterHeaders";

/// One record layout: its name (the Rust type's), whether other teams may
/// build on it, and its schema from a generator (whose settings choose the
/// draft and where shared definitions go).
pub struct Layout {
    pub name: &'static str,
    pub public: bool,
    pub schema: fn(&mut SchemaGenerator) -> Schema,
}

fn layout<T: JsonSchema>(public: bool) -> Layout {
    Layout {
        name: short_name::<T>(),
        public,
        schema: |generator| generator.subschema_for::<T>(),
    }
}

/// The type's own name, without its module path: the name schemars gives
/// its definition, and the schema's title.
fn short_name<T>() -> &'static str {
    let path = std::any::type_name::<T>();
    path.rsplit("::").next().unwrap_or(path)
}

/// Every record layout with a Rust type, public events first.
pub fn layouts() -> Vec<Layout> {
    vec![
        layout::<OrderPlaced>(true),
        layout::<InventoryChecked>(true),
        layout::<WindowClosed>(true),
        layout::<StockRecord>(false),
        layout::<OrderRecord>(false),
        layout::<Partial>(false),
        layout::<KeyedOrder>(false),
    ]
}

/// The names `orderflow schema NAME` takes.
pub fn names() -> Vec<&'static str> {
    let mut names: Vec<_> = layouts().iter().map(|layout| layout.name).collect();
    names.push(DEAD_LETTER_HEADERS);
    names
}

/// The JSON Schema dialects the schemas are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Draft {
    /// What `orderflow schema` prints.
    Draft2020_12,
    /// What a schema registry is given.
    Draft07,
}

/// How schemas are generated in `draft`.
pub fn settings(draft: Draft) -> SchemaSettings {
    match draft {
        Draft::Draft2020_12 => SchemaSettings::draft2020_12(),
        Draft::Draft07 => SchemaSettings::draft07(),
    }
}

/// The schema (draft 2020-12) of the layout called `name`, standing alone:
/// the types it uses are in its own `$defs`. None for an unknown name.
pub fn json_schema(name: &str) -> Option<Value> {
    json_schema_in(name, Draft::Draft2020_12)
}

/// The schema of the layout called `name` in `draft`, standing alone.
pub fn json_schema_in(name: &str, draft: Draft) -> Option<Value> {
    if name == DEAD_LETTER_HEADERS {
        let mut schema = dead_letter_headers();
        let object = schema.as_object_mut().expect("an object schema");
        let meta_schema = settings(draft).meta_schema;
        object.insert("$schema".into(), meta_schema.as_deref().into());
        object.insert("title".into(), DEAD_LETTER_HEADERS.into());
        return Some(schema);
    }
    let layout = layouts().into_iter().find(|layout| layout.name == name)?;
    let mut generator = settings(draft).into_generator();
    // The layout as a reference into the generator's definitions, then made
    // the root: its own definition inlined, the others kept under $defs.
    (layout.schema)(&mut generator);
    let mut definitions = generator.take_definitions(true);
    let Some(Value::Object(mut root)) = definitions.remove(name) else {
        unreachable!("a derived layout is a named definition")
    };
    let mut schema = Map::new();
    schema.insert(
        "$schema".into(),
        generator.settings().meta_schema.as_deref().into(),
    );
    schema.insert("title".into(), name.into());
    schema.append(&mut root);
    if !definitions.is_empty() {
        let path = &generator.settings().definitions_path;
        let key = path.trim_start_matches('/');
        schema.insert(key.into(), Value::Object(definitions));
    }
    Some(Value::Object(schema))
}

/// Every layout's standalone schema, by name.
pub fn json_schemas() -> Value {
    let schemas = names()
        .into_iter()
        .map(|name| {
            let schema = json_schema(name).expect("a listed layout has a schema");
            (name.to_owned(), schema)
        })
        .collect::<Map<_, _>>();
    Value::Object(schemas)
}

/// The headers orderflow puts on a dead letter, each a UTF-8 string: why it
/// was set aside, and where it was read.
pub fn dead_letter_headers() -> Value {
    let digits = json!({ "type": "string", "pattern": "^-?[0-9]+$" });
    json!({
        "type": "object",
        "description": "The headers of a dead letter (its key and value are the record set aside, unchanged).",
        "properties": {
            (dlq_headers::ERROR): {
                "type": "string",
                "description": "Why the record was set aside: what was wrong with it, or what Kafka said when it refused the record written for it."
            },
            (dlq_headers::TOPIC): { "type": "string", "description": "The topic it was read from." },
            (dlq_headers::PARTITION): { "description": "The partition it was read from.", "allOf": [digits] },
            (dlq_headers::OFFSET): { "description": "Its offset there.", "allOf": [digits] },
        },
        "required": [dlq_headers::ERROR, dlq_headers::TOPIC, dlq_headers::PARTITION, dlq_headers::OFFSET],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::domain::events::tests::order;
    use crate::domain::events::{RejectReason, Status, SCHEMA_VERSION};
    use crate::domain::lines::{LineOutcome, LineRequest};
    use crate::domain::watermark::Progress;

    #[test]
    fn every_name_has_a_standalone_draft_2020_12_schema() {
        for name in names() {
            let schema = json_schema(name).unwrap();
            assert_eq!(
                schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{name}"
            );
            assert_eq!(schema["title"], name);
            // Every reference points into the schema's own $defs.
            let text = schema.to_string();
            for reference in text.split("\"$ref\":\"").skip(1) {
                let target = reference.split('"').next().unwrap();
                let def = target.strip_prefix("#/$defs/").expect(target);
                assert!(schema["$defs"][def].is_object(), "{name}: {target}");
            }
        }
        assert_eq!(json_schema("NoSuchEvent"), None);
    }

    #[test]
    fn the_order_schema_says_what_decoding_checks() {
        let schema = json_schema("OrderPlaced").unwrap();
        let properties = &schema["properties"];
        assert_eq!(properties["event_type"]["const"], "OrderPlaced");
        assert_eq!(properties["schema_version"]["const"], SCHEMA_VERSION);
        assert_eq!(properties["items"]["minItems"], 1);
        assert_eq!(properties["items"]["maxItems"], 100);
        assert_eq!(properties["event_time"]["format"], "date-time");
        assert_eq!(properties["order_id"]["format"], "uuid");
        let line = &schema["$defs"]["LineItem"]["properties"];
        assert_eq!(line["sku"]["maxLength"], 64);
        assert_eq!(line["quantity"]["minimum"], 1);
        // An order as written has every required field, and no more.
        let written = serde_json::to_value(order()).unwrap();
        let required = schema["required"].as_array().unwrap();
        for field in required {
            assert!(written.get(field.as_str().unwrap()).is_some(), "{field}");
        }
        for field in written.as_object().unwrap().keys() {
            assert!(properties.get(field).is_some(), "{field}");
        }
        assert_eq!(schema["additionalProperties"], false);
    }

    fn validator(name: &str) -> jsonschema::Validator {
        jsonschema::validator_for(&json_schema(name).unwrap()).unwrap()
    }

    #[test]
    fn records_as_written_meet_their_schemas() {
        let order = order();
        let decided = InventoryChecked {
            event_type: InventoryChecked::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: order.order_id,
            status: Status::Rejected,
            reason: Some(RejectReason::OutOfStock),
            detail: Some("SKU-0001: 1 left".into()),
            event_time: order.event_time,
            processed_at: order.event_time,
        };
        let request = LineRequest {
            order_id: order.order_id,
            line: 0,
            sku: "SKU-0001".into(),
            quantity: 2,
            home: 1,
            placed: 5,
        };
        let written = [
            ("OrderPlaced", order.encode()),
            ("InventoryChecked", decided.encode()),
            (
                "WindowClosed",
                WindowClosed::new(order.event_time, 10, 1).encode(),
            ),
            (
                "StockRecord",
                StockRecord::Reserve(request.clone()).encode(),
            ),
            (
                "OrderRecord",
                OrderRecord::Answer {
                    request,
                    outcome: LineOutcome::OutOfStock { left: 1 },
                }
                .encode(),
            ),
            (
                "Partial",
                Partial::Progress {
                    source_partition: 2,
                    progress: Progress::At { stream_time: 9 },
                }
                .encode(),
            ),
            (
                "KeyedOrder",
                KeyedOrder {
                    key: "k-1".into(),
                    fingerprint: "f".into(),
                    order,
                }
                .encode(),
            ),
        ];
        for (name, bytes) in written {
            let record: Value = serde_json::from_slice(&bytes).unwrap();
            if let Err(error) = validator(name).validate(&record) {
                panic!("{name} {record}: {error}");
            }
        }
    }

    #[test]
    fn orders_decoding_refuses_fail_their_schema() {
        let orders = validator("OrderPlaced");
        let good = serde_json::to_value(order()).unwrap();
        let broken: [(&str, Value); 5] = [
            ("event_type", json!("InventoryChecked")),
            ("schema_version", json!(2)),
            ("items", json!([])),
            (
                "items",
                json!([{"sku": "", "quantity": 1, "unit_price_cents": 1}]),
            ),
            (
                "items",
                json!([{"sku": "A", "quantity": 0, "unit_price_cents": 1}]),
            ),
        ];
        for (field, value) in broken {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(!orders.is_valid(&bad), "{bad}");
            assert!(OrderPlaced::decode(bad.to_string().as_bytes()).is_err());
        }
        // The schema is closed: a field it does not name is another schema
        // (which decoding, lenient, still reads).
        let mut newer = good;
        newer["coupon"] = json!("SPRING");
        assert!(!orders.is_valid(&newer));
        assert!(OrderPlaced::decode(newer.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn the_dead_letter_headers_are_the_ones_written() {
        let schema = json_schema(DEAD_LETTER_HEADERS).unwrap();
        let required: Vec<_> = schema["required"].as_array().unwrap().iter().collect();
        for header in [
            dlq_headers::ERROR,
            dlq_headers::TOPIC,
            dlq_headers::PARTITION,
            dlq_headers::OFFSET,
        ] {
            assert!(required.contains(&&Value::from(header)), "{header}");
        }
    }
}
