//! `orderflow api` against the real broker: an order placed over HTTP is
//! in OrderEvents once, its status moves from pending to what Kafka's
//! console consumer reads for it on InventoryEvents, a long poll returns
//! once the decision lands, and any instance answers for it; bad input is
//! a problem document and publishes nothing.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use orderflow::metrics::scrape::scrape;
use serde_json::{json, Value};

use crate::common::http::{call, free_addr, get, post, post_json, try_post_json, Answer};
use crate::common::{
    heavy, json, own_brokers, signal, stock_file, wait_until, LocalKafka, Names, Service,
};

/// API instance `instance` for `names`' topics, serving on `addr`, ready.
fn an_api(names: &Names, addr: SocketAddr, instance: &str) -> Service {
    names.api(addr, instance, &[])
}

fn order_body() -> Value {
    json!({
        "customer_id": "cust-0042",
        "items": [
            {"sku": "SKU-0001", "quantity": 2, "unit_price_cents": 1299},
            {"sku": "SKU-0002", "quantity": 1, "unit_price_cents": 500}
        ]
    })
}

fn place(addr: SocketAddr, body: &Value) -> String {
    let answer = post_json(addr, "/orders", &body.to_string());
    assert_eq!(answer.status, 202, "{answer:?}");
    let accepted = answer.json();
    let id = accepted["order_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["status"], "pending");
    assert_eq!(answer.location.as_deref(), Some(&*format!("/orders/{id}")));
    id
}

/// A problem document of `status`; returns it.
fn problem(answer: &Answer, status: u16) -> Value {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(
        answer.content_type, "application/problem+json",
        "{answer:?}"
    );
    let problem = answer.json();
    assert_eq!(problem["status"], status);
    assert!(!problem["title"].as_str().unwrap().is_empty());
    assert!(!problem["type"].as_str().unwrap().is_empty());
    problem
}

#[test]
fn an_order_placed_over_http_is_answered_as_kafka_records_it() {
    let names = Names::new("api");
    names.create_topics();
    let addr = free_addr();
    let first = an_api(&names, addr, "a");

    // Inventory has never run: no stock is known.
    problem(&get(addr, "/stock/SKU-0001"), 404);
    problem(&get(addr, &format!("/stock/{}", "S".repeat(65))), 400);

    let body = order_body();
    let id = place(addr, &body);
    // No inventory runs yet: pending, with what was placed.
    let pending = get(addr, &format!("/orders/{id}"));
    assert_eq!(pending.status, 200, "{pending:?}");
    let pending = pending.json();
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["items"], body["items"]);
    assert_eq!(pending["total_cents"], 2 * 1299 + 500);
    assert!(pending.get("decided_at").is_none());

    // A long poll, held until the decision lands.
    let poll = std::thread::spawn(move || {
        let started = Instant::now();
        let answer = get(addr, &format!("/orders/{id}?wait_ms=30000"));
        (answer, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(!poll.is_finished(), "a pending order holds the long poll");
    let dir = tempfile::tempdir().unwrap();
    let listed = [("SKU-0001".to_owned(), 40), ("SKU-0003".to_owned(), 7)];
    let stock = stock_file(dir.path(), &listed.into_iter().collect());
    let mut args = names.inventory_args();
    args.extend(["--stock-file", &stock, "--initial-stock", "900"]);
    let inventory = names.cluster.spawn_service(&args);
    let (decided, waited) = poll.join().unwrap();
    assert!(
        waited < Duration::from_secs(30),
        "returned as it landed, not at its end"
    );
    let decided = decided.json();

    // Kafka's own tools: the order once in OrderEvents, as placed, and its
    // decision the one the API answers with.
    let orders = names.cluster.read_topic(&names.orders, 1);
    let (key, value) = key_and_value(&orders[0]);
    assert_eq!(key, decided["order_id"].as_str().unwrap());
    let placed = json(value.as_bytes());
    assert_eq!(placed["items"], body["items"]);
    assert_eq!(placed["customer_id"], "cust-0042");
    let decisions = names.cluster.read_topic(&names.inventory, 1);
    let (key, value) = key_and_value(&decisions[0]);
    assert_eq!(key, decided["order_id"].as_str().unwrap());
    let decision = json(value.as_bytes());
    let status = decision["status"].as_str().unwrap().to_lowercase();
    assert_eq!(decided["status"], status);
    assert_eq!(decided["reason"], decision["reason"]);
    assert!(decided["decided_at"].is_string());

    // The stock, from inventory's changelog: what the order took (none if
    // it was rejected) gone from its SKUs once settled, a listed SKU no
    // order touched at its file's level, any other at the default.
    let took = if status == "reserved" { 1 } else { 0 };
    let stock = |sku: &str| {
        let answer = get(addr, &format!("/stock/{sku}"));
        assert_eq!(answer.status, 200, "{answer:?}");
        let stock = answer.json();
        assert_eq!(stock["sku"], sku);
        (
            stock["available"].as_u64().unwrap(),
            stock["held"].as_u64().unwrap(),
        )
    };
    wait_until("the stock is settled", || {
        stock("SKU-0001") == (40 - 2 * took, 0) && stock("SKU-0002") == (900 - took, 0)
    });
    assert_eq!(stock("SKU-0003"), (7, 0));
    assert_eq!(stock("SKU-0042"), (900, 0));

    // Another instance, started now, answers the same from the topics.
    let other = free_addr();
    let second = an_api(&names, other, "b");
    assert_eq!(get(other, &format!("/orders/{key}")).json(), decided);
    for service in [first, second, inventory] {
        assert!(signal(service, "TERM").status.success());
    }
}

/// "partition\tkey\tvalue" → (key, value).
fn key_and_value(line: &str) -> (&str, &str) {
    let mut cols = line.splitn(3, '\t');
    let _partition = cols.next();
    (cols.next().unwrap(), cols.next().unwrap())
}

#[test]
fn bad_input_is_a_problem_document_and_publishes_nothing() {
    let names = Names::new("api-bad");
    names.create_topics();
    let (addr, metrics) = (free_addr(), free_addr());
    let metrics_arg = metrics.to_string();
    let service = names.api(addr, "a", &["--metrics-addr", &metrics_arg]);

    let with_line = |line: Value| json!({"customer_id": "c", "items": [line]}).to_string();
    let line = |sku: Value, quantity: Value| json!({"sku": sku, "quantity": quantity, "unit_price_cents": 1});
    let too_many: Vec<Value> = (0..101)
        .map(|i| line(json!(format!("S{i}")), json!(1)))
        .collect();
    let cases: Vec<(&str, String, u16, Option<&str>)> = vec![
        (
            "malformed JSON",
            r#"{"customer_id": "c", "items": ["#.into(),
            400,
            None,
        ),
        (
            "a missing sku",
            with_line(json!({"quantity": 1, "unit_price_cents": 1})),
            422,
            Some("items[0].sku"),
        ),
        (
            "an empty sku",
            with_line(line(json!(""), json!(1))),
            422,
            Some("items[0].sku"),
        ),
        (
            "quantity zero",
            with_line(line(json!("A"), json!(0))),
            422,
            Some("items[0].quantity"),
        ),
        (
            "a negative quantity",
            with_line(line(json!("A"), json!(-3))),
            422,
            Some("items[0].quantity"),
        ),
        (
            "no lines",
            json!({"customer_id": "c", "items": []}).to_string(),
            422,
            Some("items"),
        ),
        (
            "101 lines",
            json!({"customer_id": "c", "items": too_many}).to_string(),
            422,
            Some("items"),
        ),
        (
            "no customer",
            json!({"items": [line(json!("A"), json!(1))]}).to_string(),
            422,
            Some("customer_id"),
        ),
        (
            "a 1 MB body",
            format!(r#"{{"customer_id": "{}"}}"#, "x".repeat(1 << 20)),
            413,
            None,
        ),
    ];
    for (what, body, status, field) in cases {
        let answer = post_json(addr, "/orders", &body);
        let found = problem(&answer, status);
        assert_eq!(found["field"].as_str(), field, "{what}: {found}");
    }
    problem(
        &post(
            addr,
            "/orders",
            "text/plain",
            order_body().to_string().as_bytes(),
        ),
        415,
    );
    let unknown = "00000000-0000-4000-8000-000000000000";
    problem(&get(addr, &format!("/orders/{unknown}")), 404);
    problem(&get(addr, "/orders/not-an-id"), 400);
    problem(&get(addr, &format!("/orders/{unknown}?wait_ms=30001")), 400);
    problem(&call("DELETE", addr, "/orders"), 405);
    problem(&get(addr, "/no-such-thing"), 404);
    let document = get(addr, "/openapi.json").json();
    assert!(document["paths"]["/orders"]["post"].is_object());

    // Only the one good order reached Kafka.
    let id = place(addr, &order_body());
    let orders = names.cluster.read_topic(&names.orders, 1);
    assert_eq!(key_and_value(&orders[0]).0, id);

    // The metrics counted every answer above, by route and status.
    let samples = scrape(metrics, Duration::from_secs(10)).unwrap();
    let answered = |method: &str, route: &str, status: u16| {
        let series = format!(
            r#"orderflow_http_requests_total{{method="{method}",route="{route}",status="{status}"}}"#
        );
        samples.get(&series).unwrap_or(0.0)
    };
    assert_eq!(answered("POST", "/orders", 422), 7.0, "{samples:?}");
    assert_eq!(answered("POST", "/orders", 400), 1.0);
    assert_eq!(answered("POST", "/orders", 413), 1.0);
    assert_eq!(answered("POST", "/orders", 415), 1.0);
    assert_eq!(answered("POST", "/orders", 202), 1.0);
    assert_eq!(answered("GET", "/orders/{id}", 404), 1.0);
    assert_eq!(answered("GET", "/orders/{id}", 400), 2.0);
    assert_eq!(answered("GET", "/openapi.json", 200), 1.0);
    assert_eq!(answered("GET", "unmatched", 404), 1.0);
    let timed = r#"orderflow_http_request_duration_seconds_count{method="POST",route="/orders"}"#;
    assert_eq!(samples.get(timed), Some(11.0));
    assert!(signal(service, "TERM").status.success());
}

/// One client's posts: what each key was answered with, and the order ids
/// of keyless posts.
#[derive(Default)]
struct Placed {
    by_key: std::collections::BTreeMap<String, Vec<String>>,
    keyless: Vec<String>,
}

/// Posts `body` under `key` to the first of `addrs`, and again to the next
/// one after a 503 or a lost connection, until it is accepted; returns the
/// order id. (A 503 or a lost connection leaves the outcome unknown: the
/// retry with the same key is what makes that safe.)
fn post_until_accepted(addrs: &[SocketAddr], key: &str, body: &str) -> String {
    for attempt in 0..60 {
        let addr = addrs[attempt % addrs.len()];
        let answer = try_post_json(addr, "/orders", body, Some(key));
        match answer {
            Some(answer) if answer.status == 202 => {
                return answer.json()["order_id"].as_str().unwrap().to_owned()
            }
            Some(answer) if answer.status == 503 => {}
            Some(answer) => panic!("{key}: {answer:?}"),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("{key} was never accepted")
}

/// The order ids of `orders_topic` (read_committed), each with how often
/// it is there.
fn order_ids(names: &Names, expected: usize) -> std::collections::BTreeMap<String, usize> {
    let mut ids = std::collections::BTreeMap::new();
    for line in names.cluster.read_topic(&names.orders, expected) {
        *ids.entry(key_and_value(&line).0.to_owned()).or_insert(0) += 1;
    }
    ids
}

#[test]
fn fifty_clients_with_retries_under_their_keys_place_each_order_once() {
    const CLIENTS: usize = 50;
    const ORDERS: usize = 400; // each: 20,000 in all
    let _turn = heavy();
    let names = Names::new("api-keys");
    names.create_topics();
    let addrs = [free_addr(), free_addr()];
    let apis = [an_api(&names, addrs[0], "a"), an_api(&names, addrs[1], "b")];

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                let mut placed = Placed::default();
                for n in 0..ORDERS {
                    let body = json!({
                        "customer_id": format!("client-{client}"),
                        "items": [{"sku": format!("SKU-{:04}", n % 50), "quantity": 1 + n % 3, "unit_price_cents": 100}]
                    })
                    .to_string();
                    let addr = addrs[(client + n) % 2];
                    if n % 5 == 4 {
                        // A fifth without a key: placed as sent.
                        let answer = post_json(addr, "/orders", &body);
                        assert_eq!(answer.status, 202, "{answer:?}");
                        placed.keyless.push(answer.json()["order_id"].as_str().unwrap().into());
                        continue;
                    }
                    let key = format!("client-{client}-order-{n}");
                    let first = post_until_accepted(&[addr], &key, &body);
                    let mut answers = vec![first];
                    if n % 4 == 0 {
                        // Retried, at the other instance.
                        let other = addrs[(client + n + 1) % 2];
                        answers.push(post_until_accepted(&[other], &key, &body));
                    }
                    placed.by_key.insert(key, answers);
                }
                placed
            })
        })
        .collect();
    let placed: Vec<Placed> = clients.into_iter().map(|c| c.join().unwrap()).collect();

    let mut answered = std::collections::BTreeSet::new();
    for client in &placed {
        for (key, answers) in &client.by_key {
            assert!(
                answers.iter().all(|a| a == &answers[0]),
                "{key}: {answers:?}"
            );
            answered.insert(answers[0].clone());
        }
        answered.extend(client.keyless.iter().cloned());
    }
    assert_eq!(answered.len(), CLIENTS * ORDERS);
    // Kafka's console consumer: every answered order once, nothing else.
    let ids = order_ids(&names, CLIENTS * ORDERS);
    assert!(ids.values().all(|&n| n == 1), "an order twice");
    assert_eq!(
        ids.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        answered
    );

    // A key used again for other content is refused, naming its order.
    let (key, answers) = placed[0].by_key.iter().next().unwrap();
    let other = order_body().to_string();
    let reused =
        crate::common::http::try_post_json(addrs[0], "/orders", &other, Some(key)).unwrap();
    let found = problem(&reused, 422);
    assert_eq!(found["type"], "/problems/idempotency-key-reused");
    assert!(found["detail"].as_str().unwrap().contains(&answers[0]));
    for api in apis {
        assert!(signal(api, "TERM").status.success());
    }
}

#[test]
fn an_api_killed_while_clients_post_loses_and_duplicates_no_order() {
    const CLIENTS: usize = 10;
    const ORDERS: usize = 200;
    let names = Names::new("api-kill");
    names.create_topics();
    let addrs = [free_addr(), free_addr()];
    let victim = an_api(&names, addrs[0], "a");
    let survivor = an_api(&names, addrs[1], "b");

    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            std::thread::spawn(move || {
                let mut by_key = std::collections::BTreeMap::new();
                for n in 0..ORDERS {
                    let key = format!("client-{client}-order-{n}");
                    let body = json!({
                        "customer_id": format!("client-{client}"),
                        "items": [{"sku": "SKU-0001", "quantity": 1, "unit_price_cents": 100}]
                    })
                    .to_string();
                    // To the victim first; after a lost connection or a
                    // 503, the retry goes to the survivor.
                    by_key.insert(key.clone(), post_until_accepted(&addrs, &key, &body));
                }
                by_key
            })
        })
        .collect();
    wait_until("orders are flowing", || {
        names
            .cluster
            .committed_total(&format!("{}-keys", names.api_group()))
            > 300
    });
    assert!(!signal(victim, "KILL").status.success());
    let answers: Vec<std::collections::BTreeMap<String, String>> =
        clients.into_iter().map(|c| c.join().unwrap()).collect();

    // Every order that got a 202 is in OrderEvents once, and nothing else.
    let ids = order_ids(&names, CLIENTS * ORDERS);
    assert!(ids.values().all(|&n| n == 1), "an order twice");
    let answered: std::collections::BTreeSet<String> =
        answers.iter().flat_map(|a| a.values().cloned()).collect();
    assert_eq!(
        ids.keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>(),
        answered
    );
    // Retries of keys answered before the kill get the original order id.
    for (key, id) in answers.iter().flat_map(|a| a.iter()).step_by(7) {
        let body = json!({
            "customer_id": key.split("-order-").next().unwrap(),
            "items": [{"sku": "SKU-0001", "quantity": 1, "unit_price_cents": 100}]
        })
        .to_string();
        assert_eq!(&post_until_accepted(&addrs[1..], key, &body), id, "{key}");
    }
    assert!(signal(survivor, "TERM").status.success());
}

