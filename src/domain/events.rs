//! The events orderflow writes to Kafka, as JSON: `OrderPlaced` on the orders
//! topic and `InventoryChecked` on the inventory topic, both keyed by order id.
//!
//! Decoding is strict about meaning (a known schema version, at least one line
//! item, positive quantities, a total that adds up) and lenient about extra
//! fields, so that a newer producer can add fields without breaking us.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version of `OrderPlaced` and `InventoryChecked` this build
/// writes and the only one it accepts.
pub const SCHEMA_VERSION: u32 = 1;

/// The most line items an order may have, and the longest SKU: an order
/// in flight is kept, and written to inventory's changelog, as one record,
/// which must stay well within a topic's default `max.message.bytes` (1 MB)
/// whatever the order.
pub const MAX_LINES: usize = 100;
pub const MAX_SKU_BYTES: usize = 64;

/// The schema version of `WindowClosed`: 2 since a window is published once
/// for all partitions (version 1 had one record per window and partition,
/// with a `source_partition`).
pub const WINDOW_CLOSED_VERSION: u32 = 2;

/// A customer placed an order. Prices are integer cents, never floats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Closed in the published schema: see `contracts::schemas`.
#[schemars(deny_unknown_fields)]
pub struct OrderPlaced {
    /// Always `"OrderPlaced"`; lets a reader tell event kinds apart.
    #[schemars(extend("const" = "OrderPlaced"))]
    pub event_type: String,
    /// The version of this event's layout; this build writes and reads 1.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    /// Unique per order; also the Kafka message key.
    pub order_id: Uuid,
    /// Who placed the order.
    pub customer_id: String,
    /// 1 to 100 lines.
    #[schemars(length(min = 1, max = MAX_LINES))]
    pub items: Vec<LineItem>,
    /// Sum of quantity × unit price over the items.
    pub total_cents: u64,
    /// When the order was placed, by the producer's (simulated) clock.
    #[serde(with = "millis")]
    #[schemars(with = "DateTime<Utc>")]
    pub event_time: DateTime<Utc>,
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, JsonSchema)]
// Closed in the published schema: see `contracts::schemas`.
#[schemars(deny_unknown_fields)]
pub struct LineItem {
    /// The stock keeping unit ordered: 1 to 64 bytes.
    #[schema(min_length = 1, max_length = 64, example = "SKU-0001")]
    #[schemars(length(min = 1, max = MAX_SKU_BYTES))]
    pub sku: String,
    #[schema(minimum = 1, example = 2)]
    #[schemars(range(min = 1))]
    pub quantity: u32,
    #[schema(example = 1299)]
    pub unit_price_cents: u64,
}

/// Whether the inventory service could reserve an order's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Status {
    Reserved,
    Rejected,
}

/// Why an order was rejected.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Some line item wanted more units than were left.
    OutOfStock,
    /// The simulated stock-check failure (`--failure-rate`).
    MockFailure,
}

/// The inventory service's verdict on one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Closed in the published schema: see `contracts::schemas`.
#[schemars(deny_unknown_fields)]
pub struct InventoryChecked {
    /// Always `"InventoryChecked"`.
    #[schemars(extend("const" = "InventoryChecked"))]
    pub event_type: String,
    /// The version of this event's layout; this build writes and reads 1.
    #[schemars(extend("const" = SCHEMA_VERSION))]
    pub schema_version: u32,
    /// The order decided; also the Kafka message key.
    pub order_id: Uuid,
    pub status: Status,
    /// Set when `status` is `Rejected`.
    pub reason: Option<RejectReason>,
    /// Human-readable detail for a rejection, such as which SKU ran out.
    pub detail: Option<String>,
    /// The order's own event time, carried over so analytics can window by it.
    #[serde(with = "millis")]
    #[schemars(with = "DateTime<Utc>")]
    pub event_time: DateTime<Utc>,
    /// Wall-clock time the inventory service decided. Never used for windows.
    #[serde(with = "millis")]
    #[schemars(with = "DateTime<Utc>")]
    pub processed_at: DateTime<Utc>,
}

/// A one-minute window's final counts over every partition of the
/// inventory topic, published once by analytics to OrderMetrics when the
/// watermark passes the window's end and its grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
// Closed in the published schema: see `contracts::schemas`.
#[schemars(deny_unknown_fields)]
pub struct WindowClosed {
    /// Always `"WindowClosed"`.
    #[schemars(extend("const" = "WindowClosed"))]
    pub event_type: String,
    /// The version of this event's layout; this build writes and reads 2.
    #[schemars(extend("const" = WINDOW_CLOSED_VERSION))]
    pub schema_version: u32,
    /// The window's start, also the record's key (RFC 3339, UTC).
    #[serde(with = "millis")]
    #[schemars(with = "DateTime<Utc>")]
    pub window_start: DateTime<Utc>,
    /// Orders decided with an event time in the window.
    pub orders: u64,
    /// Of those, the ones rejected (never more than `orders`).
    pub failed: u64,
}

