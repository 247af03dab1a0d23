//! A Confluent-compatible schema registry (`--schema-registry`): the public
//! events' schemas registered under their topics' subjects, checked for
//! compatibility with what is registered before a service starts.
//!
//! Subjects follow Confluent's TopicNameStrategy (`<topic>-value`), schema
//! type JSON, in draft-07 (see `contracts::schemas`). Registering is what
//! Confluent's serializers do with `auto.register.schemas`, with one step
//! before it: the subject's rule is set (`--schema-compatibility`, BACKWARD
//! by default) and our schema checked against the latest version, so that
//! a schema the rule refuses stops the service with the subject, the
//! versions and the rule named, rather than with the registry's bare 409.
//!
//! Registering and looking schemas up go through schema_registry_converter
//! (the Rust client of Confluent's registry API); setting a subject's rule,
//! which it does not cover, is one PUT with reqwest, its HTTP client.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use schema_registry_converter::async_impl::json::JsonDecoder;
use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_subject, is_compatible_schema, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::contracts::schemas::{json_schema_in, Draft};
use crate::contracts::wire;
use crate::error::{Error, Result};

/// A subject's compatibility rule, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Compatibility {
    /// A new schema reads every record of the latest one (consumers
    /// upgrade first).
    Backward,
    BackwardTransitive,
    /// The latest schema reads records of the new one (producers first).
    Forward,
    ForwardTransitive,
    /// Both.
    Full,
    FullTransitive,
    /// Any change goes.
    None,
}

impl Compatibility {
    pub fn name(self) -> &'static str {
        match self {
            Compatibility::Backward => "BACKWARD",
            Compatibility::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Compatibility::Forward => "FORWARD",
            Compatibility::ForwardTransitive => "FORWARD_TRANSITIVE",
            Compatibility::Full => "FULL",
            Compatibility::FullTransitive => "FULL_TRANSITIVE",
            Compatibility::None => "NONE",
        }
    }
}

/// Where the registry is and how to talk to it.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Its Confluent-compatible API's base URL.
    pub url: String,
    /// HTTP basic credentials, for a registry that needs them.
    pub credentials: Option<(String, String)>,
    pub compatibility: Compatibility,
    /// How long one call may take before the registry counts as
    /// unreachable (`--timeout`).
    pub timeout: Duration,
}

/// The subject a topic's values are registered under.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A connection to the registry.
pub struct Registry {
    options: RegistryOptions,
    settings: SrSettings,
    http: reqwest::Client,
}

impl Registry {
    pub fn new(options: RegistryOptions) -> Result<Self> {
        let url = options.url.trim_end_matches('/').to_owned();
        let options = RegistryOptions { url, ..options };
        let mut builder = SrSettings::new_builder(options.url.clone());
        builder.set_timeout(options.timeout);
        if let Some((user, password)) = &options.credentials {
            builder.set_basic_authorization(user, Some(password));
        }
        let settings = builder
            .build()
            .map_err(|e| Error::Config(format!("--schema-registry {}: {e}", options.url)))?;
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .build()
            .map_err(|e| Error::Config(format!("an HTTP client: {e}")))?;
        Ok(Self {
            options,
            settings,
            http,
        })
    }

    pub fn url(&self) -> &str {
        &self.options.url
    }

