//! One-minute tumbling windows over event time: how many orders were decided,
//! and how many of them were rejected, per minute of the orders' own clock.
//!
//! Windows are kept per input partition. Each partition has its own stream
//! time, the latest event time it has seen (as in Kafka Streams); a window
//! closes once stream time passes its end plus the grace period. A closed
//! window's counts are final: they are handed out once, when it closes, and an
//! event that still falls into it is late and counted as such, not added.
//!
//! Everything depends only on the sequence of events within each partition,
//! and partitions combine by sums, so the result does not depend on how
//! partitions interleave: that is what makes two runs over the same events
//! produce the same report.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

/// Window length: one minute, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// Counts for one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowCounts {
    pub orders: u64,
    pub failed: u64,
}

/// What recording one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Counted into its window (start in ms since the epoch); `closed` are
    /// the windows the event's time closed, oldest first, with final counts.
    Counted {
        window: i64,
        closed: Vec<(i64, WindowCounts)>,
    },
    /// Its window had already closed: counted as late only.
    Late,
}

/// The windows of one partition (or, merged, of several).
#[derive(Debug, Default, Clone)]
pub struct Windows {
    by_start: BTreeMap<i64, WindowCounts>,
    /// The latest event time seen, in ms since the epoch.
    stream_time: Option<i64>,
    /// Events that arrived after their window had closed.
    late: u64,
}

impl Windows {
    /// Counts one decided order into the window its event time falls in,
    /// unless that window has closed; windows stay open for `grace_ms` past
    /// their end.
    pub fn record(&mut self, event_time: DateTime<Utc>, failed: bool, grace_ms: i64) -> Recorded {
        let time = event_time.timestamp_millis();
        let start = window_start(event_time);
        let before = self.stream_time;
        if before.is_some_and(|now| closes_at(start, grace_ms) <= now) {
            self.late += 1;
            return Recorded::Late;
        }
        let counts = self.by_start.entry(start).or_default();
        counts.orders += 1;
        counts.failed += u64::from(failed);
        let now = before.map_or(time, |t| t.max(time));
        self.stream_time = Some(now);
        // Windows whose closing time lies in (before, now]: they were open
        // until this event and are closed from here on.
        let last = now - WINDOW_MS - grace_ms;
        let closed = match before {
            Some(before) if now > before => {
                let first = before - WINDOW_MS - grace_ms;
                self.by_start
                    .range(first.saturating_add(1)..=last)
                    .map(|(&s, &c)| (s, c))
                    .collect()
            }
            Some(_) => Vec::new(),
            None => self
                .by_start
                .range(..=last)
                .map(|(&s, &c)| (s, c))
                .collect(),
        };
        Recorded::Counted {
            window: start,
            closed,
        }
    }

    /// Removes the windows that are closed (their end plus `grace_ms` at or
    /// before stream time) and returns them, oldest first. Once handed out by
    /// `record`, a closed window's counts are final: a service keeps them
    /// elsewhere (`ClosedWindows`), and these stay small, holding only the
    /// windows still open.
    pub fn evict_closed(&mut self, grace_ms: i64) -> Vec<(i64, WindowCounts)> {
        let Some(now) = self.stream_time else {
            return Vec::new();
        };
        let first_open = now
            .saturating_sub(WINDOW_MS)
            .saturating_sub(grace_ms)
            .saturating_add(1);
        let open = self.by_start.split_off(&first_open);
        std::mem::replace(&mut self.by_start, open)
            .into_iter()
            .collect()
    }

    /// Adds `counts` into the window starting at `start`.
    pub fn add(&mut self, start: i64, counts: WindowCounts) {
        let mine = self.by_start.entry(start).or_default();
        mine.orders += counts.orders;
        mine.failed += counts.failed;
    }

    /// Counts of the window starting at `start` (ms since the epoch).
    pub fn get(&self, start: i64) -> WindowCounts {
        self.by_start.get(&start).copied().unwrap_or_default()
    }

    /// Sets a window's counts, as restored from a changelog.
    pub fn set(&mut self, start: i64, counts: WindowCounts) {
        self.by_start.insert(start, counts);
    }

