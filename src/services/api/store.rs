//! Where the views keep every order's state and every idempotency key's
//! answer: an embedded store on disk (redb), since both grow with the
//! history (every order ever placed; every key within its retention), and
//! at ten million orders they would take gigabytes of memory.
//!
//! The store is a cache of the topics, never the truth: each instance
//! makes a fresh one in `--views-dir` when it starts, fills it from the
//! topics, and deletes it when it ends. So no write needs to survive a
//! crash, and writes are committed without syncing to disk
//! (`Durability::None`); every few seconds one commit is durable anyway,
//! since redb reuses the pages a commit frees only after a durable one.
//! Values are postcard, a compact serde encoding.

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::domain::order_state::OrderState;
use crate::domain::placing::KeyAnswer;
use crate::error::{Error, Result};

/// Order id → its state.
const ORDERS: TableDefinition<u128, &[u8]> = TableDefinition::new("orders");
/// Idempotency key → its answer.
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");

/// How often a commit is durable, so that freed pages are reused.
const DURABLE_EVERY: Duration = Duration::from_secs(5);

pub struct Store {
    db: Database,
    /// The file, deleted when the store is dropped.
    file: tempfile::NamedTempFile,
    last_durable: Mutex<Instant>,
}

/// One write transaction: the changes of a batch of updates, committed
/// together.
pub struct Writer {
    txn: redb::WriteTransaction,
}

impl Store {
    /// A fresh store in `dir`, with a page cache of at most `cache_bytes`.
    pub fn create(dir: &Path, cache_bytes: usize) -> Result<Self> {
        let failed = |reason: String| Error::ViewStore {
            action: format!("creating the views' store in {}", dir.display()),
            reason,
        };
        let file = tempfile::Builder::new()
            .prefix("orderflow-api-views-")
            .suffix(".redb")
            .tempfile_in(dir)
            .map_err(|e| failed(e.to_string()))?;
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(file.path())
            .map_err(|e| failed(e.to_string()))?;
        let store = Self {
            db,
            file,
            last_durable: Mutex::new(Instant::now()),
        };
        // The tables exist from the start: a read never finds them missing.
        let writer = store.write()?;
        writer.txn.open_table(ORDERS).map_err(store_error)?;
        writer.txn.open_table(KEYS).map_err(store_error)?;
        writer.commit()?;
        Ok(store)
    }

    pub fn write(&self) -> Result<Writer> {
        let mut txn = self.db.begin_write().map_err(store_error)?;
        let mut last = self.last_durable.lock().expect("durable lock");
        if last.elapsed() >= DURABLE_EVERY {
            *last = Instant::now();
        } else {
            txn.set_durability(Durability::None).map_err(store_error)?;
        }
        Ok(Writer { txn })
    }

    pub fn order(&self, id: Uuid) -> Result<Option<OrderState>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(ORDERS).map_err(store_error)?;
        let value = table.get(id.as_u128()).map_err(store_error)?;
        value.map(|v| decode(v.value())).transpose()
    }

    pub fn key(&self, key: &str) -> Result<Option<KeyAnswer>> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(KEYS).map_err(store_error)?;
        let value = table.get(key).map_err(store_error)?;
        value.map(|v| decode(v.value())).transpose()
    }

    /// Orders known.
    pub fn orders(&self) -> Result<u64> {
        let txn = self.db.begin_read().map_err(store_error)?;
        let table = txn.open_table(ORDERS).map_err(store_error)?;
        table.len().map_err(store_error)
    }

    /// The size of the store's file, in bytes.
    pub fn file_bytes(&self) -> u64 {
        self.file.as_file().metadata().map_or(0, |m| m.len())
    }
}

impl Writer {
    /// Changes order `id`'s state with `change` (from the default if it
    /// has none yet).
    pub fn update_order(&mut self, id: Uuid, change: impl FnOnce(&mut OrderState)) -> Result<()> {
        let mut table = self.txn.open_table(ORDERS).map_err(store_error)?;
        let stored: Option<OrderState> = match table.get(id.as_u128()).map_err(store_error)? {
            Some(value) => Some(decode(value.value())?),
            None => None,
        };
        let mut state = stored.unwrap_or_default();
        change(&mut state);
        table
            .insert(id.as_u128(), encode(&state).as_slice())
            .map_err(store_error)?;
        Ok(())
    }

    pub fn set_key(&mut self, key: &str, answer: Option<&KeyAnswer>) -> Result<()> {
        let mut table = self.txn.open_table(KEYS).map_err(store_error)?;
        match answer {
            Some(answer) => table.insert(key, encode(answer).as_slice()).map(drop),
            None => table.remove(key).map(drop),
        }
        .map_err(store_error)
    }

    pub fn commit(self) -> Result<()> {
        self.txn.commit().map_err(store_error)
    }
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    postcard::to_stdvec(value).expect("a view's value serializes")
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(store_error)
}

fn store_error(error: impl std::fmt::Display) -> Error {
    Error::ViewStore {
        action: "using the views' store".into(),
        reason: error.to_string(),
    }
}
