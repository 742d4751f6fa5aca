//! Port errors: a kind plus a cause.
//!
//! Retry decisions look only at the [`ErrorKind`]; the cause chain is for
//! logs. Messages name operations and identifiers, never payload content.

use std::fmt;

/// What went wrong, independent of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    NotFound,
    AlreadyExists,
    /// A conditional write's condition did not hold (version, not-exists).
    PreconditionFailed,
    /// The backend asked us to slow down.
    Throttled,
    /// The backend cannot be reached or is failing.
    Unavailable,
    Timeout,
    Unauthorized,
    /// The request violates a documented limit (batch size, body size).
    InvalidInput,
    Internal,
}

impl ErrorKind {
    /// Whether trying again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Throttled | ErrorKind::Unavailable | ErrorKind::Timeout)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::AlreadyExists => "already exists",
            ErrorKind::PreconditionFailed => "precondition failed",
            ErrorKind::Throttled => "throttled",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Internal => "internal error",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error from a port: its kind, what was being done, and the cause.
#[derive(Debug)]
pub struct PortError {
    kind: ErrorKind,
    operation: &'static str,
    cause: Option<Cause>,
}

impl PortError {
    pub fn new(kind: ErrorKind, operation: &'static str) -> Self {
        PortError { kind, operation, cause: None }
    }

    pub fn with_cause(kind: ErrorKind, operation: &'static str, cause: impl Into<Cause>) -> Self {
        PortError { kind, operation, cause: Some(cause.into()) }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn operation(&self) -> &'static str {
        self.operation
    }

    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    pub fn not_found(operation: &'static str) -> Self {
        Self::new(ErrorKind::NotFound, operation)
    }
    pub fn already_exists(operation: &'static str) -> Self {
        Self::new(ErrorKind::AlreadyExists, operation)
    }
    pub fn precondition_failed(operation: &'static str) -> Self {
        Self::new(ErrorKind::PreconditionFailed, operation)
    }
    pub fn invalid_input(operation: &'static str) -> Self {
        Self::new(ErrorKind::InvalidInput, operation)
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.operation, self.kind)
    }
}

impl std::error::Error for PortError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

pub type PortResult<T> = Result<T, PortError>;

/// The whole cause chain of an error on one line, for logs.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_decides_retry() {
        assert!(PortError::new(ErrorKind::Throttled, "send").is_retryable());
        assert!(!PortError::precondition_failed("put").is_retryable());
        let e = PortError::with_cause(ErrorKind::Unavailable, "put blob", std::io::Error::other("disk"));
        assert_eq!(chain(&e), "put blob: unavailable: disk");
    }
}
