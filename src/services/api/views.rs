//! The API's views: every order's state (`domain::order_state`), folded
//! from the orders and inventory topics, every idempotency key's answer,
//! from the keys stage's changelog, and every SKU's stock, from inventory's
//! stock changelog, by the followers (`follow.rs`); and the requests
//! waiting for an order or a key to change (`?wait_ms=`, a request under a
//! key waiting for the key's answer).
//!
//! The orders and keys are kept on disk (`store.rs`), the stock and the
//! waiting requests in memory. Updates are applied under one lock, which a
//! request that waits takes to look and to start waiting: so it cannot
//! miss the decision that lands meanwhile. A follower commits what it
//! applied to the store, then wakes the requests waiting on it (which
//! then find it), still under that lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use tokio::sync::oneshot;
use uuid::Uuid;

use crate::domain::events::{InventoryChecked, OrderPlaced};
use crate::domain::order_state::{OrderState, OrderView};
use crate::domain::placing::KeyAnswer;
use crate::error::Result;
use crate::services::inventory::StockChange;

use super::store::Store;

pub struct Views {
    store: Store,
    /// Requests waiting for an order or a key to change, woken when it
    /// does; its lock is the one updates are applied under.
    waiters: Mutex<HashMap<Waited, Vec<oneshot::Sender<()>>>>,
    /// No request waits on it: a lock of its own.
    stock: Mutex<Stock>,
    /// Followers (one a topic) that have not yet read every partition to
    /// the end it had at start.
    behind: AtomicUsize,
}

/// What a request waits on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Waited {
    Order(Uuid),
    Key(String),
}

/// One record a follower read, to apply.
pub enum Update {
    Placed(OrderPlaced),
    Decided(InventoryChecked),
    /// A key's answer, or None: the key was forgotten (retention).
    Key(String, Option<KeyAnswer>),
    Stock(StockChange),
}

/// Every SKU's stock as the stock changelog has it: its level (units left,
/// none held among them) once a level is written, the default before; and
/// the units held for orders in flight. It grows with the SKUs and the
/// orders in flight, never with the orders ever placed.
#[derive(Default)]
struct Stock {
    levels: HashMap<String, u64>,
    /// (SKU, order) → units held, and their sum per SKU.
    held: HashMap<(String, Uuid), u64>,
    held_per_sku: HashMap<String, u64>,
    default: Option<u64>,
}

/// A SKU's stock, as `GET /stock/{sku}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct StockLevel {
    pub sku: String,
    /// Units an order may still take.
    pub available: u64,
    /// Units held for orders in flight (not yet decided): they are taken
    /// for good if the order is reserved, and come back if it is rejected.
    pub held: u64,
}

impl Stock {
    fn apply(&mut self, change: StockChange) {
        match change {
            StockChange::Level { sku, units } => {
                self.levels.insert(sku, units);
            }
            StockChange::Default(units) => self.default = Some(units),
            StockChange::Held {
                order_id,
                sku,
                quantity,
            } => {
                let before = match quantity {
                    Some(quantity) => self.held.insert((sku.clone(), order_id), quantity),
                    None => self.held.remove(&(sku.clone(), order_id)),
                };
                let sum = self.held_per_sku.entry(sku.clone()).or_default();
                *sum = *sum - before.unwrap_or(0) + quantity.unwrap_or(0);
                if *sum == 0 {
                    self.held_per_sku.remove(&sku);
                }
            }
        }
    }

    fn get(&self, sku: &str) -> Option<StockLevel> {
        let available = self.levels.get(sku).copied().or(self.default)?;
        Some(StockLevel {
            sku: sku.to_owned(),
            available,
            held: self.held_per_sku.get(sku).copied().unwrap_or(0),
        })
    }
}

impl Views {
    /// Views in `store`, fed by `followers` followers.
    pub fn new(store: Store, followers: usize) -> Self {
        Self {
            store,
            waiters: Mutex::default(),
            stock: Mutex::default(),
            behind: AtomicUsize::new(followers),
        }
    }