    /// Registers the schema of `layout` (a public event's name) for the
    /// values of `topic`, after setting the subject's rule and checking the
    /// schema against it; returns the schema's id.
    pub async fn register(&self, topic: &str, layout: &str) -> Result<u32> {
        let subject = value_subject(topic);
        let rule = self.options.compatibility;
        self.set_rule(&subject, rule).await?;
        let schema = self.supplied(layout)?;
        // Already one of the subject's versions (an earlier start, or a
        // later version registered since by someone else): its id, as is.
        if let Some(id) = self.lookup(&subject, &schema.schema).await? {
            return Ok(id);
        }
        let latest = match get_schema_by_subject(
            &self.settings,
            &SubjectNameStrategy::TopicNameStrategy(topic.to_owned(), false),
        )
        .await
        {
            Ok(latest) => latest.version,
            // Nothing registered under it yet (40401), or nothing at all.
            Err(error) if not_found(&error) => None,
            Err(error) => return Err(self.failed(format!("reading {subject}"), &error)),
        };
        if let Some(latest) = latest {
            let compatible = is_compatible_schema(&self.settings, subject.clone(), schema.clone())
                .await
                .map_err(|e| self.failed(format!("checking {layout} against {subject}"), &e))?;
            if !compatible {
                return Err(Error::IncompatibleSchema {
                    layout: layout.to_owned(),
                    subject,
                    latest,
                    rule: rule.name(),
                });
            }
        }
        let registered = post_schema(&self.settings, subject.clone(), schema)
            .await
            .map_err(|e| self.failed(format!("registering {layout} under {subject}"), &e))?;
        Ok(registered.id)
    }

    /// Sets the subject's compatibility rule.
    async fn set_rule(&self, subject: &str, rule: Compatibility) -> Result<()> {
        let body = serde_json::json!({ "compatibility": rule.name() });
        let action = format!("setting {subject}'s compatibility to {}", rule.name());
        let (status, text) = self
            .call(
                reqwest::Method::PUT,
                &format!("config/{subject}"),
                &body,
                &action,
            )
            .await?;
        if !status.is_success() {
            return Err(Error::Registry {
                action,
                reason: format!("{status}: {}", text.trim()),
            });
        }
        Ok(())
    }

    /// The id of `schema` if it is one of the subject's versions.
    async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>> {
        let body = serde_json::json!({ "schemaType": "JSON", "schema": schema });
        let action = format!("looking our schema up in {subject}");
        let (status, text) = self
            .call(
                reqwest::Method::POST,
                &format!("subjects/{subject}"),
                &body,
                &action,
            )
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let found: serde_json::Value = serde_json::from_str(&text)
            .ok()
            .filter(|_| status.is_success())
            .ok_or_else(|| Error::Registry {
                action: action.clone(),
                reason: format!("{status}: {}", text.trim()),
            })?;
        let id = found["id"].as_u64().and_then(|id| u32::try_from(id).ok());
        id.map(Some).ok_or_else(|| Error::Registry {
            action,
            reason: format!("no id in {}", text.trim()),
        })
    }

    /// One call of the Confluent API that the converter does not make:
    /// its status and body; a connection that fails or times out is the
    /// registry unreachable.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
        action: &str,
    ) -> Result<(reqwest::StatusCode, String)> {
        let url = format!("{}/{path}", self.options.url);
        let mut request = self
            .http
            .request(method, &url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/vnd.schemaregistry.v1+json",
            )
            .body(body.to_string());
        if let Some((user, password)) = &self.options.credentials {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                Error::RegistryUnreachable {
                    url: self.options.url.clone(),
                    within: self.options.timeout,
                    detail: root_cause(&e),
                }
            } else {
                Error::Registry {
                    action: action.to_owned(),
                    reason: root_cause(&e),
                }
            }
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok((status, text))
    }

    /// Our schema of `layout`, as the registry is given it.
    fn supplied(&self, layout: &str) -> Result<SuppliedSchema> {
        let schema = json_schema_in(layout, Draft::Draft07)
            .ok_or_else(|| Error::Config(format!("no schema named {layout}")))?;
        Ok(SuppliedSchema::new(
            None,
            SchemaType::Json,
            schema.to_string(),
        ))
    }

    fn failed(&self, action: String, error: &SRCError) -> Error {
        let reason = match &error.cause {
            Some(cause) => format!("{}: {cause}", error.error),
            None => error.error.clone(),
        };
        if error.retriable || reason.contains("error sending request") {
            return Error::RegistryUnreachable {
                url: self.options.url.clone(),
                within: self.options.timeout,
                detail: format!("{action}: {reason}"),
            };
        }
        Error::Registry { action, reason }
    }
}

