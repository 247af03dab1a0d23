//! Reading a service's `/metrics` page back, as Prometheus would: the bench
//! waits on `orderflow_assigned_partitions` for its services to have taken
//! over their partitions, and the tests judge the figures served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The samples of one scrape: `name{labels}` (as written) to value.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples(BTreeMap<String, f64>);

impl Samples {
    /// Parses the text format: one `name{labels} value` a line, comments
    /// (`# HELP`, `# TYPE`, `# EOF`) skipped.
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                Some((series.to_owned(), value.parse().ok()?))
            })
            .collect();
        Self(samples)
    }

    /// The value of one series, e.g. `orderflow_assigned_partitions` or
    /// `orderflow_inventory_decisions_total{status="rejected"}`.
    pub fn get(&self, series: &str) -> Option<f64> {
        self.0.get(series).copied()
    }

    /// The sum over every series of metric `name`, whatever its labels.
    pub fn sum(&self, name: &str) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                series
                    .strip_prefix(name)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('{'))
            })
            .map(|(_, value)| value)
            .sum()
    }

    /// Every series of metric `name` with its value.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.0
            .iter()
            .filter(move |(series, _)| series.starts_with(&format!("{name}{{")))
            .map(|(series, &value)| (series.as_str(), value))
    }
}

/// Fetches `http://addr/metrics`, failing within `timeout`.
pub fn scrape(addr: SocketAddr, timeout: Duration) -> Result<Samples> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    let url = format!("http://{addr}/metrics");
    let text = agent
        .get(&url)
        .call()
        .and_then(|mut response| response.body_mut().read_to_string())
        .map_err(|e| Error::Scrape {
            url: url.clone(),
            reason: e.to_string(),
        })?;
    Ok(Samples::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{DecisionLabel, Metrics, Service};

    #[test]
    fn reads_back_what_the_registry_writes() {
        let metrics = Metrics::new(Service::Inventory);
        metrics
            .assigned_partitions
            .get_or_create(&crate::metrics::TopicLabel { topic: "t".into() })
            .set(3);
        for (status, n) in [("reserved", 95), ("rejected", 5)] {
            metrics
                .decisions
                .get_or_create(&DecisionLabel { status })
                .inc_by(n);
        }
        let samples = Samples::parse(&metrics.encode());
        assert_eq!(
            samples.get(r#"orderflow_assigned_partitions{topic="t"}"#),
            Some(3.0)
        );
        assert_eq!(
            samples.get(r#"orderflow_inventory_decisions_total{status="rejected"}"#),
            Some(5.0)
        );
        assert_eq!(samples.sum("orderflow_inventory_decisions_total"), 100.0);
        assert_eq!(
            samples
                .series("orderflow_inventory_decisions_total")
                .count(),
            2
        );
        // A name that is only a prefix of another's is not summed with it.
        assert_eq!(samples.sum("orderflow_inventory_decisions"), 0.0);
    }
}