    /// Applies what the followers read, in one transaction of the store
    /// and under one lock, and wakes the requests waiting for the orders
    /// and keys it changed.
    pub fn apply(&self, updates: impl IntoIterator<Item = Update>) -> Result<()> {
        let mut waiters = self.waiters.lock().expect("views lock");
        let mut writer = self.store.write()?;
        let mut changed = Vec::new();
        for update in updates {
            match update {
                Update::Stock(change) => self.stock.lock().expect("stock lock").apply(change),
                Update::Placed(order) => {
                    let id = order.order_id;
                    writer.update_order(id, |state| state.place(&order))?;
                    changed.push(Waited::Order(id));
                }
                Update::Decided(decision) => {
                    let id = decision.order_id;
                    writer.update_order(id, |state| state.decide(&decision))?;
                    changed.push(Waited::Order(id));
                }
                Update::Key(key, answer) => {
                    writer.set_key(&key, answer.as_ref())?;
                    if answer.is_some() {
                        changed.push(Waited::Key(key));
                    }
                }
            }
        }
        writer.commit()?;
        for changed in changed {
            for waiter in waiters.remove(&changed).unwrap_or_default() {
                let _ = waiter.send(());
            }
        }
        Ok(())
    }

    /// An order accepted here, known before the follower reads it back: a
    /// client that asks right after its 202 finds it pending.
    pub fn accepted(&self, order: OrderPlaced) -> Result<()> {
        self.apply([Update::Placed(order)])
    }

    pub fn get(&self, id: Uuid) -> Result<Option<OrderView>> {
        Ok(self.store.order(id)?.and_then(|state| state.view(id)))
    }

    /// `sku`'s stock; None before inventory has written any.
    pub fn stock(&self, sku: &str) -> Option<StockLevel> {
        self.stock.lock().expect("stock lock").get(sku)
    }

    /// The answer of idempotency key `key`, if it has one.
    pub fn key(&self, key: &str) -> Result<Option<KeyAnswer>> {
        self.store.key(key)
    }

    /// The order once it is decided, or as it stands at `deadline` (None:
    /// still unknown then).
    pub async fn decided_by(&self, id: Uuid, deadline: Instant) -> Result<Option<OrderView>> {
        let decided = |store: &Store| -> Result<Option<OrderView>> {
            let state = store.order(id)?;
            Ok(state
                .filter(OrderState::is_decided)
                .and_then(|s| s.view(id)))
        };
        match self.wait_for(Waited::Order(id), deadline, decided).await? {
            Some(view) => Ok(Some(view)),
            None => self.get(id),
        }
    }

    /// The answer of `key` once it has one; None if it has none by
    /// `deadline`.
    pub async fn answered_by(&self, key: &str, deadline: Instant) -> Result<Option<KeyAnswer>> {
        let waited = Waited::Key(key.to_owned());
        self.wait_for(waited, deadline, |store| store.key(key))
            .await
    }

    /// What `found` finds, as soon as it finds something, woken by changes
    /// to `waited`; None once `deadline` passes.
    async fn wait_for<T>(
        &self,
        waited: Waited,
        deadline: Instant,
        found: impl Fn(&Store) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        loop {
            let woken = {
                let mut waiters = self.waiters.lock().expect("views lock");
                if let Some(found) = found(&self.store)? {
                    return Ok(Some(found));
                }
                let (wake, woken) = oneshot::channel();
                waiters.entry(waited.clone()).or_default().push(wake);
                woken
            };
            if tokio::time::timeout_at(deadline.into(), woken)
                .await
                .is_err()
            {
                self.forget_waiters(&waited);
                return Ok(None);
            }
        }
    }

    /// Drops the wake-ups of requests that stopped waiting (an order never
    /// placed would otherwise keep them for good).
    fn forget_waiters(&self, waited: &Waited) {
        let mut all = self.waiters.lock().expect("views lock");
        if let Some(waiters) = all.get_mut(waited) {
            waiters.retain(|w| !w.is_closed());
            if waiters.is_empty() {
                all.remove(waited);
            }
        }
    }

    /// Orders known.
    pub fn len(&self) -> Result<u64> {
        self.store.orders()
    }

    /// The size of the store on disk, in bytes.
    pub fn store_bytes(&self) -> u64 {
        self.store.file_bytes()
    }

    /// A follower has read its topic to the end it had at start (once a
    /// follower).
    pub fn caught_up(&self) {
        self.behind.fetch_sub(1, Ordering::AcqRel);
    }