/// schemathesis, as `scripts/setup` installs it.
/// A broker that is down: an order is answered 503 with Retry-After once
/// `--timeout` passes, never held (the test's client gives up after 60 s),
/// with or without a key; what the views know is still answered.
#[test]
fn with_its_broker_down_the_api_answers_503_and_reads_go_on() {
    let _turn = own_brokers();
    let kafka = LocalKafka::up(19892, 1);
    let names = Names::on(kafka.cluster.clone(), "api-down");
    names.create_topics();
    let addr = free_addr();
    let api = names.api(addr, "a", &["--timeout", "5"]);
    let id = place(addr, &order_body());

    kafka.script(&["stop-node", "1"]);
    let body = order_body().to_string();
    let unkeyed = post_json(addr, "/orders", &body);
    let keyed = try_post_json(addr, "/orders", &body, Some("down-1")).expect("an answer");
    for answer in [&unkeyed, &keyed] {
        let problem = problem(answer, 503);
        assert_eq!(problem["type"], "/problems/kafka-unavailable", "{answer:?}");
        assert_eq!(answer.retry_after.as_deref(), Some("1"), "{answer:?}");
    }
    let known = get(addr, &format!("/orders/{id}"));
    assert_eq!(known.status, 200, "{known:?}");
    assert_eq!(known.json()["status"], "pending");
    assert!(!signal(api, "KILL").status.success());
}

