//! Long-lived blocking work (a stream engine, the dashboard's sampling
//! loop) on a `std::thread` of its own, awaited from async code. tokio's
//! `spawn_blocking` is for work that finishes soon: its pool is shared and
//! capped, and a job that runs for the life of the service would hold a
//! place in it forever.

use crate::error::{Error, Result};

/// Runs `work` on a new thread named `name` and waits for its result; a
/// panic is an error naming the thread.
pub async fn run<R: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> Result<R> + Send + 'static,
) -> Result<R> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|cause| Error::Panicked {
            what: format!("starting the {name} thread"),
            cause: cause.to_string(),
        })?;
    // The sender is dropped unsent only when `work` panicked (the panic
    // itself was printed by the panic hook).
    result.await.map_err(|_| Error::Panicked {
        what: format!("the {name} thread"),
        cause: "it panicked (see above)".into(),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_threads_result_or_names_its_panic() {
        assert_eq!(run("adder", || Ok(2 + 2)).await.unwrap(), 4);
        let panicked = run::<()>("doomed", || panic!("on purpose")).await;
        assert!(panicked
            .unwrap_err()
            .to_string()
            .starts_with("the doomed thread stopped unexpectedly"));
    }
}
