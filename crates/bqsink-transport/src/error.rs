//! Transport errors, classified for retry.

use std::fmt;

/// A gRPC status code (the public numbering of `google.rpc.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StatusCode {
    /// 0
    Ok,
    /// 1
    Cancelled,
    /// 2
    Unknown,
    /// 3
    InvalidArgument,
    /// 4
    DeadlineExceeded,
    /// 5
    NotFound,
    /// 6
    AlreadyExists,
    /// 7
    PermissionDenied,
    /// 8
    ResourceExhausted,
    /// 9
    FailedPrecondition,
    /// 10
    Aborted,
    /// 11
    OutOfRange,
    /// 12
    Unimplemented,
    /// 13
    Internal,
    /// 14
    Unavailable,
    /// 15
    DataLoss,
    /// 16
    Unauthenticated,
}

impl StatusCode {
    /// The code for a number; unknown numbers map to `Unknown`.
    pub fn from_i32(code: i32) -> Self {
        use StatusCode::*;
        match code {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// Whether a request that failed with this code may succeed when sent again unchanged.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Unavailable
                | Self::Internal
                | Self::Aborted
                | Self::Cancelled
                | Self::DeadlineExceeded
                | Self::ResourceExhausted
        )
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::Ok => "OK",
            Self::Cancelled => "CANCELLED",
            Self::Unknown => "UNKNOWN",
            Self::InvalidArgument => "INVALID_ARGUMENT",
            Self::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Self::NotFound => "NOT_FOUND",
            Self::AlreadyExists => "ALREADY_EXISTS",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Self::FailedPrecondition => "FAILED_PRECONDITION",
            Self::Aborted => "ABORTED",
            Self::OutOfRange => "OUT_OF_RANGE",
            Self::Unimplemented => "UNIMPLEMENTED",
            Self::Internal => "INTERNAL",
            Self::Unavailable => "UNAVAILABLE",
            Self::DataLoss => "DATA_LOSS",
            Self::Unauthenticated => "UNAUTHENTICATED",
        };
        f.write_str(s)
    }
}

/// One row BigQuery refused inside an append (`row_errors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRow {
    /// Index of the row within its request.
    pub index: u64,
    /// BigQuery's message, usually naming the field.
    pub message: String,
}

/// Failures talking to BigQuery.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The endpoint could not be reached.
    #[error("cannot connect to {endpoint}: {message}")]
    Connect {
        /// The address tried.
        endpoint: String,
        /// The underlying failure.
        message: String,
    },
    /// The gRPC call or stream failed as a whole.
    #[error("Storage Write API {code}: {message}")]
    Grpc {
        /// gRPC status code.
        code: StatusCode,
        /// Server message.
        message: String,
    },
    /// BigQuery refused one append request (the stream stays usable).
    #[error("append refused with {code}: {message}{}", rejected_summary(.rejected))]
    Append {
        /// gRPC status code of the refusal.
        code: StatusCode,
        /// Server message.
        message: String,
        /// The rows named as bad, when BigQuery says which.
        rejected: Vec<RejectedRow>,
    },
    /// The append stream ended before acknowledging a request.
    #[error("the append stream closed before acknowledging the request: {0}")]
    StreamClosed(String),
    /// The REST API answered with an error.
    #[error("BigQuery {method} {path} answered HTTP {status}{}: {message}", reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default())]
    Rest {
        /// HTTP method.
        method: &'static str,
        /// Path without host.
        path: String,
        /// HTTP status.
        status: u16,
        /// BigQuery's reason (`notFound`, `duplicate`, …).
        reason: Option<String>,
        /// BigQuery's message.
        message: String,
    },
    /// A query job finished with errors.
    #[error("query failed: {0}")]
    Query(String),
    /// No credentials, or the token could not be fetched.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// A request would exceed the 20 MB AppendRows limit.
    #[error("request of {bytes} bytes exceeds the AppendRows limit of {limit} bytes")]
    TooLarge {
        /// Size of the request.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// A response could not be understood.
    #[error("unexpected response: {0}")]
    Protocol(String),
}

fn rejected_summary(rows: &[RejectedRow]) -> String {
    match rows {
        [] => String::new(),
        [one] => format!(" (row {}: {})", one.index, one.message),
        [first, ..] => format!(" ({} rows, first row {}: {})", rows.len(), first.index, first.message),
    }
}

impl TransportError {
    /// Whether the same request may succeed when sent again (on a new stream where needed).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::StreamClosed(_) => true,
            Self::Grpc { code, message } => code.is_retryable() || message.to_ascii_lowercase().contains("draining"),
            Self::Append { code, .. } => code.is_retryable(),
            Self::Rest { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// The gRPC code, when the failure has one.
    pub fn code(&self) -> Option<StatusCode> {
        match self {
            Self::Grpc { code, .. } | Self::Append { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether a REST call failed because the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Rest { status: 404, .. }) || self.code() == Some(StatusCode::NotFound)
    }

    pub(crate) fn from_status(s: &tonic::Status) -> Self {
        Self::Grpc { code: StatusCode::from_i32(s.code() as i32), message: s.message().to_owned() }
    }
}

/// An error and its chain of sources on one line (`a: b: c`), for messages that must say what
/// actually failed (a refused TCP connection, not just "transport error").
pub(crate) fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
