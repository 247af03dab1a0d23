//! Event-time progress over every partition of an input, in the manner of
//! Flink's watermarks with source idleness: the watermark is the minimum
//! over the partitions of their stream time (the latest event time each has
//! seen), so one partition that is behind holds windows open for all.
//!
//! A partition that has had no records for a while (the idle timeout, wall
//! clock, judged where it is read) is idle: it stops holding the watermark
//! back until it has records again. When every partition is idle, the
//! watermark follows the wall clock, so the last windows close soon after
//! traffic stops (Flink's own watermark would stop there). A partition read
//! to its end by a batch job is finished: it holds nothing back ever again,
//! and when every partition is finished the watermark is the end of time.

/// What a partition's reader says of it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Progress {
    /// Its stream time: the latest event time it has seen (ms since the
    /// epoch), and it is active.
    At { stream_time: i64 },
    /// No records for the idle timeout.
    Idle,
    /// Read to its end (a batch job): no more records will come.
    Finished,
}

/// One partition's progress, as last heard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Source {
    /// The latest event time it reported (never goes back).
    pub stream_time: Option<i64>,
    pub idle: bool,
    pub finished: bool,
}

/// The progress of every partition of one input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Watermark {
    sources: Vec<Source>,
}

impl Watermark {
    /// An input of `partitions` partitions, none heard from yet: each holds
    /// the watermark back until it reports.
    pub fn new(partitions: usize) -> Self {
        Self {
            sources: vec![Source::default(); partitions],
        }
    }

    /// What partition `source` reported. A report for a partition beyond
    /// the known count (the input grew) widens the input.
    pub fn report(&mut self, source: usize, progress: Progress) {
        if source >= self.sources.len() {
            self.sources.resize(source + 1, Source::default());
        }
        let known = &mut self.sources[source];
        match progress {
            Progress::At { stream_time } => {
                known.stream_time = known.stream_time.max(Some(stream_time));
                known.idle = false;
                known.finished = false;
            }
            Progress::Idle => known.idle = true,
            Progress::Finished => known.finished = true,
        }
    }

    /// Sets a partition's progress as restored from a changelog.
    pub fn restore(&mut self, source: usize, known: Source) {
        if source >= self.sources.len() {
            self.sources.resize(source + 1, Source::default());
        }
        self.sources[source] = known;
    }

    pub fn sources(&self) -> &[Source] {
        &self.sources
    }

    /// The watermark at wall-clock time `now_ms`: the least stream time of
    /// the active partitions (None while one has reported none); when none
    /// is active, the wall clock if any is idle, the end of time if all are
    /// finished.
    pub fn current(&self, now_ms: i64) -> Option<i64> {
        let mut active = self
            .sources
            .iter()
            .filter(|s| !s.idle && !s.finished)
            .peekable();
        if active.peek().is_some() {
            return active.map(|s| s.stream_time).min().flatten();
        }
        if self.sources.iter().any(|s| s.idle && !s.finished) {
            // Event times ahead of the wall clock stay counted.
            let latest = self.sources.iter().filter_map(|s| s.stream_time).max();
            return Some(latest.map_or(now_ms, |t| t.max(now_ms)));
        }
        (!self.sources.is_empty()).then_some(i64::MAX)
    }

    /// Whether every partition is finished.
    pub fn all_finished(&self) -> bool {
        !self.sources.is_empty() && self.sources.iter().all(|s| s.finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn at(stream_time: i64) -> Progress {
        Progress::At { stream_time }
    }

    #[test]
    fn the_slowest_partition_holds_the_watermark() {
        let mut watermark = Watermark::new(3);
        watermark.report(0, at(500));
        watermark.report(1, at(300));
        assert_eq!(watermark.current(NOW), None, "partition 2 not heard from");
        watermark.report(2, at(900));
        assert_eq!(watermark.current(NOW), Some(300));
        watermark.report(1, at(200)); // an older event: stream time stays
        assert_eq!(watermark.current(NOW), Some(300));
        watermark.report(1, at(700));
        assert_eq!(watermark.current(NOW), Some(500));
    }

    #[test]
    fn an_idle_partition_stops_holding_it_back_until_it_has_records_again() {
        let mut watermark = Watermark::new(2);
        watermark.report(0, at(500));
        watermark.report(1, Progress::Idle);
        assert_eq!(watermark.current(NOW), Some(500));
        watermark.report(1, at(100));
        assert_eq!(watermark.current(NOW), Some(100));
    }

    #[test]
    fn when_every_partition_is_idle_the_wall_clock_rules() {
        let mut watermark = Watermark::new(2);
        watermark.report(0, at(500));
        watermark.report(0, Progress::Idle);
        watermark.report(1, Progress::Idle);
        assert_eq!(watermark.current(NOW), Some(NOW));
        // Event times ahead of the wall clock are not taken back.
        watermark.report(0, at(NOW + 5));
        watermark.report(0, Progress::Idle);
        assert_eq!(watermark.current(NOW), Some(NOW + 5));
    }

    #[test]
    fn finished_partitions_hold_nothing_and_all_finished_is_the_end() {
        let mut watermark = Watermark::new(2);
        watermark.report(0, Progress::Finished);
        watermark.report(1, at(42));
        assert_eq!(watermark.current(NOW), Some(42));
        assert!(!watermark.all_finished());
        watermark.report(1, Progress::Finished);
        assert_eq!(watermark.current(NOW), Some(i64::MAX));
        assert!(watermark.all_finished());
    }

    #[test]
    fn a_partition_beyond_the_known_count_widens_the_input() {
        let mut watermark = Watermark::new(1);
        watermark.report(0, at(10));
        watermark.report(2, at(30));
        assert_eq!(watermark.sources().len(), 3);
        assert_eq!(watermark.current(NOW), None, "partition 1 not heard from");
    }
}
