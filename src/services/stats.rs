//! What a service run says about itself when asked (`--stats-file`): events
//! handled, how long it was busy, how old events were when processed, and
//! the process's peak memory. `orderflow bench` reads these files; scripts
//! can too.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::latency::LatencySummary;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStats {
    /// produce, inventory, analytics or api.
    pub service: String,
    /// Events published (produce), orders placed (api) or events consumed
    /// (the others), committed.
    pub events: u64,
    /// Time spent working: from the first event to the last acknowledgement
    /// or commit.
    pub busy_seconds: f64,
    pub events_per_second: f64,
    /// Record timestamp to processing, of records created after the service
    /// had taken over their partition; absent for the producer.
    pub latency: Option<LatencySummary>,
    /// The process's peak resident memory (VmHWM), where the OS tells it.
    pub peak_rss_bytes: Option<u64>,
}

impl RunStats {
    /// Stats of a run that handled `events` in `busy`, with this process's
    /// peak memory so far.
    pub fn new(
        service: &str,
        events: u64,
        busy: Duration,
        latency: Option<LatencySummary>,
    ) -> Self {
        let seconds = busy.as_secs_f64();
        Self {
            service: service.to_owned(),
            events,
            busy_seconds: seconds,
            events_per_second: if seconds > 0.0 {
                events as f64 / seconds
            } else {
                0.0
            },
            latency,
            peak_rss_bytes: peak_rss_bytes(),
        }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).expect("stats serialize");
        std::fs::write(path, json).map_err(|cause| Error::Io {
            action: "writing",
            path: path.to_owned(),
            cause,
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|cause| Error::Io {
            action: "reading",
            path: path.to_owned(),
            cause,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| Error::BadFile {
            path: path.to_owned(),
            expected: "a stats file",
            reason: e.to_string(),
        })
    }
}

/// This process's peak resident set size, from /proc/self/status (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM:` line of a /proc status file, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status =
            "Name:\torderflow\nVmPeak:\t  200000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t 40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(51200 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        let stats = RunStats::new("inventory", 500, Duration::from_millis(250), None);
        assert_eq!(stats.events_per_second, 2000.0);
        stats.write(&path).unwrap();
        assert_eq!(RunStats::read(&path).unwrap(), stats);
    }
}
