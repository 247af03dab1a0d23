//! How long events took to get somewhere: a latency histogram (HdrHistogram,
//! microsecond resolution, three significant digits) and its summary in
//! milliseconds at the percentiles a benchmark reports.
//!
//! The clock readings come from the caller (a record's timestamp and the time
//! it was processed), so this stays plain arithmetic and is unit-tested.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency kept apart from the rest: an hour. Anything longer
/// (a replay of old events) is recorded as an hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// Latencies recorded so far.
#[derive(Debug, Clone)]
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        Self {
            histogram: Histogram::new_with_bounds(1, MAX_MICROS, 3)
                .expect("valid histogram bounds"),
        }
    }
}

impl Latencies {
    /// Records one latency from two timestamps in ms since the epoch. A
    /// negative difference (clocks of two machines) counts as zero.
    pub fn record_millis(&mut self, from_ms: i64, to_ms: i64) {
        let micros = (to_ms.saturating_sub(from_ms).max(0) as u64).saturating_mul(1_000);
        self.record_micros(micros);
    }

    pub fn record_micros(&mut self, micros: u64) {
        self.histogram.saturating_record(micros.min(MAX_MICROS));
    }

    /// Adds everything `other` recorded.
    pub fn add(&mut self, other: &Latencies) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms of equal bounds add up");
    }

    pub fn clear(&mut self) {
        self.histogram.reset();
    }

    /// Calls `f` with each distinct latency recorded, in seconds (the middle
    /// of the values the histogram takes as equal), and how many times.
    pub fn for_each_seconds(&self, mut f: impl FnMut(f64, u64)) {
        for value in self.histogram.iter_recorded() {
            let micros = self.histogram.median_equivalent(value.value_iterated_to());
            f(micros as f64 / 1e6, value.count_at_value());
        }
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let ms = |quantile: f64| self.histogram.value_at_quantile(quantile) as f64 / 1_000.0;
        LatencySummary {
            samples: self.count(),
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: self.histogram.max() as f64 / 1_000.0,
        }
    }
}

/// Percentiles of recorded latencies, in milliseconds (0 when none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub samples: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut latencies = Latencies::default();
        // 1..=1000 ms, one sample each.
        for ms in 1..=1000 {
            latencies.record_millis(0, ms);
        }
        let summary = latencies.summary();
        assert_eq!(summary.samples, 1000);
        // Three significant digits: within 0.1% of the exact value.
        assert!((summary.p50_ms - 500.0).abs() <= 0.5, "{summary:?}");
        assert!((summary.p99_ms - 990.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.p999_ms - 999.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.max_ms - 1000.0).abs() <= 1.0, "{summary:?}");
    }

    #[test]
    fn adds_clears_and_clamps() {
        let mut batch = Latencies::default();
        batch.record_millis(100, 90); // clock skew: zero
        batch.record_millis(0, i64::MAX / 2); // a replayed old event: an hour
        let mut total = Latencies::default();
        total.add(&batch);
        assert_eq!(total.count(), 2);
        assert!((total.summary().max_ms - 3_600_000.0).abs() < 3_600.0);
        let mut seen = Vec::new();
        batch.for_each_seconds(|seconds, count| seen.push((seconds, count)));
        assert_eq!(seen.len(), 2, "{seen:?}");
        assert_eq!(seen[0], (0.0, 1));
        // Three significant digits.
        assert!(
            (seen[1].0 - 3_600.0).abs() < 3.6 && seen[1].1 == 1,
            "{seen:?}"
        );
        batch.clear();
        assert_eq!(batch.count(), 0);
        assert_eq!(batch.summary().samples, 0);
    }
}
