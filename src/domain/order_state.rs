//! What became of an order, folded from its events: its `OrderPlaced` and,
//! once inventory has decided, its `InventoryChecked`. The API keeps one
//! per order and answers `GET /orders/{id}` with it.
//!
//! The two events come from two topics read side by side, so either may
//! be seen first; the state holds what is known of each, and an order is
//! answered for once its `OrderPlaced` is known.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::events::{millis_text, InventoryChecked, LineItem, OrderPlaced, RejectReason, Status};

/// An order's progress, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Progress {
    /// Accepted, not decided yet.
    Pending,
    Reserved,
    Rejected,
}

/// The order, as placed (kept compact: the view holds many).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Placed {
    customer_id: Box<str>,
    items: Box<[LineItem]>,
    total_cents: u64,
    placed_at: i64,
}

/// Inventory's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Decided {
    status: Status,
    reason: Option<RejectReason>,
    detail: Option<Box<str>>,
    decided_at: i64,
}

/// What is known of one order (stored by the API as it is: no field may be
/// skipped when serialized).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    placed: Option<Placed>,
    decided: Option<Decided>,
}

/// The answer to `GET /orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OrderView {
    pub order_id: Uuid,
    pub status: Progress,
    /// Why it was rejected (rejected orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
    /// What ran out, or which check failed (rejected orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub customer_id: String,
    pub items: Vec<LineItem>,
    pub total_cents: u64,
    /// When the order was placed (its event time), RFC 3339.
    #[schema(format = DateTime, example = "2026-12-02T10:00:00.000Z")]
    pub placed_at: String,
    /// When inventory decided it, RFC 3339 (decided orders only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = DateTime)]
    pub decided_at: Option<String>,
}

impl OrderState {
    /// Its `OrderPlaced` was read.
    pub fn place(&mut self, order: &OrderPlaced) {
        self.placed = Some(Placed {
            customer_id: order.customer_id.as_str().into(),
            items: order.items.clone().into(),
            total_cents: order.total_cents,
            placed_at: order.event_time.timestamp_millis(),
        });
    }

    /// Its `InventoryChecked` was read.
    pub fn decide(&mut self, decision: &InventoryChecked) {
        self.decided = Some(Decided {
            status: decision.status,
            reason: decision.reason,
            detail: decision.detail.as_deref().map(Into::into),
            decided_at: decision.processed_at.timestamp_millis(),
        });
    }

    pub fn is_decided(&self) -> bool {
        self.decided.is_some()
    }

    /// The answer for order `order_id`; None until its `OrderPlaced` is
    /// known.
    pub fn view(&self, order_id: Uuid) -> Option<OrderView> {
        let placed = self.placed.as_ref()?;
        let decided = self.decided.as_ref();
        let status = match decided.map(|d| d.status) {
            None => Progress::Pending,
            Some(Status::Reserved) => Progress::Reserved,
            Some(Status::Rejected) => Progress::Rejected,
        };
        Some(OrderView {
            order_id,
            status,
            reason: decided.and_then(|d| d.reason),
            detail: decided.and_then(|d| d.detail.as_deref().map(String::from)),
            customer_id: placed.customer_id.to_string(),
            items: placed.items.to_vec(),
            total_cents: placed.total_cents,
            placed_at: millis_text(placed.placed_at),
            decided_at: decided.map(|d| millis_text(d.decided_at)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::SCHEMA_VERSION;
    use crate::domain::placing::OrderRequest;

    fn order() -> OrderPlaced {
        let request = OrderRequest {
            customer_id: "cust-1".into(),
            items: vec![LineItem {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price_cents: 50,
            }],
        };
        let placed_at = "2026-12-02T10:00:00Z".parse().unwrap();
        request.place(Uuid::from_u128(3), placed_at).unwrap()
    }

    fn rejection() -> InventoryChecked {
        InventoryChecked {
            event_type: InventoryChecked::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: Uuid::from_u128(3),
            status: Status::Rejected,
            reason: Some(RejectReason::OutOfStock),
            detail: Some("SKU-1: 2 wanted, 1 left".into()),
            event_time: "2026-12-02T10:00:00Z".parse().unwrap(),
            processed_at: "2026-12-02T10:00:01.5Z".parse().unwrap(),
        }
    }

    #[test]
    fn an_order_is_pending_until_decided_in_whichever_order_they_are_read() {
        let id = Uuid::from_u128(3);
        let mut state = OrderState::default();
        state.decide(&rejection());
        assert_eq!(state.view(id), None, "not answered before it is known");
        state.place(&order());
        let view = state.view(id).unwrap();
        assert_eq!(view.status, Progress::Rejected);
        assert_eq!(view.decided_at.as_deref(), Some("2026-12-02T10:00:01.500Z"));

        let mut state = OrderState::default();
        state.place(&order());
        let pending = state.view(id).unwrap();
        assert_eq!((pending.status, pending.reason), (Progress::Pending, None));
        assert_eq!(pending.placed_at, "2026-12-02T10:00:00.000Z");
        state.decide(&rejection());
        assert_eq!(
            state.view(id).unwrap().reason,
            Some(RejectReason::OutOfStock)
        );
    }

    #[test]
    fn a_view_says_only_what_applies() {
        let mut state = OrderState::default();
        state.place(&order());
        let text = serde_json::to_string(&state.view(Uuid::from_u128(3)).unwrap()).unwrap();
        assert!(
            !text.contains("reason") && !text.contains("decided_at"),
            "{text}"
        );
        assert!(text.contains(r#""status":"pending""#), "{text}");
    }
}
