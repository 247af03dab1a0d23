//! Asking again until something is ready or a deadline passes: one helper
//! for every "a topic just created, a coordinator still loading, a
//! deletion not yet visible" wait, so that each call site says only what it
//! asks and what it does when time runs out.
//!
//! An attempt answers `Ok(Some(value))` (ready), `Ok(None)` (not yet: ask
//! again after a pause) or `Err` (give up now). Time running out is
//! `Ok(None)`, for the caller to turn into its own error: it knows what was
//! awaited, and usually the last reason it was not ready.

use std::future::Future;
use std::time::{Duration, Instant};

/// Asks `attempt` until it answers or `within` has passed, sleeping the
/// thread `pause` between attempts. Always asks at least once.
pub fn until<T, E>(
    within: Duration,
    pause: Duration,
    mut attempt: impl FnMut() -> Result<Option<T>, E>,
) -> Result<Option<T>, E> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(answer) = attempt()? {
            return Ok(Some(answer));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
    }
}

/// [`until`] for async callers: the pause is a tokio sleep.
pub async fn until_async<T, E, F>(
    within: Duration,
    pause: Duration,
    mut attempt: impl FnMut() -> F,
) -> Result<Option<T>, E>
where
    F: Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(answer) = attempt().await? {
            return Ok(Some(answer));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        tokio::time::sleep(pause.min(left)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_soon_as_ready() {
        let mut asked = 0;
        let found: Result<Option<u32>, ()> = until(Duration::from_secs(5), Duration::ZERO, || {
            asked += 1;
            Ok((asked == 3).then_some(7))
        });
        assert_eq!((found, asked), (Ok(Some(7)), 3));
    }

    #[test]
    fn gives_up_at_the_deadline_having_asked_once_at_least() {
        let mut asked = 0;
        let found: Result<Option<u32>, ()> = until(Duration::ZERO, Duration::ZERO, || {
            asked += 1;
            Ok(None)
        });
        assert_eq!((found, asked), (Ok(None), 1));
    }

    #[test]
    fn an_error_ends_the_wait() {
        let found: Result<Option<u32>, &str> =
            until(Duration::from_secs(5), Duration::ZERO, || Err("no"));
        assert_eq!(found, Err("no"));
    }

    #[tokio::test]
    async fn the_async_twin_waits_the_same_way() {
        let mut asked = 0;
        let found: Result<Option<u32>, ()> =
            until_async(Duration::from_secs(5), Duration::from_millis(1), || {
                asked += 1;
                let ready = asked == 2;
                async move { Ok(ready.then_some(1)) }
            })
            .await;
        assert_eq!((found, asked), (Ok(Some(1)), 2));
    }
}
