//! wrk (Debian's package; scripts/setup installs it), the HTTP load
//! generator that measures how many orders a second the API accepts: its
//! connections post orders back to back for a fixed time (`post_orders.lua`),
//! and the script's last line gives the bench the figures as JSON.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use tokio::process::Command;

use crate::domain::latency::LatencySummary;
use crate::error::{Error, Result};

const SCRIPT: &str = include_str!("post_orders.lua");

/// What wrk's script reports at its end.
#[derive(Debug, Clone, Copy, Deserialize)]
struct Reported {
    requests: u64,
    duration_us: u64,
    /// Answers of status 400 and above.
    status_errors: u64,
    /// Connections refused or broken, and requests timed out.
    socket_errors: u64,
    p50_us: u64,
    p99_us: u64,
    p999_us: u64,
    max_us: u64,
}

/// A run of wrk that every answer of was a 202.
#[derive(Debug, Clone, Copy)]
pub struct Accepted {
    /// Orders answered 202.
    pub orders: u64,
    pub seconds: f64,
    /// Request to answer, under full load.
    pub latency: LatencySummary,
}

/// Posts orders to the API at `addr` over `connections` connections (wrk's
/// threads: one per core) for `duration`; fails unless every answer wrk saw
/// was a 202.
pub async fn post_orders(
    addr: SocketAddr,
    connections: u32,
    duration: Duration,
    work_dir: &Path,
) -> Result<Accepted> {
    let script = work_dir.join("post_orders.lua");
    std::fs::write(&script, SCRIPT).map_err(|cause| Error::Io {
        action: "writing",
        path: script.clone(),
        cause,
    })?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let output = Command::new("wrk")
        .arg(format!("--threads={}", threads.min(connections as usize)))
        .arg(format!("--connections={connections}"))
        .arg(format!("--duration={}s", duration.as_secs().max(1)))
        // An order is acknowledged once every in-sync replica has it: well
        // under this, unless the broker is in trouble, which is an error.
        .arg("--timeout=10s")
        .arg("--script")
        .arg(&script)
        .arg(format!("http://{addr}"))
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| {
            failed(format!(
                "could not be started ({e}); scripts/setup installs it (Debian's package wrk)"
            ))
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(failed(format!(
            "exited with {}: {}{}",
            output.status,
            stdout.trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    read_figures(&stdout)
}

/// The figures of wrk's output (`post_orders.lua`'s last line), if every
/// answer was a 202.
fn read_figures(stdout: &str) -> Result<Accepted> {
    let reported: Reported = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .ok_or_else(|| failed(format!("printed no figures: {}", stdout.trim())))?;
    if reported.status_errors > 0 || reported.socket_errors > 0 {
        return Err(failed(format!(
            "of {} requests, {} were refused by the API and {} failed on the socket: {}",
            reported.requests,
            reported.status_errors,
            reported.socket_errors,
            stdout.trim()
        )));
    }
    let ms = |us: u64| us as f64 / 1e3;
    Ok(Accepted {
        orders: reported.requests,
        seconds: reported.duration_us as f64 / 1e6,
        latency: LatencySummary {
            samples: reported.requests,
            p50_ms: ms(reported.p50_us),
            p99_ms: ms(reported.p99_us),
            p999_ms: ms(reported.p999_us),
            max_ms: ms(reported.max_us),
        },
    })
}

fn failed(detail: String) -> Error {
    Error::Tool {
        tool: "wrk".into(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "Running 2s test @ http://127.0.0.1:40000
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    21.29ms   10.12ms  98.41ms   71.20%
  4410 requests in 2.00s, 1.01MB read
Requests/sec:   2203.53
Transfer/sec:    516.45KB
";

    #[test]
    fn figures_come_from_the_scripts_last_line() {
        let out = format!(
            "{SUMMARY}{{\"requests\":4410,\"duration_us\":2001330,\"status_errors\":0,\
             \"socket_errors\":0,\"p50_us\":19500,\"p99_us\":55000,\"p999_us\":90000,\
             \"max_us\":98410}}\n"
        );
        let accepted = read_figures(&out).unwrap();
        assert_eq!(accepted.orders, 4410);
        assert!((accepted.seconds - 2.00133).abs() < 1e-9);
        assert_eq!(
            (
                accepted.latency.p50_ms,
                accepted.latency.p99_ms,
                accepted.latency.max_ms
            ),
            (19.5, 55.0, 98.41)
        );
    }

    #[test]
    fn a_refused_request_or_no_figures_fail_the_run() {
        let refused = format!(
            "{SUMMARY}{{\"requests\":4410,\"duration_us\":2001330,\"status_errors\":3,\
             \"socket_errors\":0,\"p50_us\":1,\"p99_us\":1,\"p999_us\":1,\"max_us\":1}}\n"
        );
        let error = read_figures(&refused).unwrap_err().to_string();
        assert!(error.contains("3 were refused"), "{error}");
        assert!(read_figures(SUMMARY).is_err());
    }
}