/// What the converter's validation error says is wrong, without the
/// record it quotes first (the dead letter holds the record): its list of
/// violations, joined.
fn violations(message: &str) -> String {
    let list = message
        .split_once(" because ")
        .map_or(message, |(_, why)| why);
    match serde_json::from_str::<Vec<String>>(list) {
        Ok(violations) => violations.join("; "),
        Err(_) => list.to_owned(),
    }
}

/// The registry answered 404: no such subject or version.
fn not_found(error: &SRCError) -> bool {
    let text = format!("{} {}", error.error, error.cause.as_deref().unwrap_or(""));
    text.contains("404") || text.contains("40401") || text.contains("40402")
}

/// The innermost error's message: reqwest's outer ones only say "error
/// sending request".
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// Registers the schemas of the public topics a service writes, each
/// `(topic, layout)`, before it starts: a schema the registry's rule
/// refuses stops it. Returns what the service frames and checks its
/// records with; without `--schema-registry`, plain JSON.
pub async fn register_all(
    options: Option<&RegistryOptions>,
    writes: &[(&str, &str)],
) -> Result<Schemas> {
    let Some(options) = options else {
        return Ok(Schemas::default());
    };
    let registry = Registry::new(options.clone())?;
    let mut ids = BTreeMap::new();
    for (topic, layout) in writes {
        let id = registry.register(topic, layout).await?;
        tracing::info!(subject = %value_subject(topic), id, registry = registry.url(), "schema registered");
        ids.insert((*topic).to_owned(), id);
    }
    Ok(Schemas {
        ids: Arc::new(ids),
        readers: Some(Arc::new(Readers::of(&registry))),
    })
}

/// How a service's records meet the registry: the schema id each public
/// topic it writes is framed with, and the schemas framed records it reads
/// are checked against. The default (no registry) writes plain JSON and
/// reads framed records by their JSON alone.
#[derive(Clone, Default)]
pub struct Schemas {
    ids: Arc<BTreeMap<String, u32>>,
    readers: Option<Arc<Readers>>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("ids", &self.ids)
            .field("registry", &self.readers.as_ref().map(|r| &r.url))
            .finish()
    }
}

/// Why a record read cannot be used (its dead letter's reason).
pub type Refused = String;

impl Schemas {
    /// `json` as written to `topic`: framed with the topic's schema id
    /// when it has one.
    pub fn frame(&self, topic: &str, json: Vec<u8>) -> Vec<u8> {
        match self.ids.get(topic) {
            Some(&id) => wire::frame(id, &json),
            None => json,
        }
    }

    /// The JSON of a value read: plain JSON as it is; a framed value's,
    /// once it meets the schema it was written with (looked up once by id
    /// and kept). `Ok(Err(why))`: the record is to be set aside (an unknown
    /// schema id, a record that fails its schema); `Err`: the registry
    /// cannot answer within `--timeout`, or refuses us.
    pub fn read<'a>(&self, bytes: &'a [u8]) -> Result<Result<&'a [u8], Refused>> {
        match (wire::read(bytes), &self.readers) {
            (wire::Value::Plain(json), _) => Ok(Ok(json)),
            (wire::Value::Truncated, _) => Ok(Err(
                "starts with the wire format's zero byte but is shorter than its 5-byte header"
                    .into(),
            )),
            // Without a registry, a framed record is read by its JSON.
            (wire::Value::Framed { json, .. }, None) => Ok(Ok(json)),
            (wire::Value::Framed { id, json }, Some(readers)) => readers.check(id, json),
        }
    }
}

