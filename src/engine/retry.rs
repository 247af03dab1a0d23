//! Retrying a call in place: for errors of class `Retry` (a coordinator
//! loading or moving, a request timing out, brokers unreachable for a
//! while), the same call again after a pause, for up to [`RETRY_FOR`].
//!
//! A transactional call is different in one way: librdkafka can get stuck
//! with its request to the transaction coordinator queued and never sent
//! after a broker restart ("Timed out 0 in-flight, ... 1 out-queue"), every
//! retry timing out the same way. Seen in the broker-restart test: two
//! minutes of `send_offsets_to_transaction` timing out, then as long for
//! the abort. [`transactional`] reports that as wedged after
//! [`STUCK_AFTER`] timeouts in a row, and recovery replaces the producer.

use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};

use super::classify::{classify, Class};
use crate::error::{Error, KafkaResultExt, Result};
use crate::wait;

/// How long a call is retried: past a transaction timeout, a coordinator's
/// failover, and a broker restart. Five minutes, Kafka Streams' default
/// `task.timeout.ms` for the same thing: at two, a CI run on a loaded
/// 2-core machine lost an instance while its 3-node cluster's brokers were
/// SIGKILLed in turn (133 s of `init_transactions` timing out and being
/// told CONCURRENT_TRANSACTIONS while the coordinator aborted the killed
/// producer's transaction; the cluster never lost its quorum).
pub const RETRY_FOR: Duration = Duration::from_secs(300);
const PAUSE: Duration = Duration::from_millis(500);
/// Timeouts in a row after which a transactional call is taken as stuck.
pub const STUCK_AFTER: u32 = 3;

/// Runs `call` until it succeeds, fails with an error that is not
/// `Retry`, or has been retried for [`RETRY_FOR`]; `action` says what it
/// was doing, in the error and the logs.
pub fn in_place<R>(action: &str, mut call: impl FnMut() -> KafkaResult<R>) -> Result<R> {
    retrying(action, None, || Ok(call()))
}

/// [`in_place`] for a transactional call, which can also fail in a way of
/// its own (an `Err` of the outer result, ending the retries at once);
/// [`STUCK_AFTER`] timeouts in a row end the retries as `Error::Wedged`.
pub fn transactional<R>(action: &str, call: impl FnMut() -> Result<KafkaResult<R>>) -> Result<R> {
    retrying(action, Some(STUCK_AFTER), call)
}

fn retrying<R>(
    action: &str,
    stuck_after: Option<u32>,
    mut call: impl FnMut() -> Result<KafkaResult<R>>,
) -> Result<R> {
    let mut last: Option<KafkaError> = None;
    let (mut timeouts, started) = (0, std::time::Instant::now());
    let answer = wait::until(RETRY_FOR, PAUSE, || match call()? {
        Ok(answer) => Ok(Some(answer)),
        Err(error) if classify(&error) == Class::Retry => {
            timeouts = if is_timeout(&error) { timeouts + 1 } else { 0 };
            if stuck_after.is_some_and(|limit| timeouts >= limit) {
                return Err(Error::Wedged {
                    call: action.to_owned(),
                    waited: started.elapsed(),
                });
            }
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

/// A call that gave up waiting for librdkafka (not a broker's refusal).
fn is_timeout(error: &KafkaError) -> bool {
    use rdkafka::error::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(Code::OperationTimedOut | Code::RequestTimedOut)
    )
}
