//! An order placed from outside (`POST /orders` on the API): what a client
//! sends, checked as inventory will check the `OrderPlaced` it becomes, so
//! that nothing the API accepts is dead-lettered downstream; the API only
//! adds what the event needs besides (an id, the total, the time).
//!
//! An order placed under an `Idempotency-Key` travels as a [`KeyedOrder`]
//! to the one place that key is decided (the API's keys stage), which
//! publishes the first order of a key and remembers it as a [`KeyAnswer`];
//! a retry is answered with that, and one whose body differs (another
//! [`OrderRequest::fingerprint`]) is refused.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use xxhash_rust::xxh3::xxh3_128;

use super::events::{check_items, LineError, LineItem, OrderPlaced, SCHEMA_VERSION};

/// The longest customer id the API takes, in bytes. Inventory does not
/// look at it; the API keeps it a name rather than a document.
pub const MAX_CUSTOMER_ID_BYTES: usize = 64;

/// The longest `Idempotency-Key` taken, in bytes (the IETF draft's keys
/// are UUIDs or similar: far shorter).
pub const MAX_KEY_BYTES: usize = 255;

/// The body of `POST /orders`. Extra fields are ignored, as in every
/// event orderflow reads (every field here is required, so a misspelt one
/// is a missing one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderRequest {
    /// Who places the order: 1 to 64 bytes.
    #[schema(min_length = 1, max_length = 64, example = "cust-0042")]
    pub customer_id: String,
    /// 1 to 100 lines, each a SKU of 1 to 64 bytes and a quantity of at
    /// least 1.
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<LineItem>,
}

impl OrderRequest {
    /// What identifies the request's content: two requests with the same
    /// fingerprint ask for the same order.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a request serializes");
        format!("{:032x}", xxh3_128(&canonical))
    }

    /// Checks the request and makes it the event to publish: `order_id`,
    /// placed at `now`, its total computed.
    pub fn place(self, order_id: Uuid, now: DateTime<Utc>) -> Result<OrderPlaced, LineError> {
        if self.customer_id.is_empty() || self.customer_id.len() > MAX_CUSTOMER_ID_BYTES {
            return Err(LineError {
                field: "customer_id".into(),
                why: format!("must be 1 to {MAX_CUSTOMER_ID_BYTES} bytes"),
            });
        }
        let total_cents = check_items(&self.items)?;
        Ok(OrderPlaced {
            event_type: OrderPlaced::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id,
            customer_id: self.customer_id,
            items: self.items,
            total_cents,
            event_time: now,
        })
    }
}

/// Checks an `Idempotency-Key`: 1 to [`MAX_KEY_BYTES`] bytes of visible
/// ASCII (it is a Kafka key and a header value: nothing to escape).
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(format!("must be 1 to {MAX_KEY_BYTES} bytes"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be visible ASCII characters only".into());
    }
    Ok(())
}

/// An order placed under an idempotency key, on its way to the keys stage
/// (the record of `<group>-keys-repartition`, keyed by `key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KeyedOrder {
    pub key: String,
    pub fingerprint: String,
    pub order: OrderPlaced,
}

/// What a key stands for once its first order is published: the answer to
/// every request under it (the keys stage's state, in its changelog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAnswer {
    pub order_id: Uuid,
    pub fingerprint: String,
    /// When the key's first order was published (ms since the epoch): the
    /// key is forgotten a retention period later.
    pub placed_at: i64,
}

