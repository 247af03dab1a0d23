//! A consumer group's health per partition, in the manner of LinkedIn's
//! Burrow: not a lag threshold, but how committed offsets and lag moved over
//! an evaluation window of samples. Plain logic over observations; `lag`
//! takes the samples.
//!
//! Rules, in order, for a partition's samples (oldest first, the last now):
//! 1. lag 0 now: **OK**, whatever came before;
//! 2. the committed offset went back between two samples: **REWIND** (a
//!    replay);
//! 3. lag and no active member in the group: **STOP**, the consumer stopped
//!    committing (Burrow tells from commit times, which Kafka's offset API
//!    does not return; a group without members commits nothing);
//! 4. the committed offset did not move over the window while lag stayed,
//!    and neither did any other partition's of the group: **STALL**, the
//!    members are stuck. (A consumer working through one partition's backlog
//!    at a time leaves the others unmoved for a while: busy, not stuck; the
//!    next rule judges those);
//! 5. lag grew over the window and shrank in no interval: **WARN**, the
//!    consumer falls behind;
//! 6. otherwise **OK**.
//!
//! Rules 4 and 5 need two samples or more. A group's status is the worst of
//! its partitions', in the order OK, REWIND, WARN, STALL, STOP.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use serde::Serialize;

/// A partition's or a group's status, from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Rewind,
    Warn,
    Stall,
    Stop,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "OK",
            Self::Rewind => "REWIND",
            Self::Warn => "WARN",
            Self::Stall => "STALL",
            Self::Stop => "STOP",
        })
    }
}

/// One sample of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The group's committed offset (None: nothing committed).
    pub committed: Option<i64>,
    /// Log end minus committed (None: nothing committed).
    pub lag: Option<i64>,
}

/// What the group as a whole did over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupActivity {
    /// The group has active members now.
    pub consuming: bool,
    /// Some partition's committed offset moved forward within the window.
    pub progressing: bool,
}

/// The status of one partition from its observations, oldest first, the
/// last being now, and what its group did.
pub fn evaluate(window: &[Observation], group: GroupActivity) -> Status {
    let Some(last) = window.last() else {
        return Status::Ok;
    };
    // Nothing committed counts as behind: the consumer has not started.
    let lag = |o: &Observation| o.lag.unwrap_or(i64::MAX);
    if last.lag == Some(0) {
        return Status::Ok;
    }
    let went_back = window
        .windows(2)
        .any(|w| matches!((w[0].committed, w[1].committed), (Some(a), Some(b)) if b < a));
    if went_back {
        return Status::Rewind;
    }
    if !group.consuming {
        return Status::Stop;
    }
    if window.len() < 2 {
        return Status::Ok;
    }
    if !group.progressing && window.iter().all(|o| o.committed == last.committed) {
        return Status::Stall;
    }
    let never_shrank = window.windows(2).all(|w| lag(&w[1]) >= lag(&w[0]));
    if never_shrank && lag(last) > lag(&window[0]) {
        return Status::Warn;
    }
    Status::Ok
}

/// A partition, as samples name it.
pub type PartitionKey = (String, i32);

/// The last `size` samples of a group's partitions, to evaluate over.
#[derive(Debug, Clone)]
pub struct Window {
    size: usize,
    samples: VecDeque<BTreeMap<PartitionKey, Observation>>,
}

impl Window {
    /// A window of `size` samples (at least one).
    pub fn new(size: usize) -> Self {
        Self {
            size: size.max(1),
            samples: VecDeque::new(),
        }
    }

