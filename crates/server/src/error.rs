//! The server's error: a stable protocol code plus a message saying what to do.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use switchboard_protocol::{ErrorCode, ErrorReply};

/// An error a client sees, on the socket (error reply) or over HTTP (status + JSON body).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Error {
    /// The stable code.
    pub code: ErrorCode,
    /// What happened and what to do.
    pub message: String,
    /// Retry hint for `rate_limited`.
    pub retry_after_ms: Option<u64>,
}

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// An `internal` error (logged, since it means a bug or a broken machine).
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        Error::new(ErrorCode::Internal, what.to_string())
    }

    /// The reply body.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply {
            code: self.code,
            message: self.message.clone(),
            retry_after_ms: self.retry_after_ms,
        }
    }

    /// The HTTP status of this code.
    pub fn status(&self) -> StatusCode {
        use ErrorCode::*;
        match self.code {
            InvalidKey | KeyRevoked | KeyExpired | Unauthenticated => StatusCode::UNAUTHORIZED,
            Forbidden | BadPassword | NotAMember => StatusCode::FORBIDDEN,
            AgentNameTaken | ChannelExists | TenantExists | NoHistory | VersionConflict => {
                StatusCode::CONFLICT
            }
            ChannelNotFound | NotFound | AgentNotPresent => StatusCode::NOT_FOUND,
            FrameTooLarge | MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited | TooManyChannels | TooManyKeys | InboxFull => {
                StatusCode::TOO_MANY_REQUESTS
            }
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            TooManyConnections | ServerShutdown | StorageUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.reply())).into_response()
    }
}

/// Builds an [`Error`] from a code and a format string.
macro_rules! err {
    ($code:ident, $($arg:tt)+) => {
        $crate::error::Error::new(switchboard_protocol::ErrorCode::$code, format!($($arg)+))
    };
}
pub(crate) use err;