impl KeyedOrder {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a keyed order serializes")
    }

    pub fn decode(payload: &[u8]) -> Result<Self, String> {
        let keyed: KeyedOrder = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        let order = OrderPlaced::decode(&keyed.order.encode()).map_err(|e| e.to_string())?;
        check_key(&keyed.key)?;
        Ok(KeyedOrder { order, ..keyed })
    }

    /// The answer this order gives its key.
    pub fn answer(&self) -> KeyAnswer {
        KeyAnswer {
            order_id: self.order.order_id,
            fingerprint: self.fingerprint.clone(),
            placed_at: self.order.event_time.timestamp_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{MAX_LINES, MAX_SKU_BYTES};

    fn line(sku: &str, quantity: u32, unit_price_cents: u64) -> LineItem {
        LineItem {
            sku: sku.into(),
            quantity,
            unit_price_cents,
        }
    }

    fn request(items: Vec<LineItem>) -> OrderRequest {
        OrderRequest {
            customer_id: "cust-1".into(),
            items,
        }
    }

    fn refusal(request: OrderRequest) -> String {
        request.place(Uuid::nil(), Utc::now()).unwrap_err().field
    }

    #[test]
    fn a_placed_order_is_an_event_inventory_accepts() {
        let now = "2026-12-02T10:00:00.123Z".parse().unwrap();
        let id = Uuid::from_u128(9);
        let order = request(vec![line("SKU-1", 2, 1299), line("SKU-2", 1, 1)])
            .place(id, now)
            .unwrap();
        assert_eq!(order.total_cents, 2599);
        assert_eq!((order.order_id, order.event_time), (id, now));
        assert_eq!(OrderPlaced::decode(&order.encode()).unwrap(), order);
    }

    #[test]
    fn a_refusal_names_the_offending_field() {
        let sku = |s: &str| request(vec![line("SKU-1", 1, 1), line(s, 1, 1)]);
        assert_eq!(refusal(sku("")), "items[1].sku");
        assert_eq!(refusal(sku(&"S".repeat(MAX_SKU_BYTES + 1))), "items[1].sku");
        assert_eq!(
            refusal(request(vec![line("SKU-1", 0, 1)])),
            "items[0].quantity"
        );
        assert_eq!(refusal(request(vec![])), "items");
        assert_eq!(
            refusal(request(vec![line("A", 1, 1); MAX_LINES + 1])),
            "items"
        );
        assert_eq!(refusal(request(vec![line("A", 2, u64::MAX)])), "items");
        let mut anonymous = request(vec![line("SKU-1", 1, 1)]);
        anonymous.customer_id.clear();
        assert_eq!(refusal(anonymous), "customer_id");
        assert!(request(vec![line("A", 1, 1); MAX_LINES])
            .place(Uuid::nil(), Utc::now())
            .is_ok());
    }

    #[test]
    fn a_fingerprint_is_the_content_of_the_request() {
        let a = request(vec![line("SKU-1", 2, 5)]);
        let b: OrderRequest = serde_json::from_str(
            r#"{"items":[{"unit_price_cents":5,"quantity":2,"sku":"SKU-1"}],"customer_id":"cust-1"}"#,
        )
        .unwrap();
        assert_eq!(
            a.fingerprint(),
            b.fingerprint(),
            "field order does not matter"
        );
        assert_ne!(
            a.fingerprint(),
            request(vec![line("SKU-1", 3, 5)]).fingerprint()
        );
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(check_key("9f1c2a4e-retry-1").is_ok());
        for bad in [
            "",
            "with space",
            "caf\u{e9}",
            &"k".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_keyed_order_round_trips_and_answers_with_its_order() {
        let order = request(vec![line("SKU-1", 1, 1)])
            .place(Uuid::from_u128(5), "2026-12-02T10:00:00Z".parse().unwrap())
            .unwrap();
        let keyed = KeyedOrder {
            key: "k-1".into(),
            fingerprint: "f".into(),
            order,
        };
        let decoded = KeyedOrder::decode(&keyed.encode()).unwrap();
        assert_eq!(decoded, keyed);
        assert_eq!(decoded.answer().order_id, Uuid::from_u128(5));
        let mut broken = keyed.clone();
        broken.order.total_cents += 1;
        assert!(KeyedOrder::decode(&broken.encode()).is_err());
    }
}