/// Why bytes from a topic are not a usable event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("not valid JSON for this event: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid event: {0}")]
    Invalid(String),
}

impl OrderPlaced {
    pub const EVENT_TYPE: &'static str = "OrderPlaced";

    /// Parses and validates an `OrderPlaced` from a message payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let order: OrderPlaced = serde_json::from_slice(payload)?;
        order.validate()?;
        Ok(order)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an OrderPlaced always serializes")
    }

    fn validate(&self) -> Result<(), DecodeError> {
        check_header(
            &self.event_type,
            Self::EVENT_TYPE,
            self.schema_version,
            SCHEMA_VERSION,
        )?;
        let total = check_items(&self.items).map_err(|e| DecodeError::Invalid(e.to_string()))?;
        if total != self.total_cents {
            return invalid(format!(
                "total_cents {} does not match the line items ({total})",
                self.total_cents
            ));
        }
        Ok(())
    }
}

impl InventoryChecked {
    pub const EVENT_TYPE: &'static str = "InventoryChecked";

    /// Parses and validates an `InventoryChecked` from a message payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let event: InventoryChecked = serde_json::from_slice(payload)?;
        check_header(
            &event.event_type,
            Self::EVENT_TYPE,
            event.schema_version,
            SCHEMA_VERSION,
        )?;
        if (event.status == Status::Rejected) != event.reason.is_some() {
            return invalid("a reason is given exactly when the status is Rejected");
        }
        Ok(event)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an InventoryChecked always serializes")
    }

    pub fn failed(&self) -> bool {
        self.status == Status::Rejected
    }
}

impl WindowClosed {
    pub const EVENT_TYPE: &'static str = "WindowClosed";

    pub fn new(window_start: DateTime<Utc>, orders: u64, failed: u64) -> Self {
        Self {
            event_type: Self::EVENT_TYPE.to_owned(),
            schema_version: WINDOW_CLOSED_VERSION,
            window_start,
            orders,
            failed,
        }
    }

    /// Parses and validates a `WindowClosed` from a message payload.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let event: WindowClosed = serde_json::from_slice(payload)?;
        check_header(
            &event.event_type,
            Self::EVENT_TYPE,
            event.schema_version,
            WINDOW_CLOSED_VERSION,
        )?;
        if event.failed > event.orders {
            return invalid("more failed orders than orders in the window");
        }
        Ok(event)
    }

    /// The record key: the window's start.
    pub fn key(&self) -> String {
        millis::format(&self.window_start)
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a WindowClosed always serializes")
    }
}

fn check_header(
    event_type: &str,
    expected: &str,
    version: u32,
    reads: u32,
) -> Result<(), DecodeError> {
    if event_type != expected {
        return invalid(format!(
            "event_type is {event_type:?}, expected {expected:?}"
        ));
    }
    if version != reads {
        return invalid(format!(
            "unknown schema_version {version} (this build reads {reads})"
        ));
    }
    Ok(())
}

fn invalid<T>(why: impl Into<String>) -> Result<T, DecodeError> {
    Err(DecodeError::Invalid(why.into()))
}

/// What is wrong with an order's line items, and where: `field` is the
/// path of the offending value (`items`, `items[2].sku`), for a client
/// that must point its user at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct LineError {
    pub field: String,
    pub why: String,
}

/// Checks an order's line items as inventory will (at least one, at most
/// [`MAX_LINES`], each with a SKU of 1 to [`MAX_SKU_BYTES`] bytes and a
/// positive quantity, and a total that fits in a u64 of cents), and
/// returns that total.
pub fn check_items(items: &[LineItem]) -> Result<u64, LineError> {
    let wrong = |field: String, why: String| Err(LineError { field, why });
    if items.is_empty() {
        return wrong(
            "items".into(),
            "an order needs at least one line item".into(),
        );
    }
    if items.len() > MAX_LINES {
        return wrong(
            "items".into(),
            format!("{} line items, more than {MAX_LINES}", items.len()),
        );
    }
    let mut total: u64 = 0;
    for (i, item) in items.iter().enumerate() {
        if item.sku.is_empty() {
            return wrong(format!("items[{i}].sku"), "empty".into());
        }
        if item.sku.len() > MAX_SKU_BYTES {
            return wrong(
                format!("items[{i}].sku"),
                format!("{} bytes, more than {MAX_SKU_BYTES}", item.sku.len()),
            );
        }
        if item.quantity == 0 {
            return wrong(format!("items[{i}].quantity"), "must be at least 1".into());
        }
        total = match item
            .unit_price_cents
            .checked_mul(item.quantity.into())
            .and_then(|line| total.checked_add(line))
        {
            Some(total) => total,
            None => return wrong("items".into(), "the total is too large to charge".into()),
        };
    }
    Ok(total)
}

