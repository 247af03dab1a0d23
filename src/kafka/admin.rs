//! Cluster administration through the Kafka protocol: reachability, topics,
//! watermarks, consumer-group membership and committed offsets. This is what
//! `topics`, `lag`, `replay` and `demo` are built on; nothing shells out to
//! Kafka's own tools.
//!
//! Metadata, watermark and offset calls block the calling thread for at most
//! the configured timeout; they are used by short operator commands, never on
//! a service's hot path.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::KafkaSettings;
use crate::error::{Error, KafkaResultExt, Result};
use crate::kafka::clients;
use crate::kafka::context::Logged;
use crate::kafka::probe;
use crate::wait;

/// How often a wait below asks again.
const ASK_AGAIN: Duration = Duration::from_millis(100);
/// Requests to create topics before a timeout is an error.
const CREATE_ATTEMPTS: u32 = 3;

/// An admin request that timed out (the cluster slow, not refusing).
fn is_timeout(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::OperationTimedOut | RDKafkaErrorCode::RequestTimedOut)
    )
}

/// What a topic is made of, as the cluster's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Its partition ids, in order.
    pub partitions: Vec<i32>,
    /// How many replicas its partitions have.
    pub replication: i32,
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic-level configs, e.g. cleanup.policy=compact.
    pub config: Vec<(String, String)>,
}

/// A replication factor of -1 asks the brokers for their
/// `default.replication.factor` (KIP-464), as Kafka's own tools do when none
/// is given: 1 on a single local node, 3 on the local three-node cluster.
pub const BROKER_DEFAULT_REPLICATION: i32 = -1;

impl TopicSpec {
    /// A topic spec; with three or more replicas it also requires two in sync
    /// for a write (min.insync.replicas=2), so that with acks=all an
    /// acknowledged event survives the loss of any one broker.
    pub fn new(name: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        let mut config = Vec::new();
        if replication_factor >= 3 {
            config.push(("min.insync.replicas".to_string(), "2".to_string()));
        }
        Self {
            name: name.into(),
            partitions,
            replication_factor,
            config,
        }
    }
}

/// A connection for administrative requests.
pub struct Admin {
    settings: KafkaSettings,
    client: AdminClient<Logged>,
    /// One offsets client per consumer group asked about, kept: creating a
    /// client means threads, connections and a coordinator lookup, too much
    /// to repeat on every poll of `lag --watch` or the bench.
    group_clients: Mutex<HashMap<String, Arc<BaseConsumer<Logged>>>>,
}

impl Admin {
    /// Checks that a broker answers within the settings' timeout and takes
    /// our login (`probe`), then connects.
    pub fn connect(settings: &KafkaSettings) -> Result<Self> {
        probe::check(settings)?;
        Self::without_probe(settings)
    }

    /// Connects without the check, for a caller that made it already.
    pub fn without_probe(settings: &KafkaSettings) -> Result<Self> {
        let client: AdminClient<Logged> = settings
            .client_config(&[])
            .create_with_context(Logged)
            .while_("creating the admin client")?;
        Ok(Self {
            settings: settings.clone(),
            client,
            group_clients: Mutex::default(),
        })
    }

    pub fn settings(&self) -> &KafkaSettings {
        &self.settings
    }

    /// The metadata of every topic (asking for one by name could auto-create
    /// it on brokers with auto.create.topics.enable). A cluster that gives no
    /// answer within the timeout is named as unreachable, as at connect: it
    /// answered the probe, so it is overloaded or has lost its brokers since.
    fn metadata(&self) -> Result<rdkafka::metadata::Metadata> {
        let timeout = self.settings.timeout;
        self.client
            .inner()
            .fetch_metadata(None, timeout)
            .map_err(|cause| {
                if is_timeout(&cause) {
                    Error::Unreachable {
                        brokers: self.settings.brokers.clone(),
                        timeout,
                        detail: format!("a metadata request got no answer ({cause})"),
                    }
                } else {
                    Error::Kafka {
                        action: "fetching cluster metadata".into(),
                        cause,
                    }
                }
            })
    }

