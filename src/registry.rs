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

use std::time::Duration;

use schema_registry_converter::async_impl::schema_registry::{
    get_schema_by_subject, is_compatible_schema, post_schema, SrSettings,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::contracts::schemas::{json_schema_in, Draft};
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
/// refuses stops it. Nothing to do without `--schema-registry`.
pub async fn register_all(
    options: Option<&RegistryOptions>,
    writes: &[(&str, &str)],
) -> Result<()> {
    let Some(options) = options else {
        return Ok(());
    };
    let registry = Registry::new(options.clone())?;
    for (topic, layout) in writes {
        let id = registry.register(topic, layout).await?;
        tracing::info!(subject = %value_subject(topic), id, registry = registry.url(), "schema registered");
    }
    Ok(())
}
