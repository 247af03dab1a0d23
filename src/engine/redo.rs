//! How often a failed batch is redone before the engine gives up, and how
//! long it waits before each redo.
//!
//! A batch whose error is of class `Redo` (see `classify`) is aborted and
//! done again. An outage costs a few such redos; a cause that does not go
//! away would cost them forever, so the redos of a batch without progress
//! in between are counted, spaced out by a backoff that doubles, and the
//! service ends after [`LIMIT`] of them. Progress resets the count: a batch
//! committed, or a redo that found which records to set aside (each such
//! redo sets aside at least one more record of a finite batch).

use std::time::Duration;

/// Redos of one batch in a row, without progress, before giving up. Their
/// pauses add up to more than librdkafka waits before it calls a topic
/// missing from the metadata unknown (`topic.metadata.propagation.max.ms`,
/// 30 s): a topic deleted under the service is then named by Kafka's own
/// "Unknown topic" rather than by the transaction it broke.
pub const LIMIT: u32 = 10;
/// The pause before the first redo; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(8);

/// The redos of the batch in hand.
#[derive(Debug, Default)]
pub struct Redos {
    in_a_row: u32,
}

impl Redos {
    /// The batch failed (again): the pause before redoing it, or None when
    /// it has failed [`LIMIT`] times in a row and the engine should stop.
    pub fn failed(&mut self) -> Option<Duration> {
        if self.in_a_row >= LIMIT {
            return None;
        }
        self.in_a_row += 1;
        Some((FIRST_PAUSE * 2u32.pow(self.in_a_row - 1)).min(MAX_PAUSE))
    }

    /// A batch committed, or a redo learned something: count afresh.
    pub fn progressed(&mut self) {
        self.in_a_row = 0;
    }

    /// Failed redos so far, for the error that ends the run.
    pub fn attempts(&self) -> u32 {
        self.in_a_row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redos_back_off_and_are_bounded() {
        let mut redos = Redos::default();
        let pauses: Vec<u64> = std::iter::from_fn(|| redos.failed())
            .map(|p| p.as_millis() as u64)
            .collect();
        assert_eq!(
            pauses,
            [250, 500, 1000, 2000, 4000, 8000, 8000, 8000, 8000, 8000]
        );
        assert!(pauses.iter().sum::<u64>() > 45_000, "outlasts 30 s");
        assert_eq!(redos.attempts(), LIMIT);
        assert_eq!(redos.failed(), None, "stays given up");
    }

    #[test]
    fn progress_counts_afresh() {
        let mut redos = Redos::default();
        for _ in 0..LIMIT - 1 {
            redos.failed();
        }
        redos.progressed();
        assert_eq!(redos.failed(), Some(FIRST_PAUSE));
        assert_eq!(redos.attempts(), 1);
    }
}