/// The schemas of framed records, by id, from the registry.
struct Readers {
    /// Looks ids up and keeps what it found (or that the id is unknown).
    decoder: JsonDecoder,
    /// The service's runtime: the lookup is async, its callers (engine
    /// threads, topic followers) are not.
    runtime: tokio::runtime::Handle,
    url: String,
    timeout: Duration,
}

impl Readers {
    /// Readers of `registry`'s schemas, on the current tokio runtime.
    fn of(registry: &Registry) -> Self {
        Self {
            decoder: JsonDecoder::new(registry.settings.clone()),
            runtime: tokio::runtime::Handle::current(),
            url: registry.options.url.clone(),
            timeout: registry.options.timeout,
        }
    }

    /// `json`, once it meets schema `id`. The schema is asked for again
    /// while the registry cannot answer, up to `--timeout`.
    fn check<'a>(&self, id: u32, json: &'a [u8]) -> Result<Result<&'a [u8], Refused>> {
        let value: serde_json::Value = match serde_json::from_slice(json) {
            Ok(value) => value,
            Err(e) => return Ok(Err(format!("not JSON after its wire-format header: {e}"))),
        };
        let deadline = Instant::now() + self.timeout;
        let mut pause = Duration::from_millis(100);
        loop {
            let error = match self.block_on(self.decoder.get_schema(id)) {
                Ok(schema) => {
                    return Ok(match self.decoder.validate(&schema, &value) {
                        Ok(()) => Ok(json),
                        Err(e) => Err(format!(
                            "does not meet its schema (id {id}): {}",
                            violations(&e.error)
                        )),
                    })
                }
                Err(error) => error,
            };
            let text = format!("{}: {}", error.error, error.cause.as_deref().unwrap_or(""));
            if text.contains("404") {
                return Ok(Err(format!(
                    "schema id {id} is unknown to the registry at {}",
                    self.url
                )));
            }
            if !error.retriable && !text.contains("error sending request") {
                return Err(Error::Registry {
                    action: format!("looking schema id {id} up"),
                    reason: text,
                });
            }
            if Instant::now() + pause > deadline {
                return Err(Error::RegistryUnreachable {
                    url: self.url.clone(),
                    within: self.timeout,
                    detail: format!("looking schema id {id} up: {text}"),
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(2));
            self.decoder.remove_errors_from_cache();
        }
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            // On one of the runtime's own threads: let it run other tasks
            // meanwhile.
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(future)),
            Err(_) => self.runtime.block_on(future),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_leave_the_quoted_record_out() {
        let message = r#"Value {"a":1} was not valid according to the schema because ["0 is less than the minimum of 1 at /q", "Additional properties are not allowed ('c' was unexpected)"]"#;
        assert_eq!(
            violations(message),
            "0 is less than the minimum of 1 at /q; Additional properties are not allowed ('c' was unexpected)"
        );
        assert_eq!(violations("something else"), "something else");
    }

    /// A registry that does not answer (nothing listens on port 1) is an
    /// error naming it once `--timeout` has passed, never a record set
    /// aside; plain JSON needs no registry.
    #[test]
    fn a_schema_that_cannot_be_looked_up_is_an_error_naming_the_registry() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let url = "http://127.0.0.1:1/apis/ccompat/v7";
        let registry = runtime
            .block_on(async {
                Registry::new(RegistryOptions {
                    url: url.into(),
                    credentials: None,
                    compatibility: Compatibility::Backward,
                    timeout: Duration::from_secs(1),
                })
            })
            .unwrap();
        let schemas = Schemas {
            ids: Arc::default(),
            readers: Some(Arc::new(runtime.block_on(async { Readers::of(&registry) }))),
        };
        assert_eq!(schemas.read(b"{}").unwrap(), Ok(&b"{}"[..]));
        assert!(schemas.read(&[0, 0]).unwrap().is_err());
        match schemas.read(&wire::frame(3, b"{}")) {
            Err(Error::RegistryUnreachable { url: named, .. }) => assert_eq!(named, url),
            other => panic!("{other:?}"),
        }
    }
}
