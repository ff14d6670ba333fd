//! The SDK's error type.
//!
//! Errors the server sent keep their stable [`ErrorCode`], so an application can branch on
//! `err.code()` without matching message text; everything else says which side failed.

use std::time::Duration;
use switchboard_protocol::{ErrorCode, ErrorReply};

/// Everything an SDK call can fail with.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server refused the request; `code()` gives the stable code.
    #[error("{0}")]
    Server(ErrorReply),
    /// The socket or HTTP connection could not be opened or broke.
    #[error("connection failed: {0}")]
    Connection(String),
    /// The connection dropped while this request was in flight and it cannot be retried safely
    /// (an ephemeral publish): it may or may not have taken effect.
    #[error("disconnected before the reply; the request may or may not have taken effect")]
    Disconnected,
    /// The client was closed (by `Client::close`, or because every handle was dropped).
    #[error("the client is closed")]
    Closed,
    /// No reply arrived in time.
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    /// The URL is not a usable `ws://`, `wss://`, `http://` or `https://` URL.
    #[error("invalid url `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The frame would exceed the server's frame limit; it was not sent.
    #[error("frame of {size} bytes exceeds the {max}-byte frame limit; send smaller messages")]
    FrameTooLarge {
        /// The encoded frame size.
        size: usize,
        /// The configured limit (`ClientConfig::max_frame_bytes`).
        max: usize,
    },
    /// The server answered something this SDK cannot read.
    #[error("unexpected reply from the server: {0}")]
    Protocol(String),
    /// An HTTP request failed with a status and a body that is not an error reply.
    #[error("HTTP {status}: {body}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The response body (truncated).
        body: String,
    },
}

impl Error {
    /// The stable protocol code of this error, when it has one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(reply) => Some(reply.code),
            Error::FrameTooLarge { .. } => Some(ErrorCode::FrameTooLarge),
            _ => None,
        }
    }

    /// The server's error reply, when the server refused the request.
    pub fn as_server(&self) -> Option<&ErrorReply> {
        match self {
            Error::Server(reply) => Some(reply),
            _ => None,
        }
    }

    pub(crate) fn local(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Server(ErrorReply::new(code, message))
    }
}

impl From<ErrorReply> for Error {
    fn from(reply: ErrorReply) -> Self {
        Error::Server(reply)
    }
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let e = Error::from(ErrorReply::new(ErrorCode::BadPassword, "wrong password"));
        assert_eq!(e.code(), Some(ErrorCode::BadPassword));
        assert_eq!(e.to_string(), "bad_password: wrong password");
        assert_eq!(Error::Closed.code(), None);
        assert_eq!(
            Error::FrameTooLarge { size: 2, max: 1 }.code(),
            Some(ErrorCode::FrameTooLarge)
        );
    }
}