    /// The latest event time seen (ms since the epoch), if any.
    pub fn stream_time(&self) -> Option<i64> {
        self.stream_time
    }

    /// Sets the stream time, as restored from a changelog.
    pub fn set_stream_time(&mut self, time: i64) {
        self.stream_time = Some(time);
    }

    /// How many events came after their window had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Sets the late count, as restored from a changelog.
    pub fn set_late(&mut self, late: u64) {
        self.late = late;
    }

    /// Adds every window of `other` into these (windows of different
    /// partitions): counts and late events add up, stream time is the later.
    pub fn merge(&mut self, other: &Windows) {
        for (&start, &counts) in &other.by_start {
            self.add(start, counts);
        }
        self.late += other.late;
        self.stream_time = self.stream_time.max(other.stream_time);
    }

    /// Windows in event-time order, as (start in ms since the epoch, counts).
    pub fn iter(&self) -> impl Iterator<Item = (i64, WindowCounts)> + '_ {
        self.by_start
            .iter()
            .map(|(&start, &counts)| (start, counts))
    }

    pub fn is_empty(&self) -> bool {
        self.by_start.is_empty()
    }
}

/// Windows over every partition of an input, merged: each partition's
/// share of a window's counts is added in, and the watermark (the least
/// stream time over the partitions, see `watermark`) closes them. A window
/// closes once, when the watermark reaches its end plus the grace period;
/// a share that arrives for a window already closed is late: its orders
/// are counted as late events, never added.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MergedWindows {
    open: BTreeMap<i64, WindowCounts>,
    /// The watermark that last closed windows: a window whose end plus
    /// grace is at or before it is closed.
    closed_through: Option<i64>,
    late: u64,
}

impl MergedWindows {
    /// Adds a partition's share of the window starting at `start`; false,
    /// and its orders counted late, when that window has closed.
    pub fn add(&mut self, start: i64, counts: WindowCounts, grace_ms: i64) -> bool {
        if self.is_closed(start, grace_ms) {
            self.late += counts.orders;
            return false;
        }
        let mine = self.open.entry(start).or_default();
        mine.orders += counts.orders;
        mine.failed += counts.failed;
        true
    }

    /// Whether the window starting at `start` has closed.
    pub fn is_closed(&self, start: i64, grace_ms: i64) -> bool {
        self.closed_through
            .is_some_and(|w| closes_at(start, grace_ms) <= w)
    }

    /// Moves the watermark to `watermark` (it never goes back) and returns
    /// the windows that closes, oldest first, with their final counts.
    pub fn advance(&mut self, watermark: i64, grace_ms: i64) -> Vec<(i64, WindowCounts)> {
        let watermark = self.closed_through.map_or(watermark, |w| w.max(watermark));
        self.closed_through = Some(watermark);
        // Windows starting at or before this close: start + WINDOW + grace <= watermark.
        let last = watermark.saturating_sub(WINDOW_MS).saturating_sub(grace_ms);
        let still_open = self.open.split_off(&last.saturating_add(1));
        std::mem::replace(&mut self.open, still_open)
            .into_iter()
            .collect()
    }

    /// The windows still open, oldest first.
    pub fn open(&self) -> impl Iterator<Item = (i64, WindowCounts)> + '_ {
        self.open.iter().map(|(&start, &counts)| (start, counts))
    }

    pub fn get(&self, start: i64) -> WindowCounts {
        self.open.get(&start).copied().unwrap_or_default()
    }

    pub fn closed_through(&self) -> Option<i64> {
        self.closed_through
    }

    /// Orders that came after their window had closed.
    pub fn late(&self) -> u64 {
        self.late
    }

    /// Restores an open window, the closing watermark, the late count.
    pub fn restore_window(&mut self, start: i64, counts: WindowCounts) {
        self.open.insert(start, counts);
    }

    pub fn restore_closed_through(&mut self, watermark: i64) {
        self.closed_through = Some(watermark);
    }

    pub fn restore_late(&mut self, late: u64) {
        self.late = late;
    }
}

