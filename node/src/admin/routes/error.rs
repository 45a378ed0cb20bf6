//! The API's error answer, and how the node's errors map to it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::business::BusinessError;
use crate::idempotency::KeyError;
use crate::lookup::FindError;
use crate::outbox::SubmitError;
use crate::resend::ResendError;
use crate::staged::AttachError;
use crate::store::StoreError;

pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub(super) fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

pub(super) fn business_error(e: BusinessError) -> ApiError {
    match e {
        BusinessError::Find(f) => find_error(f),
        BusinessError::Refused(_) | BusinessError::NotAReplyTarget => {
            ApiError::new(StatusCode::CONFLICT, "not-allowed", e.to_string())
        }
        BusinessError::Submit(s) => submit_error(s),
        BusinessError::Store(s) => ApiError::internal(s),
    }
}

pub(super) fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::Invalid(_) | SubmitError::TooLarge { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-message",
            e.to_string(),
        ),
        SubmitError::Attach(AttachError::Store(_)) => ApiError::internal(e),
        SubmitError::Attach(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-attachment",
            e.to_string(),
        ),
        SubmitError::UnknownPeer(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown-peer", e.to_string())
        }
        SubmitError::Key(KeyError::Reused { .. }) => ApiError::new(
            StatusCode::CONFLICT,
            "idempotency-key-reused",
            e.to_string(),
        ),
        SubmitError::StoreUnwritable(_)
        | SubmitError::Store(StoreError::Sled(_) | StoreError::Audit(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unwritable",
            e.to_string(),
        ),
        SubmitError::DiskReserve { .. } => ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "disk-reserve",
            e.to_string(),
        ),
        e if e.is_unconfirmed() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unconfirmed",
            format!(
                "{e}: the message may or may not have been stored (if it was, it will be sent); \
                 submit it again with the same Idempotency-Key once `comity status` shows the \
                 storage ok (a listing before then may show writes that will not survive)"
            ),
        ),
        e => ApiError::internal(e),
    }
}

pub(super) fn resend_error(e: ResendError) -> ApiError {
    match e {
        ResendError::Find(f) => find_error(f),
        ResendError::NotSent(_) => {
            ApiError::new(StatusCode::CONFLICT, "not-allowed", e.to_string())
        }
        ResendError::NotFailed { .. } => {
            ApiError::new(StatusCode::CONFLICT, "not-failed", e.to_string())
        }
        ResendError::AlreadyResent { .. } => {
            ApiError::new(StatusCode::CONFLICT, "already-resent", e.to_string())
        }
        ResendError::Submit(s) => submit_error(s),
        ResendError::Store(s) => ApiError::internal(s),
    }
}

pub(super) fn find_error(e: FindError) -> ApiError {
    match e {
        FindError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not-found", e.to_string()),
        FindError::Ambiguous { .. } => {
            ApiError::new(StatusCode::CONFLICT, "ambiguous", e.to_string())
        }
        FindError::Store(s) => ApiError::internal(s),
    }
}