fn schemathesis() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").expect("HOME is set");
    std::path::Path::new(&home).join(".cache/orderflow/schemathesis/bin/schemathesis")
}

#[test]
fn every_answer_conforms_to_the_apis_own_openapi_document() {
    let names = Names::new("api-schema");
    names.create_topics();
    let addr = free_addr();
    let service = an_api(&names, addr, "a");
    let document = format!("http://{addr}/openapi.json");
    let mut command = std::process::Command::new(schemathesis());
    command.args([
        "run",
        &document,
        // What the issue asks: no 5xx, and every answer as documented:
        // its status, content type, headers and body.
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,\
         response_headers_conformance,response_schema_conformance",
        "--max-examples",
        "40",
        "--seed",
        "1",
        // Long polls hold their request; several workers keep the run short.
        "--workers",
        "8",
        "--request-timeout",
        "40",
        "--no-color",
    ]);
    let run = crate::common::run(command);
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // It did place orders (valid ones, generated from the document), and
    // every one it placed is an OrderPlaced inventory accepts.
    let placed = names.cluster.read_all(&names.orders, "read_committed", &[]);
    assert!(!placed.is_empty(), "{said}");
    for line in &placed {
        let (_, value) = key_and_value(line);
        orderflow::domain::events::OrderPlaced::decode(value.as_bytes()).unwrap();
    }
    assert!(signal(service, "TERM").status.success());
}
