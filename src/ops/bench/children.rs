//! orderflow's own services, run by the bench as separate processes of this
//! same binary, each with `--stats-file`: one process per service, so that
//! each one's peak memory is its own, as in production. Each serves its
//! metrics on a port of its own, which tells when it has taken over its
//! partitions.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::config::security::PASSWORD_ENV;
use crate::config::KafkaSettings;
use crate::error::{Error, Result};
use crate::metrics::scrape::scrape;
use crate::services::stats::RunStats;

/// How long a service may take to finish after SIGTERM (it commits what is
/// open); a run to the end of its input gets this and time in proportion
/// to its events (`run_to_end`).
pub const STOP_LIMIT: Duration = Duration::from_secs(120);

/// A running service.
pub struct Service {
    name: String,
    child: Child,
    stats_file: PathBuf,
    log: PathBuf,
    /// Where it serves its metrics.
    metrics: SocketAddr,
}

impl Service {
    /// Starts `orderflow <args>` against `settings`' cluster, logging to
    /// `<dir>/<name>.log` and writing its stats to `<dir>/<name>.json`.
    pub fn start(
        settings: &KafkaSettings,
        dir: &Path,
        name: &str,
        args: &[String],
    ) -> Result<Self> {
        let exe = std::env::current_exe().map_err(|cause| Error::Io {
            action: "locating",
            path: PathBuf::from("the orderflow binary"),
            cause,
        })?;
        let stats_file = dir.join(format!("{name}.json"));
        let log = dir.join(format!("{name}.log"));
        let _ = std::fs::remove_file(&stats_file);
        let log_file = std::fs::File::create(&log).map_err(|cause| Error::Io {
            action: "creating",
            path: log.clone(),
            cause,
        })?;
        let stderr = log_file.try_clone().map_err(|cause| Error::Io {
            action: "opening",
            path: log.clone(),
            cause,
        })?;
        let metrics = free_port()?;
        let mut command = Command::new(&exe);
        command
            .arg("--brokers")
            .arg(&settings.brokers)
            .arg("--timeout")
            .arg(settings.timeout.as_secs().to_string());
        for (key, value) in &settings.overrides {
            command.arg("-X").arg(format!("{key}={value}"));
        }
        command.args(settings.security.child_args());
        if let Some(sasl) = &settings.security.sasl {
            command.env(PASSWORD_ENV, &sasl.password);
        }
        let child = command
            .args(args)
            .arg("--stats-file")
            .arg(&stats_file)
            .arg("--metrics-addr")
            .arg(metrics.to_string())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|cause| Error::Io {
                action: "starting",
                path: exe,
                cause,
            })?;
        Ok(Self {
            name: name.to_owned(),
            child,
            stats_file,
            log,
            metrics,
        })
    }

    /// Where it serves its metrics.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// Asks it to stop (SIGTERM: it commits what is open) and reads its stats.
    pub async fn stop(self) -> Result<RunStats> {
        if let Some(pid) = self.child.id() {
            // `kill` rather than a signal API: SIGTERM, not Child::kill's SIGKILL.
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
        }
        self.finish().await
    }

    /// Waits for it to exit on its own and reads its stats.
    pub async fn finish(self) -> Result<RunStats> {
        self.finish_within(STOP_LIMIT).await
    }

    /// Waits up to `limit` for it to exit on its own and reads its stats.
    pub async fn finish_within(mut self, limit: Duration) -> Result<RunStats> {
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.map_err(|cause| Error::Io {
                action: "waiting for",
                path: self.log.clone(),
                cause,
            })?,
            Err(_) => {
                let _ = self.child.kill().await;
                return Err(self.failure("did not finish in time"));
            }
        };
        if !status.success() {
            return Err(self.failure(&format!("exited with {status}")));
        }
        RunStats::read(&self.stats_file)
    }

    /// An error when it exited while it was expected to run.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(self.failure(&format!("exited early ({status})"))),
            _ => Ok(()),
        }
    }

    fn failure(&self, what: &str) -> Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        Error::Tool {
            tool: format!("the bench's {}", self.name),
            detail: format!(
                "{what}; its log is {}:\n{}",
                self.log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        }
    }
}

/// Whether the service serving metrics at `addr` has taken over (state
/// restored) `partitions` partitions of each of its `inputs` input topics
/// (analytics has two stages, each with its own input).
pub fn taken_over(addr: SocketAddr, inputs: usize, partitions: i64) -> bool {
    let Ok(samples) = scrape(addr, Duration::from_secs(2)) else {
        return false;
    };
    let held: Vec<f64> = samples
        .series("orderflow_assigned_partitions")
        .map(|(_, n)| n)
        .collect();
    held.len() == inputs && held.iter().all(|&n| n as i64 == partitions)
}

/// A loopback address with a port free now, for a service's metrics. (Another
/// process could take it before the service binds it; the service would then
/// fail to start, which the bench reports.)
pub fn free_port() -> Result<SocketAddr> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    TcpListener::bind(any)
        .and_then(|listener| listener.local_addr())
        .map_err(|cause| Error::Listen { addr: any, cause })
}
