//! Inventory's first stage, per partition of the orders topic: checks each
//! order (one that is not a valid `OrderPlaced` is dead-lettered), tells
//! the orders stage's partition of the same number that it was placed (so
//! that decisions leave in the order the orders came), and sends one
//! request per SKU it names to `<group>-stock-repartition`, keyed by the
//! SKU and in the partition `sku_partition` names, so that each SKU's
//! stock is answered in exactly one place. It keeps no state. A batch run that has read a partition to its end says so to
//! every stock partition, after that partition's last request.

use std::collections::BTreeMap;

use crate::domain::events::OrderPlaced;
use crate::domain::lines::{sku_partition, split, OrderRecord, StockRecord, Upstream};
use crate::engine::{OutRecord, Poison, Task};

pub struct SplitTask {
    pub stock_topic: String,
    /// The orders stage's input, with as many partitions as the orders
    /// topic: an order's home there is its partition here.
    pub orders_topic: String,
    /// Names this batch run in its `Finished` markers.
    pub run: String,
    /// Partitions of the stock topic: a `Finished` goes to each.
    pub stock_partitions: i32,
    /// Partition → the timestamp of its last order: what its `Finished`
    /// carries (no new event: no latency is measured on it downstream).
    pub last_timestamp: BTreeMap<i32, i64>,
}

impl Task for SplitTask {
    fn assigned(&mut self, _partition: i32) {}

    fn restore(&mut self, _partition: i32, _key: &[u8], _value: &[u8]) {}

    fn revoked(&mut self, _partition: i32) {}

    fn process(
        &mut self,
        partition: i32,
        timestamp: Option<i64>,
        payload: &[u8],
        out: &mut Vec<OutRecord>,
    ) -> Result<(), Poison> {
        if let Some(timestamp) = timestamp {
            self.last_timestamp.insert(partition, timestamp);
        }
        let order = OrderPlaced::decode(payload).map_err(|e| Poison(e.to_string()))?;
        let requests = split(&order, partition);
        let placed = OrderRecord::Placed {
            order_id: order.order_id,
            lines: requests.len() as u32,
            event_time: order.event_time.timestamp_millis(),
            created: timestamp,
        };
        out.push(OutRecord {
            topic: self.orders_topic.clone(),
            partition: Some(partition),
            key: order.order_id.to_string().into_bytes(),
            payload: placed.encode(),
            timestamp: None,
        });
        for request in requests {
            out.push(OutRecord {
                topic: self.stock_topic.clone(),
                partition: Some(sku_partition(&request.sku, self.stock_partitions)),
                key: request.sku.clone().into_bytes(),
                payload: StockRecord::Reserve(request).encode(),
                timestamp: None,
            });
        }
        Ok(())
    }

    fn reached_end(&mut self, partitions: &[i32], out: &mut Vec<OutRecord>) {
        for &partition in partitions {
            let finished = StockRecord::Finished {
                from: Upstream::Split,
                partition,
                run: self.run.clone(),
            }
            .encode();
            let timestamp = self.last_timestamp.get(&partition).copied();
            out.extend(OutRecord::to_every(
                &self.stock_topic,
                self.stock_partitions,
                partition.to_string().as_bytes(),
                &finished,
                timestamp,
            ));
        }
    }

    fn commit(&mut self) {}

    fn rollback(&mut self) {}
}
