//! Retrying a call in place: for errors of class `Retry` (a coordinator
//! loading or moving, a request timing out, brokers unreachable for a
//! while), the same call again after a pause, for up to [`RETRY_FOR`].

use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};

use super::classify::{classify, Class};
use crate::error::{Error, KafkaResultExt, Result};
use crate::wait;

/// How long a call is retried: past a transaction timeout, a coordinator's
/// failover, and a broker restart.
pub const RETRY_FOR: Duration = Duration::from_secs(120);
const PAUSE: Duration = Duration::from_millis(500);

/// Runs `call` until it succeeds, fails with an error that is not
/// `Retry`, or has been retried for [`RETRY_FOR`]; `action` says what it
/// was doing, in the error and the logs.
pub fn in_place<R>(action: &str, mut call: impl FnMut() -> KafkaResult<R>) -> Result<R> {
    in_place_or(action, || Ok(call()))
}

/// [`in_place`] for a call that can also fail in a way of its own (an
/// `Err` of the outer result), which ends the retries at once.
pub fn in_place_or<R>(action: &str, mut call: impl FnMut() -> Result<KafkaResult<R>>) -> Result<R> {
    let mut last: Option<KafkaError> = None;
    let answer = wait::until(RETRY_FOR, PAUSE, || match call()? {
        Ok(answer) => Ok(Some(answer)),
        Err(error) if classify(&error) == Class::Retry => {
            tracing::warn!(%error, "{action}: retrying");
            last = Some(error);
            Ok(None)
        }
        Err(cause) => Err(Error::Kafka {
            action: action.to_owned(),
            cause,
        }),
    })?;
    match answer {
        Some(answer) => Ok(answer),
        None => Err(last.unwrap_or(KafkaError::Canceled)).while_(action),
    }
}
