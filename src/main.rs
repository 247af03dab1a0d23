//! The `orderflow` binary: parses arguments, starts tracing, validates the
//! arguments into the library's options (`orderflow::cli`), runs the
//! subcommand (`commands`) on a tokio runtime, and turns errors into a
//! message and exit status 1 (clap exits with 2 for bad flags).

mod commands;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use orderflow::cli::args::Command;
use orderflow::cli::{Cli, LogFormat};
use orderflow::shutdown;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    start_tracing(&cli);
    let outcome = cli
        .validate()
        .map_err(anyhow::Error::from)
        .and_then(|invocation| {
            let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
            runtime.block_on(async {
                let stop = shutdown::on_signals();
                commands::run(invocation, &stop).await
            })
        });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            match log_format {
                LogFormat::Text => eprintln!("error: {error:#}"),
                LogFormat::Json => tracing::error!(error = %format!("{error:#}"), "failed"),
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, as text or JSON lines. librdkafka is chatty at info
/// (connections, group joins): warn and up. The demo and the bench tell
/// their own story on stdout, so there everything logs at warn, and
/// librdkafka's retried warnings (a transaction coordinator still loading on
/// a broker that just started) only at error. RUST_LOG overrides.
fn start_tracing(cli: &Cli) {
    let default_filter = match cli.command {
        Command::Demo(_) | Command::Bench(_) => "warn,librdkafka=error",
        _ => "info,librdkafka=warn",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(filter) if !filter.trim().is_empty() => EnvFilter::new(filter),
        _ => EnvFilter::new(default_filter),
    };
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs.init(),
        // One JSON object a line, for log shippers.
        LogFormat::Json => logs.json().init(),
    }
}