    /// Adds a sample, forgetting the oldest beyond the window's size.
    pub fn push(&mut self, sample: BTreeMap<PartitionKey, Observation>) {
        if self.samples.len() == self.size {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The status of `partition` over the samples that have it;
    /// `consuming`: whether the group has active members now.
    pub fn status(&self, partition: &PartitionKey, consuming: bool) -> Status {
        let observations: Vec<Observation> = self
            .samples
            .iter()
            .filter_map(|sample| sample.get(partition).copied())
            .collect();
        let group = GroupActivity {
            consuming,
            progressing: self.progressing(),
        };
        evaluate(&observations, group)
    }

    /// Whether any partition's committed offset moved forward between two
    /// consecutive samples of the window.
    fn progressing(&self) -> bool {
        let consecutive = self.samples.iter().zip(self.samples.iter().skip(1));
        consecutive.into_iter().any(|(before, after)| {
            after.iter().any(|(key, now)| {
                // A first commit is progress too.
                let was = before.get(key).map(|o| o.committed.unwrap_or(-1));
                matches!((was, now.committed), (Some(a), Some(b)) if b > a)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Observations from (committed, log end) pairs.
    fn window(points: &[(i64, i64)]) -> Vec<Observation> {
        points
            .iter()
            .map(|&(committed, end)| Observation {
                committed: Some(committed),
                lag: Some(end - committed),
            })
            .collect()
    }

    const IDLE: GroupActivity = GroupActivity {
        consuming: false,
        progressing: false,
    };
    const STUCK: GroupActivity = GroupActivity {
        consuming: true,
        progressing: false,
    };
    const BUSY: GroupActivity = GroupActivity {
        consuming: true,
        progressing: true,
    };

    #[test]
    fn caught_up_now_is_ok_whatever_came_before() {
        assert_eq!(evaluate(&window(&[(50, 10), (100, 100)]), BUSY), Status::Ok);
        assert_eq!(evaluate(&window(&[(100, 100)]), IDLE), Status::Ok);
        assert_eq!(evaluate(&[], IDLE), Status::Ok);
    }

    #[test]
    fn offsets_going_back_is_a_rewind() {
        let replayed = window(&[(100, 100), (0, 100), (0, 100)]);
        assert_eq!(evaluate(&replayed, IDLE), Status::Rewind);
        assert_eq!(evaluate(&replayed, BUSY), Status::Rewind);
    }

    #[test]
    fn lag_without_members_is_a_stop() {
        assert_eq!(evaluate(&window(&[(100, 150)]), IDLE), Status::Stop);
        let never_committed = Observation {
            committed: None,
            lag: None,
        };
        assert_eq!(evaluate(&[never_committed], IDLE), Status::Stop);
    }

    #[test]
    fn members_that_move_nowhere_are_a_stall() {
        let unmoved = window(&[(100, 150), (100, 150), (100, 150)]);
        assert_eq!(evaluate(&unmoved, STUCK), Status::Stall);
        // One sample cannot tell.
        assert_eq!(evaluate(&unmoved[..1], STUCK), Status::Ok);
        // Busy on other partitions: this one waits its turn, no stall; its
        // lag growing meanwhile is a warning.
        assert_eq!(evaluate(&unmoved, BUSY), Status::Ok);
        let waiting = window(&[(100, 150), (100, 160), (100, 170)]);
        assert_eq!(evaluate(&waiting, BUSY), Status::Warn);
    }

    #[test]
    fn lag_growing_in_every_interval_is_a_warning() {
        let behind = window(&[(100, 150), (120, 180), (140, 230)]);
        assert_eq!(evaluate(&behind, BUSY), Status::Warn);
        // Lag that shrank once is keeping up on the whole.
        let recovering = window(&[(100, 150), (140, 170), (160, 230)]);
        assert_eq!(evaluate(&recovering, BUSY), Status::Ok);
        // Steady lag, offsets moving: keeping up.
        let steady = window(&[(100, 150), (150, 200), (200, 250)]);
        assert_eq!(evaluate(&steady, BUSY), Status::Ok);
    }

    #[test]
    fn the_window_keeps_its_last_samples_per_partition() {
        let key = ("t".to_string(), 0);
        let mut samples = Window::new(2);
        for (committed, end) in [(100, 100), (50, 100), (60, 120), (60, 130)] {
            samples.push(BTreeMap::from([(
                key.clone(),
                window(&[(committed, end)])[0],
            )]));
        }
        // (100 → 50) has left the window: no rewind; 60, 60: stalled.
        assert_eq!(samples.status(&key, true), Status::Stall);
        assert_eq!(samples.status(&("t".into(), 1), true), Status::Ok);
        assert!(Status::Stop > Status::Stall && Status::Warn > Status::Rewind);
        assert_eq!(Status::Rewind.to_string(), "REWIND");
    }
}