    /// Every follower has caught up: the views answer for every order
    /// placed before the API started.
    pub fn is_ready(&self) -> bool {
        self.behind.load(Ordering::Acquire) == 0
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::domain::events::{LineItem, Status, SCHEMA_VERSION};
    use crate::domain::order_state::Progress;
    use crate::domain::placing::OrderRequest;

    fn order(id: Uuid) -> OrderPlaced {
        let request = OrderRequest {
            customer_id: "c".into(),
            items: vec![LineItem {
                sku: "S".into(),
                quantity: 1,
                unit_price_cents: 1,
            }],
        };
        request.place(id, chrono::Utc::now()).unwrap()
    }

    /// Views over a fresh store (in the system's temp dir, deleted with it).
    fn views(followers: usize) -> Views {
        let store = Store::create(&std::env::temp_dir(), 1 << 20).unwrap();
        Views::new(store, followers)
    }

    fn reserved(id: Uuid) -> InventoryChecked {
        InventoryChecked {
            event_type: InventoryChecked::EVENT_TYPE.into(),
            schema_version: SCHEMA_VERSION,
            order_id: id,
            status: Status::Reserved,
            reason: None,
            detail: None,
            event_time: chrono::Utc::now(),
            processed_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn orders_and_keys_are_kept_in_the_store_whichever_event_comes_first() {
        let views = views(3);
        let id = Uuid::from_u128(7);
        // The decision read before the order: known, not answered for.
        views.apply([Update::Decided(reserved(id))]).unwrap();
        assert_eq!(views.get(id).unwrap(), None);
        views.apply([Update::Placed(order(id))]).unwrap();
        let view = views.get(id).unwrap().unwrap();
        assert_eq!((view.status, view.items.len()), (Progress::Reserved, 1));
        assert_eq!(views.len().unwrap(), 1);

        let answer = KeyAnswer {
            order_id: id,
            fingerprint: "f".into(),
            placed_at: 1,
        };
        views
            .apply([Update::Key("k".into(), Some(answer.clone()))])
            .unwrap();
        assert_eq!(views.key("k").unwrap(), Some(answer));
        views.apply([Update::Key("k".into(), None)]).unwrap();
        assert_eq!(views.key("k").unwrap(), None);
        assert!(views.store_bytes() > 0);
    }

    #[test]
    fn a_skus_stock_is_its_level_or_the_default_and_the_units_held_for_it() {
        let views = views(1);
        assert_eq!(views.stock("A"), None, "nothing known yet");
        let held = |order: u128, quantity| {
            Update::Stock(StockChange::Held {
                order_id: Uuid::from_u128(order),
                sku: "A".into(),
                quantity,
            })
        };
        let apply = |updates: Vec<Update>| views.apply(updates).unwrap();
        apply(vec![
            Update::Stock(StockChange::Default(10)),
            Update::Stock(StockChange::Level {
                sku: "A".into(),
                units: 4,
            }),
            held(1, Some(3)),
            held(2, Some(3)),
            held(2, Some(3)), // the same again (a batch redone)
        ]);
        let level = |sku: &str| views.stock(sku).map(|s| (s.available, s.held));
        assert_eq!(level("A"), Some((4, 6)));
        assert_eq!(level("B"), Some((10, 0)));
        apply(vec![held(1, None), held(3, None)]);
        assert_eq!(level("A"), Some((4, 3)));
        apply(vec![held(2, None)]);
        assert_eq!(level("A"), Some((4, 0)));
        assert!(views.stock.lock().unwrap().held_per_sku.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_request_returns_when_the_decision_lands_and_not_before() {
        let views = Arc::new(views(2));
        let id = Uuid::from_u128(1);
        views.accepted(order(id)).unwrap();
        let waiting = {
            let views = Arc::clone(&views);
            tokio::spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(30);
                views.decided_by(id, deadline).await
            })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a pending order holds the request");
        views.apply([Update::Decided(reserved(id))]).unwrap();
        let view = waiting.await.unwrap().unwrap().unwrap();
        assert_eq!(view.status, Progress::Reserved);
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_answers_with_what_is_known_and_forgets_itself() {
        let views = views(2);
        let (placed, unknown) = (Uuid::from_u128(1), Uuid::from_u128(2));
        views.accepted(order(placed)).unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        let pending = views.decided_by(placed, soon).await.unwrap().unwrap();
        assert_eq!(pending.status, Progress::Pending);
        assert_eq!(views.decided_by(unknown, soon).await.unwrap(), None);
        assert!(views.waiters.lock().unwrap().is_empty());
    }
}
