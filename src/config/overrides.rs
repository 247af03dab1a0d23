//! Which `-X` librdkafka properties would void what a service promises,
//! refused before any client is made. Harmless properties (batching,
//! timeouts, buffer sizes, debug contexts) still pass through as given,
//! after orderflow's own settings; these few would silently turn
//! exactly-once into at-most-once or worse, as vector's Kafka sink checks its
//! raw librdkafka map against its named options.

use crate::error::{Error, Result};

/// What the user of a client has been promised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// The order producer: an acknowledged order is on every in-sync
    /// replica, and librdkafka's retries never duplicate or reorder one.
    IdempotentWrites,
    /// The engine, at-least-once: input offsets are committed only once
    /// every output of their batch is acknowledged, in order.
    AtLeastOnce,
    /// The engine, exactly-once: each batch one transaction, read_committed.
    ExactlyOnce,
}

/// A property some promise depends on.
struct Rule {
    /// The property and the aliases librdkafka accepts for it.
    keys: &'static [&'static str],
    /// The promises it matters to.
    promises: &'static [Promise],
    /// Whether a value keeps the promise.
    keeps: fn(&str) -> bool,
    why: &'static str,
}

use Promise::{AtLeastOnce, ExactlyOnce, IdempotentWrites};

const ALL: &[Promise] = &[IdempotentWrites, AtLeastOnce, ExactlyOnce];
const ENGINE: &[Promise] = &[AtLeastOnce, ExactlyOnce];

const RULES: &[Rule] = &[
    Rule {
        keys: &["enable.idempotence"],
        promises: ALL,
        keeps: is_true,
        why: "without idempotence a retried request can write records twice or out of order \
              (and a changelog's last value per key would no longer be the state); \
              transactions need it too",
    },
    Rule {
        keys: &["acks", "request.required.acks"],
        promises: ALL,
        keeps: |v| v == "all" || v == "-1",
        why: "a record would count as written before every in-sync replica has it, so losing \
              one broker could lose records whose inputs are committed; only acks=all keeps it",
    },
    Rule {
        keys: &["transactional.id"],
        promises: ALL,
        keeps: |_| false,
        why: "orderflow sets the transactional id itself (orderflow-<group>-<instance id>, \
              exactly-once only): choose it with --instance-id",
    },
    Rule {
        keys: &["isolation.level"],
        promises: ENGINE,
        keeps: |v| v == "read_committed",
        why: "the service would process records of aborted transactions, which never happened, \
              and read committed offsets before they are stable",
    },
    Rule {
        keys: &["enable.auto.commit", "auto.commit.enable"],
        promises: ENGINE,
        keeps: |v| !is_true(v),
        why: "librdkafka would commit offsets of records not yet processed; the engine commits \
              them with the batch that processed them",
    },
    Rule {
        keys: &["group.id"],
        promises: ENGINE,
        keeps: |_| false,
        why: "the group is --group: its changelogs and transactional id are named after it",
    },
    Rule {
        keys: &["enable.partition.eof"],
        promises: ENGINE,
        keeps: is_true,
        why: "the engine needs to be told a partition's end: --exit-at-end waits for it, and \
              the offsets past trailing transaction markers are committed there",
    },
];

fn is_true(value: &str) -> bool {
    matches!(value, "true" | "1" | "t")
}

/// Refuses the first override that would void `promise`, naming the key,
/// the value and why.
pub fn check(overrides: &[(String, String)], promise: Promise) -> Result<()> {
    for (key, value) in overrides {
        let (key, normal) = (key.trim(), value.trim().to_ascii_lowercase());
        let rule = RULES
            .iter()
            .find(|r| r.promises.contains(&promise) && r.keys.contains(&key));
        if let Some(rule) = rule.filter(|r| !(r.keeps)(&normal)) {
            return Err(Error::UnsafeOverride {
                key: key.to_owned(),
                value: value.clone(),
                why: rule.why,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(key: &str, value: &str) -> Vec<(String, String)> {
        vec![(key.into(), value.into())]
    }

    #[test]
    fn exactly_once_refuses_what_would_void_it() {
        for (key, value) in [
            ("isolation.level", "read_uncommitted"),
            ("enable.auto.commit", "true"),
            ("auto.commit.enable", "true"),
            ("enable.idempotence", "false"),
            ("transactional.id", "mine"),
            ("acks", "1"),
            ("request.required.acks", "0"),
            ("group.id", "other"),
            ("enable.partition.eof", "false"),
        ] {
            let refused = check(&x(key, value), ExactlyOnce).unwrap_err();
            let message = refused.to_string();
            assert!(
                message.starts_with(&format!("-X {key}={value} is refused: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn harmless_and_agreeing_values_pass() {
        for (key, value) in [
            ("linger.ms", "20"),
            ("acks", "all"),
            ("acks", "-1"),
            ("enable.idempotence", "true"),
            ("isolation.level", "Read_Committed"),
            ("enable.auto.commit", "false"),
            ("transaction.timeout.ms", "20000"),
            ("debug", "eos"),
        ] {
            assert!(check(&x(key, value), ExactlyOnce).is_ok(), "{key}={value}");
        }
    }

    #[test]
    fn each_promise_checks_its_own_keys() {
        // The order producer reads nothing: consumer settings are its own business.
        assert!(check(&x("isolation.level", "read_uncommitted"), IdempotentWrites).is_ok());
        assert!(check(&x("acks", "1"), IdempotentWrites).is_err());
        assert!(check(&x("enable.auto.commit", "true"), AtLeastOnce).is_err());
        assert!(check(&x("enable.idempotence", "false"), AtLeastOnce).is_err());
    }
}
