//! Every error the API answers is an RFC 9457 problem document
//! (`application/problem+json`): a `type` (a URI reference naming the kind
//! of problem, `about:blank` where the status says it all), a `title` per
//! type, the `status`, and a `detail` for this occurrence; an invalid order
//! also names the offending `field`.

use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

pub const CONTENT_TYPE_PROBLEM: &str = "application/problem+json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// The kind of problem: `/problems/invalid-order`,
    /// `/problems/idempotency-key-reused`, `/problems/malformed-json`,
    /// `/problems/kafka-unavailable`, or `about:blank` (the status says it
    /// all).
    #[serde(rename = "type")]
    #[schema(example = "/problems/invalid-order")]
    pub kind: String,
    /// The same for every problem of its type.
    pub title: String,
    /// The HTTP status code.
    #[schema(example = 422)]
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// The request body's offending field (`items[2].quantity`), for an
    /// invalid order.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "items[0].quantity")]
    pub field: Option<String>,
}

impl Problem {
    fn new(kind: &str, title: &str, status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    /// A status whose reason phrase says it all.
    fn plain(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status.canonical_reason().unwrap_or("Error");
        Self::new("about:blank", title, status, detail)
    }

    /// Valid JSON that is not a valid order; `field` says where.
    pub fn invalid_order(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(
                "/problems/invalid-order",
                "The order is not valid",
                StatusCode::UNPROCESSABLE_ENTITY,
                detail,
            )
        }
    }

    /// An idempotency key used before for an order with other content
    /// (the IETF idempotency-key draft's 422).
    pub fn key_reused(key: &str, order_id: uuid::Uuid) -> Self {
        Self::new(
            "/problems/idempotency-key-reused",
            "The Idempotency-Key was used for another order",
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("Idempotency-Key {key:?} placed order {order_id}, whose content differs"),
        )
    }

    /// A body that is not JSON at all.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            "/problems/malformed-json",
            "The body is not valid JSON",
            StatusCode::BAD_REQUEST,
            detail,
        )
    }

    /// Kafka did not take or answer in time: nothing was accepted.
    pub fn kafka_unavailable(detail: impl Into<String>) -> Self {
        Self::new(
            "/problems/kafka-unavailable",
            "Kafka is unavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            detail,
        )
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::plain(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::plain(StatusCode::NOT_FOUND, detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "this resource does not take that method",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a request body may be at most {limit} bytes"),
        )
    }

    pub fn unsupported_media_type() -> Self {
        Self::plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be application/json",
        )
    }

    /// The views could not be read or written (`store.rs`): the instance
    /// cannot answer, another may.
    pub fn views_failed(error: &crate::Error) -> Self {
        Self::new(
            "/problems/views-unavailable",
            "The API's views are unavailable",
            StatusCode::INTERNAL_SERVER_ERROR,
            error.to_string(),
        )
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        let mut response = (status, [(CONTENT_TYPE, CONTENT_TYPE_PROBLEM)], body).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Kafka's own retries take about this long to find a new leader.
            response
                .headers_mut()
                .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<crate::Error> for Problem {
    fn from(error: crate::Error) -> Self {
        Self::views_failed(&error)
    }
}