    /// The partition ids of `topic`, in order.
    pub fn partitions(&self, topic: &str) -> Result<Vec<i32>> {
        Ok(self.layout(topic)?.partitions)
    }

    /// `partitions`, waiting up to the timeout for a topic that was just
    /// created (see `layout_once_visible`).
    pub async fn partitions_once_visible(&self, topic: &str) -> Result<Vec<i32>> {
        Ok(self.layout_once_visible(topic).await?.partitions)
    }

    /// The partitions and replication of `topic`, from one metadata answer.
    pub fn layout(&self, topic: &str) -> Result<Layout> {
        let metadata = self.metadata()?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        match found {
            Some(t) if t.error().is_none() && !t.partitions().is_empty() => {
                let mut partitions: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
                partitions.sort_unstable();
                let replication = t.partitions()[0].replicas().len() as i32;
                Ok(Layout {
                    partitions,
                    replication,
                })
            }
            _ => Err(Error::UnknownTopic(topic.to_owned())),
        }
    }

    /// `layout`, waiting up to the timeout for a topic that was just
    /// created: each metadata request goes to whichever broker librdkafka
    /// picks, and a broker's metadata can lag the controller's (two
    /// instances starting together on a loaded 3-node cluster: one made the
    /// internal topics and saw them led, the other was then told by another
    /// broker that they did not exist, and ended).
    pub async fn layout_once_visible(&self, topic: &str) -> Result<Layout> {
        let found = wait::until_async(self.settings.timeout, ASK_AGAIN, || async {
            match self.layout(topic) {
                Err(Error::UnknownTopic(_)) => Ok(None),
                found => found.map(Some),
            }
        })
        .await?;
        found.ok_or_else(|| Error::UnknownTopic(topic.to_owned()))
    }

    /// Creates the topics a stream task needs beside its input, when missing:
    /// the dead-letter topic, and a compacted changelog with one partition per
    /// input partition. Both get the input's partition count and replication.
    pub async fn ensure_internal_topics(&self, input: &str, changelog: Option<&str>) -> Result<()> {
        let input_layout = self.layout_once_visible(input).await?;
        let partitions = input_layout.partitions.len() as i32;
        let replication = input_layout.replication;
        let mut specs = vec![TopicSpec::new(
            crate::engine::dlq_topic(input),
            partitions,
            replication,
        )];
        if let Some(name) = changelog {
            let mut spec = TopicSpec::new(name, partitions, replication);
            // Only the latest value per key is state; older ones may go.
            spec.config
                .push(("cleanup.policy".into(), "compact".into()));
            specs.push(spec);
        }
        self.create_topics(&specs).await?;
        if let Some(name) = changelog {
            let found = self.partitions_once_visible(name).await?.len() as i32;
            if found != partitions {
                return Err(Error::Config(format!(
                    "changelog {name} has {found} partitions but {input} has {partitions}; \
                     state is kept per input partition, so they must match"
                )));
            }
        }
        Ok(())
    }

