//! A cluster whose clients must log in (`scripts/kafka up --sasl`): each SASL
//! mechanism works with the right password; a wrong one is a clear
//! authentication error as soon as the broker says so, well within
//! `--timeout`; no login at all is an error naming the address. And one
//! whose listener speaks TLS too (`--sasl --tls`): trusting its CA works,
//! not trusting it is a clear TLS error at once.

use std::time::{Duration, Instant};

use crate::common::{run, Cluster, LocalKafka, Names};

/// The cluster, logging in with `mechanism` and `password`.
fn login(kafka: &LocalKafka, mechanism: &str, password: &str) -> Cluster {
    let mut cluster = kafka.cluster.clone();
    let sasl = cluster.sasl.as_mut().unwrap();
    sasl.mechanism = mechanism.into();
    sasl.password = password.into();
    cluster
}

/// Runs orderflow on `cluster` expecting a failure; returns its stderr and
/// how long it took.
fn fails(cluster: &Cluster, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let output = run(cluster.orderflow_command(args));
    let took = started.elapsed();
    assert!(!output.status.success(), "orderflow {args:?} succeeded");
    (String::from_utf8_lossy(&output.stderr).into_owned(), took)
}

#[test]
fn sasl_logins_work_and_a_wrong_password_is_refused_at_once() {
    let kafka = LocalKafka::up_sasl(19492, false);
    let names = Names::on(kafka.cluster.clone(), "sasl");
    names.create_topics();

    // Every mechanism publishes (acks=all: acknowledged means logged in).
    for (seed, mechanism) in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
        .into_iter()
        .enumerate()
    {
        let names = Names {
            cluster: login(&kafka, mechanism, "orderflow-secret"),
            ..names.clone()
        };
        let out = names.produce(200, seed as u64);
        assert!(out.contains("produced 200 events"), "{mechanism}: {out}");
    }
    // Inventory, exactly-once over SCRAM: transactions, changelog, group.
    let scram = Names {
        cluster: login(&kafka, "SCRAM-SHA-512", "orderflow-secret"),
        ..names.clone()
    };
    let summary = scram.inventory();
    assert!(summary.contains("consumed 600,"), "{summary}");
    // Kafka's console consumer, logged in with its own properties file.
    scram.cluster.read_topic(&names.inventory, 600);

    // A wrong password: an authentication error naming the address and the
    // login, long before the 60 s the command would wait for a broker.
    for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
        let wrong = login(&kafka, mechanism, "not-the-password");
        for args in [
            &["--timeout", "60", "topics"][..],
            &["--timeout", "60", "inventory", "--exit-at-end"][..],
        ] {
            let (stderr, took) = fails(&wrong, args);
            assert!(
                stderr.contains("authentication failed at 127.0.0.1:19492")
                    && stderr.contains(&format!(r#"(SASL {mechanism} as user "orderflow")"#)),
                "{args:?}: {stderr}"
            );
            assert!(took < Duration::from_secs(60), "{args:?} took {took:?}");
        }
    }

    // No login at all: the listener hangs up; an error naming the address
    // within --timeout.
    let anonymous = Cluster {
        sasl: None,
        ..kafka.cluster.clone()
    };
    let (stderr, _) = fails(&anonymous, &["--timeout", "3", "topics"]);
    assert!(
        stderr.contains("cannot reach Kafka at 127.0.0.1:19492 within 3s")
            && stderr.contains("security protocol"),
        "{stderr}"
    );
}

#[test]
fn sasl_over_tls_works_with_the_cluster_ca_and_fails_at_once_without() {
    let kafka = LocalKafka::up_sasl(19592, true);
    let names = Names::on(login(&kafka, "SCRAM-SHA-512", "orderflow-secret"), "tls");
    names.create_topics();
    names.produce(300, 1);
    let summary = names.inventory();
    assert!(summary.contains("consumed 300,"), "{summary}");
    // Kafka's console consumer over SASL_SSL, trusting the same CA.
    names.cluster.read_topic(&names.inventory, 300);

    // The same login without trusting the cluster's CA: its certificate
    // cannot be verified; said at once, not after the 60 s --timeout.
    let mut untrusting = names.cluster.clone();
    untrusting.sasl.as_mut().unwrap().tls_ca = None;
    let (stderr, took) = fails(&untrusting, &["--tls", "--timeout", "60", "topics"]);
    assert!(
        stderr.contains("TLS handshake with 127.0.0.1:19592 failed")
            && stderr.contains("certificate verify failed"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(60), "took {took:?}");
}