/// Final counts of closed windows, oldest first, with the ones appended
/// since the last commit set apart: a rollback drops them, a commit only
/// moves a mark. 24 bytes a window.
#[derive(Debug, Default, Clone)]
pub struct ClosedWindows {
    rows: Vec<(i64, WindowCounts)>,
    committed: usize,
}

impl ClosedWindows {
    pub fn extend(&mut self, closed: impl IntoIterator<Item = (i64, WindowCounts)>) {
        self.rows.extend(closed);
    }

    pub fn commit(&mut self) {
        self.committed = self.rows.len();
    }

    pub fn rollback(&mut self) {
        self.rows.truncate(self.committed);
    }

    /// The committed rows.
    pub fn committed(&self) -> &[(i64, WindowCounts)] {
        &self.rows[..self.committed]
    }
}

/// The stream time at which the window starting at `start` closes.
fn closes_at(start: i64, grace_ms: i64) -> i64 {
    start + WINDOW_MS + grace_ms
}

/// Start of the window holding `time`: floored to the minute, also before 1970.
pub fn window_start(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis().div_euclid(WINDOW_MS) * WINDOW_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: i64 = 10_000;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn ms(text: &str) -> i64 {
        at(text).timestamp_millis()
    }

    #[test]
    fn merged_windows_close_by_the_watermark_once_and_count_stragglers_late() {
        let mut windows = MergedWindows::default();
        let share = |orders, failed| WindowCounts { orders, failed };
        let first = ms("2026-01-01T00:00:00Z");
        let second = ms("2026-01-01T00:01:00Z");
        assert!(windows.add(first, share(3, 1), GRACE));
        assert!(windows.add(first, share(2, 0), GRACE)); // another partition's share
        assert!(windows.add(second, share(4, 4), GRACE));
        // Past the first window's end, within grace: nothing closes.
        assert!(windows
            .advance(ms("2026-01-01T00:01:09.999Z"), GRACE)
            .is_empty());
        assert_eq!(
            windows.advance(ms("2026-01-01T00:01:10Z"), GRACE),
            [(first, share(5, 1))]
        );
        // Closed once: a later share is late, the watermark never goes back.
        assert!(!windows.add(first, share(7, 0), GRACE));
        assert_eq!(windows.late(), 7);
        assert!(windows
            .advance(ms("2026-01-01T00:00:00Z"), GRACE)
            .is_empty());
        assert!(windows.is_closed(first, GRACE));
        assert_eq!(windows.open().collect::<Vec<_>>(), [(second, share(4, 4))]);
        // The end of time closes everything.
        assert_eq!(windows.advance(i64::MAX, GRACE), [(second, share(4, 4))]);
    }

    #[test]
    fn a_window_closes_once_stream_time_passes_its_end_and_grace() {
        let mut windows = Windows::default();
        windows.record(at("2026-01-01T00:00:30Z"), true, GRACE);
        // Past the end, within grace: still open, and still counting.
        let inside = windows.record(at("2026-01-01T00:01:09.999Z"), false, GRACE);
        assert_eq!(
            inside,
            Recorded::Counted {
                window: ms("2026-01-01T00:01:00Z"),
                closed: vec![]
            }
        );
        windows.record(at("2026-01-01T00:00:59Z"), false, GRACE);
        let closing = windows.record(at("2026-01-01T00:01:10Z"), false, GRACE);
        let final_counts = WindowCounts {
            orders: 2,
            failed: 1,
        };
        assert_eq!(
            closing,
            Recorded::Counted {
                window: ms("2026-01-01T00:01:00Z"),
                closed: vec![(ms("2026-01-01T00:00:00Z"), final_counts)]
            }
        );
        // The window is closed: a straggler is late, and changes nothing.
        assert_eq!(
            windows.record(at("2026-01-01T00:00:01Z"), false, GRACE),
            Recorded::Late
        );
        assert_eq!(windows.get(ms("2026-01-01T00:00:00Z")), final_counts);
        assert_eq!(windows.late(), 1);
        // An event far ahead closes every window before it, each once.
        let Recorded::Counted { closed, .. } =
            windows.record(at("2026-01-01T01:00:00Z"), false, GRACE)
        else {
            panic!("an event in an open window is counted")
        };
        assert_eq!(
            closed.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![ms("2026-01-01T00:01:00Z")]
        );
        assert_eq!(windows.stream_time(), Some(ms("2026-01-01T01:00:00Z")));
    }

    #[test]
    fn restored_stream_time_keeps_closed_windows_closed() {
        let mut windows = Windows::default();
        windows.set(ms("2026-01-01T00:00:00Z"), WindowCounts::default());
        windows.set_stream_time(ms("2026-01-01T00:05:00Z"));
        assert_eq!(
            windows.record(at("2026-01-01T00:00:05Z"), false, GRACE),
            Recorded::Late
        );
        assert!(matches!(
            windows.record(at("2026-01-01T00:06:00Z"), false, GRACE),
            Recorded::Counted { closed, .. } if closed.is_empty()
        ));
    }

    #[test]
    fn counts_land_in_the_minute_of_their_event_time() {
        let mut windows = Windows::default();
        windows.record(at("2026-01-01T00:00:59.999Z"), false, GRACE);
        windows.record(at("2026-01-01T00:00:00Z"), true, GRACE);
        windows.record(at("2026-01-01T00:01:00Z"), false, GRACE);
        let all: Vec<_> = windows.iter().collect();
        let minute = at("2026-01-01T00:00:00Z").timestamp_millis();
        assert_eq!(
            all,
            vec![
                (
                    minute,
                    WindowCounts {
                        orders: 2,
                        failed: 1
                    }
                ),
                (
                    minute + WINDOW_MS,
                    WindowCounts {
                        orders: 1,
                        failed: 0
                    }
                ),
            ]
        );
    }

    #[test]
    fn merging_adds_window_by_window() {
        let mut a = Windows::default();
        a.record(at("2026-01-01T00:00:01Z"), true, GRACE);
        let mut b = Windows::default();
        b.record(at("2026-01-01T00:00:02Z"), false, GRACE);
        b.record(at("2026-01-01T00:05:00Z"), false, GRACE);
        a.merge(&b);
        let minute = at("2026-01-01T00:00:00Z").timestamp_millis();
        assert_eq!(
            a.get(minute),
            WindowCounts {
                orders: 2,
                failed: 1
            }
        );
        assert_eq!(a.iter().count(), 2);
        assert_eq!(a.stream_time(), Some(ms("2026-01-01T00:05:00Z")));
    }

    #[test]
    fn closed_windows_leave_and_their_log_rolls_back() {
        let mut windows = Windows::default();
        let mut log = ClosedWindows::default();
        windows.record(at("2026-01-01T00:00:01Z"), true, GRACE);
        windows.record(at("2026-01-01T00:01:01Z"), false, GRACE);
        // Nothing has closed yet.
        assert!(windows.evict_closed(GRACE).is_empty());
        // Closes 00:00 (at 00:01:10), not yet 00:01 (at 00:02:10).
        windows.record(at("2026-01-01T00:02:09Z"), false, GRACE);
        let closed = windows.evict_closed(GRACE);
        assert_eq!(
            closed,
            vec![(
                ms("2026-01-01T00:00:00Z"),
                WindowCounts {
                    orders: 1,
                    failed: 1
                }
            )]
        );
        // Only open windows are left; a straggler for the closed one is late.
        assert_eq!(windows.iter().count(), 2);
        assert_eq!(
            windows.record(at("2026-01-01T00:00:30Z"), false, GRACE),
            Recorded::Late
        );
        log.extend(closed);
        log.commit();
        log.extend(windows.evict_closed(GRACE));
        log.extend([(ms("2026-01-01T00:09:00Z"), WindowCounts::default())]);
        log.rollback();
        assert_eq!(log.committed().len(), 1);
        assert_eq!(log.rows.len(), 1);
    }

    #[test]
    fn floors_times_before_the_epoch() {
        assert_eq!(window_start(at("1969-12-31T23:59:59Z")), -WINDOW_MS);
    }
}