    /// Topics whose every partition has a leader: ready to be used.
    fn topics_with_leaders(&self) -> Result<Vec<String>> {
        let metadata = self.metadata()?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none() && !t.partitions().is_empty())
            .filter(|t| {
                t.partitions()
                    .iter()
                    .all(|p| p.leader() >= 0 && p.error().is_none())
            })
            .map(|t| t.name().to_owned())
            .collect())
    }

    /// Whether `topic` exists (see `first_missing`).
    pub fn topic_exists(&self, topic: &str) -> Result<bool> {
        Ok(self.first_missing(&[topic.to_owned()])?.is_none())
    }

    /// The first of `topics` that does not exist, from one metadata
    /// request: a topic is missing only when the cluster's metadata leaves
    /// it out or says it is unknown, not when a partition has no leader for
    /// a moment (a broker down: the topic is still there).
    pub fn first_missing(&self, topics: &[String]) -> Result<Option<String>> {
        use rdkafka::types::RDKafkaRespErr;
        let metadata = self.metadata()?;
        let exists = |topic: &String| {
            metadata.topics().iter().any(|t| {
                t.name() == topic
                    && !matches!(
                        t.error(),
                        Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
                    )
            })
        };
        Ok(topics.iter().find(|t| !exists(t)).cloned())
    }

    /// The names of all topics, Kafka's internal ones (`__…`) left out.
    pub fn topics(&self) -> Result<Vec<String>> {
        let metadata = self.metadata()?;
        let mut names: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|name| !name.starts_with("__"))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Creates the topics that do not exist yet. Returns, per topic, whether
    /// it was created now (false: it existed already).
    pub async fn create_topics(&self, specs: &[TopicSpec]) -> Result<Vec<(String, bool)>> {
        let new: Vec<NewTopic<'_>> = specs
            .iter()
            .map(|s| {
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication_factor),
                )
            })
            .collect();
        // Two refusals pass: a loaded controller may answer after the
        // request's timeout (asked again a bounded number of times: a topic
        // the first request made comes back as existing), and a cluster whose
        // brokers are all fenced for a moment (a broker that missed its
        // heartbeats) refuses every topic with InvalidReplicationFactor,
        // asked again until the timeout. That code also means a replication
        // factor the cluster can never meet: reported after the timeout.
        let deadline = Instant::now() + self.settings.timeout;
        let mut created = BTreeSet::new();
        let mut attempt = 1;
        let outcome = loop {
            let results = match self.client.create_topics(new.iter(), &self.options()).await {
                Ok(results) => results,
                Err(error) if is_timeout(&error) && attempt < CREATE_ATTEMPTS => {
                    tracing::warn!(%error, attempt, "creating topics: asking again");
                    attempt += 1;
                    continue;
                }
                Err(error) => return Err(error).while_("creating topics"),
            };
            let mut unplaced = false;
            let outcome: Vec<_> = results
                .into_iter()
                .map(|result| match result {
                    Ok(name) => {
                        created.insert(name.clone());
                        Ok((name, true))
                    }
                    Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        let now = created.contains(&name);
                        Ok((name, now))
                    }
                    Err((name, code)) => {
                        unplaced |= code == RDKafkaErrorCode::InvalidReplicationFactor;
                        Err(Error::Kafka {
                            action: format!("creating topic {name}"),
                            cause: KafkaError::AdminOp(code),
                        })
                    }
                })
                .collect();
            if unplaced && Instant::now() < deadline {
                tracing::warn!("creating topics: no broker to place them on yet, asking again");
                tokio::time::sleep(ASK_AGAIN * 5).await;
                continue;
            }
            break outcome.into_iter().collect::<Result<Vec<_>>>()?;
        };
        // The controller has the topics now; the brokers' metadata follows a
        // moment later. Wait for it, so that whoever runs next finds them.
        let missing = || -> Result<Vec<String>> {
            let led = self.topics_with_leaders()?;
            Ok(specs
                .iter()
                .map(|s| s.name.clone())
                .filter(|name| !led.contains(name))
                .collect())
        };
        let ready = wait::until_async(self.settings.timeout, ASK_AGAIN, || async {
            Ok::<_, Error>(missing()?.is_empty().then_some(()))
        })
        .await?;
        match ready {
            Some(()) => Ok(outcome),
            None => Err(Error::NotInTime {
                what: format!("created topics {:?} did not all get leaders", missing()?),
                within: self.settings.timeout,
            }),
        }
    }

    /// Deletes topics (missing ones are fine) and waits until the cluster's
    /// metadata no longer lists them, so they can be created afresh.
    pub async fn delete_topics(&self, names: &[&str]) -> Result<()> {
        if names.is_empty() {
            return Ok(()); // the broker calls an empty request invalid
        }
        let results = self
            .client
            .delete_topics(names, &self.options())
            .await
            .while_("deleting topics")?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => {
                    return Err(Error::Kafka {
                        action: format!("deleting topic {name}"),
                        cause: KafkaError::AdminOp(code),
                    })
                }
            }
        }
        let within = self.settings.timeout * 3;
        let gone = wait::until_async(within, ASK_AGAIN, || async {
            let existing = self.topics()?;
            Ok::<_, Error>((!names.iter().any(|n| existing.iter().any(|e| e == n))).then_some(()))
        })
        .await?;
        gone.ok_or_else(|| Error::NotInTime {
            what: format!("topics {names:?} were still listed after being deleted"),
            within,
        })
    }

    /// Deletes the committed offsets of consumer groups (missing ones are fine).
    pub async fn delete_groups(&self, groups: &[&str]) -> Result<()> {
        // On a new cluster the group coordinator (the offsets topic) is
        // created on first use: groups it is not ready for are asked again.
        let remaining = Mutex::new((
            groups.iter().map(|g| g.to_string()).collect::<Vec<_>>(),
            RDKafkaErrorCode::CoordinatorNotAvailable,
        ));
        let done = wait::until_async(self.settings.timeout, ASK_AGAIN, || async {
            let asked = remaining.lock().expect("never poisoned").0.clone();
            let names: Vec<&str> = asked.iter().map(String::as_str).collect();
            let results = self
                .client
                .delete_groups(&names, &self.options())
                .await
                .while_("deleting consumer groups")?;
            let mut left = remaining.lock().expect("never poisoned");
            left.0.clear();
            for result in results {
                match result {
                    Ok(_) | Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
                    Err((name, code)) if coordinator_pending(code) => {
                        left.0.push(name);
                        left.1 = code;
                    }
                    Err((name, code)) => {
                        return Err(Error::Kafka {
                            action: format!("deleting consumer group {name}"),
                            cause: KafkaError::AdminOp(code),
                        })
                    }
                }
            }
            Ok(left.0.is_empty().then_some(()))
        })
        .await?;
        let (left, last) = remaining.into_inner().expect("never poisoned");
        done.ok_or_else(|| Error::Kafka {
            action: format!("deleting consumer groups {left:?}"),
            cause: KafkaError::AdminOp(last),
        })
    }

    /// (low, high) watermarks: the first offset still in the log, and the
    /// log-end offset (the offset the next message will get).
    pub fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64)> {
        self.client
            .inner()
            .fetch_watermarks(topic, partition, self.settings.timeout)
            .while_(format!("fetching watermarks of {topic}[{partition}]"))
    }

    /// How many members the consumer group has right now (0 for an unknown
    /// or empty group).
    pub fn active_members(&self, group: &str) -> Result<usize> {
        let mut last = RDKafkaErrorCode::CoordinatorLoadInProgress;
        let members = wait::until(self.settings.timeout, ASK_AGAIN, || {
            match self
                .client
                .inner()
                .fetch_group_list(Some(group), self.settings.timeout)
            {
                Ok(list) => Ok(Some(list.groups().iter().map(|g| g.members().len()).sum())),
                Err(KafkaError::GroupListFetch(RDKafkaErrorCode::GroupIdNotFound)) => Ok(Some(0)),
                // A broker that just started may still be loading the
                // group's coordinator: ask again, within the timeout.
                Err(KafkaError::GroupListFetch(code)) if coordinator_pending(code) => {
                    last = code;
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        })
        .while_(format!("describing consumer group {group}"))?;
        members
            .ok_or(KafkaError::GroupListFetch(last))
            .while_(format!("describing consumer group {group}"))
    }

    /// The group's committed offset per partition of `topic` (None: nothing
    /// committed for that partition).
    pub fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Option<i64>>> {
        let committed = self
            .group_client(group)?
            .committed_offsets(
                partition_list(topic, partitions, Offset::Invalid)?,
                self.settings.timeout,
            )
            .while_(format!("fetching the committed offsets of group {group}"))?;
        Ok(offsets_by_partition(&committed, topic))
    }

    /// Commits `offsets` for `group` on `topic`, as a client outside the group.
    /// The broker accepts this only while the group has no active members.
    pub fn commit(&self, group: &str, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
        let mut list = TopicPartitionList::new();
        for (&p, &offset) in offsets {
            list.add_partition_offset(topic, p, Offset::Offset(offset))
                .while_("building the offsets to commit")?;
        }
        self.group_client(group)?
            .commit(&list, CommitMode::Sync)
            .while_(format!("committing offsets for group {group}"))
    }

    /// Per partition, the offset of the first message with a timestamp at or
    /// after `millis` (None: no such message yet).
    pub fn offsets_for_time(
        &self,
        topic: &str,
        partitions: &[i32],
        millis: i64,
    ) -> Result<BTreeMap<i32, Option<i64>>> {
        // The query puts the timestamp where the answer's offset will be.
        let query = partition_list(topic, partitions, Offset::Offset(millis))?;
        let found = self
            .plain_client()?
            .offsets_for_times(query, self.settings.timeout)
            .while_(format!("looking up offsets by time on {topic}"))?;
        Ok(offsets_by_partition(&found, topic))
    }

    /// Each topic's `max.message.bytes`: the largest record batch its
    /// brokers take. A topic whose configuration we may not read (no
    /// DescribeConfigs permission) is left out, with a warning.
    pub async fn max_message_bytes(&self, topics: &[String]) -> Result<BTreeMap<String, usize>> {
        let specifiers: Vec<ResourceSpecifier<'_>> = topics
            .iter()
            .map(|t| ResourceSpecifier::Topic(t.as_str()))
            .collect();
        let results = self
            .client
            .describe_configs(&specifiers, &self.options())
            .await
            .while_("describing topic configurations")?;
        let mut limits = BTreeMap::new();
        for (topic, result) in topics.iter().zip(results) {
            let limit = match &result {
                Ok(resource) => resource
                    .get("max.message.bytes")
                    .and_then(|e| e.value.as_deref())
                    .and_then(|v| v.parse().ok()),
                Err(_) => None,
            };
            match (limit, &result) {
                (Some(limit), Ok(resource))
                    if resource.specifier == OwnedResourceSpecifier::Topic(topic.clone()) =>
                {
                    limits.insert(topic.clone(), limit);
                }
                _ => tracing::warn!(
                    topic,
                    error = ?result.err(),
                    "cannot read the topic's max.message.bytes; assuming librdkafka's batch size fits"
                ),
            }
        }
        Ok(limits)
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.settings.timeout))
    }

    /// A consumer handle that never subscribes: it only fetches and commits
    /// offsets on behalf of `group`, so it never joins the group.
    fn group_client(&self, group: &str) -> Result<Arc<BaseConsumer<Logged>>> {
        let mut clients = self.group_clients.lock().expect("no panic while held");
        if let Some(client) = clients.get(group) {
            return Ok(Arc::clone(client));
        }
        let client: Arc<BaseConsumer<Logged>> = Arc::new(
            clients::assign_only_reader(&self.settings, group, &[])
                .create_with_context(Logged)
                .while_("creating an offsets client")?,
        );
        clients.insert(group.to_owned(), Arc::clone(&client));
        Ok(client)
    }

    fn plain_client(&self) -> Result<BaseConsumer<Logged>> {
        self.settings
            .client_config(&[])
            .create_with_context(Logged)
            .while_("creating an offsets client")
    }
}

/// Errors that mean "the group coordinator is not ready yet, ask again".
fn coordinator_pending(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::NotCoordinator
            | RDKafkaErrorCode::CoordinatorNotAvailable
            | RDKafkaErrorCode::CoordinatorLoadInProgress
    )
}

/// A partition list for `topic` with the same offset in every partition.
fn partition_list(topic: &str, partitions: &[i32], offset: Offset) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition_offset(topic, p, offset)
            .while_("building a partition list")?;
    }
    Ok(list)
}

/// The concrete offset per partition of `topic` in a list (None: the broker
/// had none to give, e.g. nothing committed).
fn offsets_by_partition(list: &TopicPartitionList, topic: &str) -> BTreeMap<i32, Option<i64>> {
    list.elements_for_topic(topic)
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => (e.partition(), Some(n)),
            _ => (e.partition(), None),
        })
        .collect()
}
