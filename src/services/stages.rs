//! Running a service's stages side by side, as Kafka Streams runs the
//! sub-topologies of one application: each stage an engine on a thread of
//! its own, all under one stop, so that one stage failing stops the others
//! (their work so far is committed or aborted as on any stop). The first
//! stage reads the service's input: in a batch run (`exit_at_end`) it must
//! have held every partition, or the run fails at once naming those it
//! could not take, instead of waiting for partitions someone else holds.

use std::future::Future;

use tokio_util::sync::CancellationToken;

use crate::engine::EngineStats;
use crate::error::{Error, Result};

/// Every partition of `topic`'s `partitions` held by a batch run's stage, or
/// an error naming those it did not hold.
pub fn covered(stats: &EngineStats, topic: &str, partitions: i32, exit_at_end: bool) -> Result<()> {
    let missing: Vec<i32> = (0..partitions)
        .filter(|p| !stats.held.contains(p))
        .collect();
    if exit_at_end && !missing.is_empty() {
        return Err(Error::PartialCoverage {
            topic: topic.to_owned(),
            missing,
        });
    }
    Ok(())
}

/// Runs `first` and `rest` until both end. `stop` (which both watch) is
/// cancelled when either fails, or when `first` ends without passing
/// `check` (its coverage). Returns both results, `first`'s checked.
pub async fn side_by_side<A, B>(
    stop: &CancellationToken,
    first: impl Future<Output = Result<(EngineStats, A)>>,
    rest: impl Future<Output = Result<B>>,
    check: impl Fn(&EngineStats) -> Result<()>,
) -> Result<((EngineStats, A), B)> {
    let (mut first, mut rest) = (Box::pin(first), Box::pin(rest));
    let (firsts, rests) = tokio::select! {
        done = &mut first => {
            let checked = done.and_then(|(stats, a)| check(&stats).map(|()| (stats, a)));
            if checked.is_err() {
                stop.cancel();
            }
            (checked, rest.await)
        }
        done = &mut rest => {
            if done.is_err() {
                stop.cancel();
            }
            let firsts = first.await;
            if firsts.is_err() {
                stop.cancel();
            }
            (firsts.and_then(|(stats, a)| check(&stats).map(|()| (stats, a))), done)
        }
    };
    Ok((firsts?, rests?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(held: &[i32]) -> EngineStats {
        EngineStats {
            held: held.to_vec(),
            ..EngineStats::default()
        }
    }

    #[test]
    fn a_batch_run_must_hold_every_partition() {
        assert!(covered(&stats(&[0, 1, 2]), "t", 3, true).is_ok());
        let error = covered(&stats(&[1]), "t", 3, true).unwrap_err().to_string();
        assert!(error.contains("partitions [0, 2]"), "{error}");
        assert!(
            covered(&stats(&[1]), "t", 3, false).is_ok(),
            "a service reports its share"
        );
    }

    #[tokio::test]
    async fn a_first_stage_that_covers_too_little_stops_the_rest() {
        let stop = CancellationToken::new();
        let watched = stop.clone();
        let rest = async move {
            watched.cancelled().await;
            Ok("stopped")
        };
        let first = async { Ok((stats(&[0]), ())) };
        let outcome = side_by_side(&stop, first, rest, |s| covered(s, "t", 2, true)).await;
        assert!(matches!(outcome, Err(Error::PartialCoverage { .. })));
        assert!(stop.is_cancelled());
    }

    #[tokio::test]
    async fn a_failing_later_stage_stops_the_first() {
        let stop = CancellationToken::new();
        let watched = stop.clone();
        let first = async move {
            watched.cancelled().await;
            Ok((stats(&[0]), "first"))
        };
        let rest = async { Err::<(), _>(Error::Stopped("rest".into())) };
        let outcome = side_by_side(&stop, first, rest, |_| Ok(())).await;
        assert!(matches!(outcome, Err(Error::Stopped(_))));
    }
}