/// A time in milliseconds since the epoch as the wire writes times.
pub fn millis_text(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), |t| millis::format(&t))
}

/// Timestamps on the wire: RFC 3339 in UTC with exactly three fractional digits,
/// so equal instants always print as equal bytes.
pub mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn format(time: &DateTime<Utc>) -> String {
        time.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <&str>::deserialize(d)?;
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid order of two lines: the tests' fixture.
    pub(crate) fn order() -> OrderPlaced {
        OrderPlaced {
            event_type: OrderPlaced::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: Uuid::from_u128(7),
            customer_id: "cust-0001".into(),
            items: vec![
                LineItem {
                    sku: "SKU-0001".into(),
                    quantity: 2,
                    unit_price_cents: 250,
                },
                LineItem {
                    sku: "SKU-0002".into(),
                    quantity: 1,
                    unit_price_cents: 1000,
                },
            ],
            total_cents: 1500,
            event_time: "2026-01-01T00:00:00.5Z".parse().unwrap(),
        }
    }

    #[test]
    fn order_round_trips_through_json() {
        let bytes = order().encode();
        assert_eq!(OrderPlaced::decode(&bytes).unwrap(), order());
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#""event_time":"2026-01-01T00:00:00.500Z""#),
            "{text}"
        );
    }

    #[test]
    fn window_closed_round_trips_and_is_checked() {
        let start = "2026-01-01T00:05:00Z".parse().unwrap();
        let event = WindowClosed::new(start, 71, 3);
        assert_eq!(
            String::from_utf8(event.encode()).unwrap(),
            r#"{"event_type":"WindowClosed","schema_version":2,"window_start":"2026-01-01T00:05:00.000Z","orders":71,"failed":3}"#
        );
        assert_eq!(WindowClosed::decode(&event.encode()).unwrap(), event);
        let impossible = WindowClosed::new(start, 3, 71).encode();
        assert!(matches!(
            WindowClosed::decode(&impossible),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_what_is_not_json() {
        assert!(matches!(
            OrderPlaced::decode(b"{not json"),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn rejects_negative_quantity_and_missing_fields() {
        let text = String::from_utf8(order().encode()).unwrap();
        let negative = text.replacen(r#""quantity":2"#, r#""quantity":-2"#, 1);
        assert!(matches!(
            OrderPlaced::decode(negative.as_bytes()),
            Err(DecodeError::Json(_))
        ));
        let missing = text.replacen(r#""customer_id":"cust-0001","#, "", 1);
        assert!(matches!(
            OrderPlaced::decode(missing.as_bytes()),
            Err(DecodeError::Json(_))
        ));
    }

    #[test]
    fn rejects_meaningless_orders() {
        let mut wrong_total = order();
        wrong_total.total_cents += 1;
        let mut no_items = order();
        no_items.items.clear();
        no_items.total_cents = 0;
        let mut future_schema = order();
        future_schema.schema_version = 2;
        let mut zero = order();
        zero.items[1].quantity = 0;
        zero.total_cents = 500;
        let mut too_many = order();
        too_many.items = vec![too_many.items[0].clone(); MAX_LINES + 1];
        too_many.total_cents = 500 * (MAX_LINES as u64 + 1);
        let mut long_sku = order();
        long_sku.items[0].sku = "S".repeat(MAX_SKU_BYTES + 1);
        let mut most = order();
        most.items = vec![most.items[0].clone(); MAX_LINES];
        most.items[0].sku = "S".repeat(MAX_SKU_BYTES);
        most.total_cents = 500 * MAX_LINES as u64;
        assert!(OrderPlaced::decode(&most.encode()).is_ok(), "at the limits");
        for bad in [
            wrong_total,
            no_items,
            future_schema,
            zero,
            too_many,
            long_sku,
        ] {
            let err = OrderPlaced::decode(&bad.encode()).unwrap_err();
            assert!(matches!(err, DecodeError::Invalid(_)), "{err}");
        }
    }

    #[test]
    fn ignores_unknown_fields() {
        let text = String::from_utf8(order().encode()).unwrap();
        let extended = text.replacen('{', r#"{"coupon":"X1","#, 1);
        assert_eq!(OrderPlaced::decode(extended.as_bytes()).unwrap(), order());
    }

    #[test]
    fn inventory_event_requires_reason_for_rejections() {
        let time = order().event_time;
        let mut event = InventoryChecked {
            event_type: InventoryChecked::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: Uuid::from_u128(1),
            status: Status::Rejected,
            reason: Some(RejectReason::MockFailure),
            detail: None,
            event_time: time,
            processed_at: time,
        };
        assert_eq!(InventoryChecked::decode(&event.encode()).unwrap(), event);
        event.reason = None;
        assert!(InventoryChecked::decode(&event.encode()).is_err());
    }
}
