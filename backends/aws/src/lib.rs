//! Clearway's AWS backends: the four ports on S3, SQS, SNS and DynamoDB,
//! through the official SDK. The only crate that depends on `aws-sdk-*`.
//!
//! Configuration is the SDK's own (`AWS_REGION`, credentials,
//! `AWS_ENDPOINT_URL`), so pointing at a local AWS-protocol server needs no
//! Clearway-specific setting; S3 uses path-style addressing when an
//! endpoint URL is set.
//!
//! Each port passes the shared conformance suite against `moto_server`
//! (`tests/conformance.rs`, run by `scripts/test`). What the emulator does
//! differently from AWS is written down next to the test that meets it.

pub mod blob;
pub mod bootstrap;
pub mod dynamo;
pub mod queue;
pub mod topic;

pub use blob::S3BlobStore;
pub use dynamo::DynamoStateStore;
pub use queue::SqsWorkQueue;
pub use topic::SnsNotifier;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use clearway_core::{ErrorKind, PortError};

/// The SDK configuration from the environment (region, credentials,
/// endpoint URL).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await
}

/// A port error from an SDK error: the kind from the HTTP status and the
/// service's error code; the operation names what was attempted.
pub fn sdk_err<E, R>(operation: &'static str, e: SdkError<E, R>) -> PortError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let kind = match &e {
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => ErrorKind::Unavailable,
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            match code {
                "NoSuchKey"
                | "NotFound"
                | "NoSuchBucket"
                | "ResourceNotFoundException"
                | "AWS.SimpleQueueService.NonExistentQueue" => ErrorKind::NotFound,
                "PreconditionFailed" | "ConditionalCheckFailedException" | "TransactionCanceledException" => {
                    ErrorKind::PreconditionFailed
                }
                "ReceiptHandleIsInvalid" | "InvalidParameterValue" if operation.contains("queue") => {
                    ErrorKind::PreconditionFailed
                }
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException" => ErrorKind::Throttled,
                "AccessDenied"
                | "AccessDeniedException"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "UnrecognizedClientException" => ErrorKind::Unauthorized,
                "ValidationException" | "InvalidArgument" => ErrorKind::InvalidInput,
                _ => ErrorKind::Unavailable,
            }
        }
        _ => ErrorKind::Internal,
    };
    PortError::with_cause(kind, operation, e)
}

/// Unix seconds now.
pub(crate) fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
