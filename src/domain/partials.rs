//! What analytics' counting stage tells its merging stage through the
//! internal topic `<group>-merge-repartition`: each input partition's share
//! of a window's counts, keyed by the window's start so that every share of
//! a window meets in one partition; and each input partition's progress in
//! event time, sent to every partition so that each knows the watermark.
//! JSON, like the public events; the window start in ms since the epoch.

use serde::{Deserialize, Serialize};

use super::watermark::Progress;
use super::windows::WindowCounts;

/// One record of the merge topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Partial {
    /// Counts of one window from one input partition (of one batch).
    Share {
        source_partition: i32,
        window_start: i64,
        orders: u64,
        failed: u64,
    },
    /// How far one input partition is in event time.
    Progress {
        source_partition: i32,
        progress: Progress,
    },
}

impl Partial {
    pub fn share(source_partition: i32, window_start: i64, counts: WindowCounts) -> Self {
        Partial::Share {
            source_partition,
            window_start,
            orders: counts.orders,
            failed: counts.failed,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Partial always serializes")
    }

    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_round_trip_and_read_plainly() {
        let share = Partial::share(
            2,
            1_767_225_600_000,
            WindowCounts {
                orders: 5,
                failed: 1,
            },
        );
        assert_eq!(
            String::from_utf8(share.encode()).unwrap(),
            r#"{"kind":"share","source_partition":2,"window_start":1767225600000,"orders":5,"failed":1}"#
        );
        let idle = Partial::Progress {
            source_partition: 0,
            progress: Progress::Idle,
        };
        assert_eq!(
            String::from_utf8(idle.encode()).unwrap(),
            r#"{"kind":"progress","source_partition":0,"progress":{"state":"idle"}}"#
        );
        for partial in [share, idle] {
            assert_eq!(Partial::decode(&partial.encode()).unwrap(), partial);
        }
        assert!(Partial::decode(b"{}").is_err());
    }
}
