//! `orderflow dashboard` in a real browser: after a demo run, headless
//! Chromium (driven through chromedriver, WebDriver) shows the figures Kafka's
//! own tools find in the topics and groups, draws the charts, takes new
//! orders in live, and leaves a screenshot in target/tmp.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{json, Value};

use crate::common::http::{free_addr, get, post_json};
use crate::common::{
    describe_group, json, orderflow_ok, read_all, signal, spawn_service, wait_until, Names,
};
use orderflow::metrics::scrape::scrape;

/// chromedriver on a port of its own, stopped when dropped.
struct ChromeDriver(Child, SocketAddr);

impl ChromeDriver {
    fn start() -> Self {
        let addr = free_addr();
        let child = Command::new("chromedriver")
            .arg(format!("--port={}", addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (Debian's chromium-driver; .ci/run installs it)");
        let started = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromedriver did not listen"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self(child, addr)
    }

    /// A headless Chromium session.
    async fn session(&self) -> Client {
        let binary = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": binary,
                // --no-sandbox: CI runs as root, where Chromium's sandbox cannot.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1300"]
            }
        });
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(capabilities.as_object().unwrap().clone())
            .connect(&format!("http://{}", self.1))
            .await
            .expect("a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the page shows, read in one script.
const READ_PAGE: &str = r##"
const text = (s) => { const e = document.querySelector(s); return e ? e.textContent : null; };
const group = (role) => {
  const card = document.querySelector(`.group[data-role="${role}"]`);
  if (!card) return null;
  return {
    status: card.querySelector(".status").textContent,
    lag: card.querySelector(".lag").textContent,
    rows: [...card.querySelectorAll("tbody tr")].map((r) => [...r.children].map((c) => c.textContent)),
  };
};
return {
  samples: Number(document.body.dataset.samples || 0),
  connection: document.querySelector("#connection").dataset.state,
  published: text("#orders-published"),
  counted: text("#orders-counted"),
  windows: text("#windows-count"),
  failed: text("#failed-orders"),
  failure_rate: text("#failure-rate"),
  inventory: group("inventory"),
  analytics: group("analytics"),
  order_points: Number(document.querySelector("#chart-orders").dataset.points || 0),
  lag_series: Number(document.querySelector("#chart-lag").dataset.series || 0),
  canvases: document.querySelectorAll("canvas").length,
  api_requests: document.querySelector("#api-card").hidden ? null : text("#api-requests"),
  api_instances: text("#api-instances"),
};
"##;

async fn read_page(browser: &Client) -> Value {
    browser
        .execute(READ_PAGE, vec![])
        .await
        .expect("the page script runs")
}

/// Reads the page until `done` holds; fails after two minutes.
async fn wait_for_page(browser: &Client, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let page = read_page(browser).await;
        if done(&page) {
            return page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the page never showed {what}: {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// "2,600" as the page writes counts.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[test]
fn the_dashboard_shows_a_demo_run_in_a_real_browser() {
    let names = Names::new("dash");
    let out = tempfile::tempdir().unwrap();
    let api_group = names.api_group();
    let mut demo = vec![
        "demo",
        "--api-group",
        &api_group,
        "--count",
        "2000",
        "--burst",
        "600",
        "--burst-rate",
        "300",
        "--out",
        out.path().to_str().unwrap(),
        "--no-local-kafka",
    ];
    demo.extend(names.pipeline_flags());
    orderflow_ok(&demo);

    // What Kafka's own tools say the page must show. OrderMetrics, read as
    // a table: the last record of each window counts (the demo's replay
    // published its windows twice).
    let mut table: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for line in read_all(&names.metrics, "read_committed", &[]) {
        let value: Value = json(line.split('\t').nth(2).unwrap().as_bytes());
        let key = value["window_start"].as_str().unwrap().to_owned();
        let counts = (
            value["orders"].as_u64().unwrap(),
            value["failed"].as_u64().unwrap(),
        );
        table.insert(key, counts);
    }
    let counted: u64 = table.values().map(|c| c.0).sum();
    let failed: u64 = table.values().map(|c| c.1).sum();
    let windows: std::collections::BTreeSet<&String> = table.keys().collect();
    // 2,000 orders, a burst of 600, and 3 placed through the API.
    assert!(counted > 0 && counted <= 2_603);
    // The orders topic's log end, as the page counts orders published: the
    // API's keyed order came in a transaction, whose marker takes an
    // offset too.
    let log_end: i64 = describe_group(&names.inventory_group)
        .iter()
        .map(|r| r.log_end)
        .sum();
    assert!((2_603..2_610).contains(&log_end), "{log_end}");
    let published = |more: i64| grouped((log_end + more) as u64);
    for group in [&names.inventory_group, &names.analytics_group] {
        assert!(
            describe_group(group).iter().all(|r| r.lag == Some(0)),
            "{group}"
        );
    }

    // An API instance, whose requests the dashboard shows.
    let (api, api_metrics) = (free_addr(), free_addr().to_string());
    let api_service = names.api(api, "dash", &["--metrics-addr", &api_metrics]);

    let listen = free_addr();
    let listen_arg = listen.to_string();
    let mut args = vec!["dashboard", "--listen", &listen_arg, "--interval-ms", "500"];
    args.extend(names.pipeline_flags());
    args.extend(["--api-metrics", &api_metrics]);
    let mut dashboard = spawn_service(&args);
    let said = dashboard.follow_stdout();
    wait_until("the dashboard listens", || {
        said.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&format!("http://{listen}/")))
    });

    let driver = ChromeDriver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = driver.session().await;
        browser.goto(&format!("http://{listen}/")).await.unwrap();
        let page = wait_for_page(&browser, "the demo's windows", |p| {
            p["samples"].as_u64() >= Some(2)
                && p["connection"] == "live"
                && p["counted"] == grouped(counted).as_str()
                && p["analytics"].is_object()
        })
        .await;

        assert_eq!(page["published"], published(0).as_str(), "{page:#}");
        assert_eq!(page["windows"], grouped(windows.len() as u64).as_str());
        assert_eq!(page["failed"], grouped(failed).as_str());
        let shown: f64 = page["failure_rate"]
            .as_str()
            .unwrap()
            .trim_end_matches('%')
            .parse()
            .unwrap();
        let expected = 100.0 * failed as f64 / counted as f64;
        assert!(
            (shown - expected).abs() <= 0.005 + 1e-9,
            "{shown} vs {expected}"
        );
        for role in ["inventory", "analytics"] {
            let group = &page[role];
            // Drained, no member left: lag 0 is OK (Burrow's first rule).
            assert_eq!(group["status"], "OK", "{role}: {group:#}");
            assert_eq!(group["lag"], "0", "{role}: {group:#}");
            let rows = group["rows"].as_array().unwrap();
            assert_eq!(rows.len(), 3, "{role}: {group:#}");
            for row in rows {
                assert_eq!(
                    (&row[1], &row[3]),
                    (&json!("0"), &json!("OK")),
                    "{role}: {row}"
                );
            }
        }
        // Every window charted (up to the 240 sent), a lag line per group
        // and partition, four charts drawn.
        assert_eq!(
            page["order_points"].as_u64(),
            Some(windows.len().min(240) as u64)
        );
        assert_eq!(page["lag_series"], 6);
        assert!(page["canvases"].as_u64() >= Some(4), "{page:#}");

        // Live: new orders show up without reloading the page.
        names.produce(300, 77);
        wait_for_page(&browser, "the 300 new orders", |p| {
            p["published"] == published(300).as_str()
        })
        .await;

        // The API's requests: as many as the API itself counts (its
        // metrics), after a few more.
        let order =
            r#"{"customer_id":"c","items":[{"sku":"S","quantity":1,"unit_price_cents":1}]}"#;
        for _ in 0..5 {
            assert_eq!(post_json(api, "/orders", order).status, 202);
        }
        assert_eq!(get(api, "/orders/not-an-id").status, 400);
        let served = scrape(api_metrics.parse().unwrap(), Duration::from_secs(10))
            .unwrap()
            .sum("orderflow_http_requests_total") as u64;
        assert!(served >= 6, "{served}");
        // A sample reads the API's counters and the topic's log end at
        // different moments: one may count a request whose order is not in
        // the topic's log end yet (a CI run's page showed 2,906 of 2,909).
        let page = wait_for_page(&browser, "the API's requests and orders", |p| {
            p["api_requests"] == grouped(served).as_str()
                && p["published"] == published(305).as_str()
        })
        .await;
        assert_eq!(page["api_instances"], "1", "{page:#}");

        let png = browser.screenshot().await.unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
        std::fs::write(&path, &png).unwrap();
        println!("screenshot: {} ({} bytes)", path.display(), png.len());
        browser.close().await.unwrap();
    });
    assert!(signal(dashboard, "TERM").status.success());
    assert!(signal(api_service, "TERM").status.success());
}
