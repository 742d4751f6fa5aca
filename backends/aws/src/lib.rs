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

pub mod audit;
pub mod blob;
pub mod bootstrap;
pub mod dynamo;
pub mod inspect;
pub mod kms;
pub mod queue;
pub mod topic;

pub use blob::S3BlobStore;
pub use dynamo::DynamoStateStore;
pub use queue::SqsWorkQueue;
pub use topic::SnsNotifier;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::error::SdkError;
use clearway_core::config::AwsConfig;
use clearway_core::outbox::OutboxJournal;
use clearway_core::ports::Ports;
use clearway_core::{ErrorKind, PortError, PortResult};
use std::sync::Arc;

/// The SDK configuration from the environment (region, credentials,
/// endpoint URL), with bounded waits: a call that cannot connect in 2 s,
/// or whose attempt takes over 25 s (long polls take up to 20 s), fails
/// with `Unavailable` or `Timeout` after the SDK's standard retries,
/// never hangs.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(std::time::Duration::from_secs(2))
        .operation_attempt_timeout(std::time::Duration::from_secs(25))
        .operation_timeout(std::time::Duration::from_secs(60))
        .build();
    aws_config::defaults(aws_config::BehaviorVersion::latest()).timeout_config(timeouts).load().await
}

/// Counts every attempt (retries too) as
/// `clearway_aws_calls_total{service, operation}`: the batching-efficiency
/// figure is calls per accepted transaction.
#[derive(Debug)]
pub struct CountCalls;

impl aws_smithy_runtime_api::client::interceptors::Intercept for CountCalls {
    fn name(&self) -> &'static str {
        "clearway-count-calls"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef<'_>,
        _components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        if let Some(m) = cfg.load::<aws_smithy_runtime_api::client::orchestrator::Metadata>() {
            metrics::counter!(
                "clearway_aws_calls_total",
                "service" => m.service().to_string(),
                "operation" => m.name().to_string()
            )
            .increment(1);
        }
        Ok(())
    }
}

pub(crate) fn sqs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(aws_sdk_sqs::config::Builder::from(sdk).interceptor(CountCalls).build())
}

pub(crate) fn sns_client(sdk: &aws_config::SdkConfig) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::from_conf(aws_sdk_sns::config::Builder::from(sdk).interceptor(CountCalls).build())
}

pub(crate) fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(aws_sdk_dynamodb::config::Builder::from(sdk).interceptor(CountCalls).build())
}

/// An SDK configuration for a local AWS-protocol server (`moto_server`)
/// at `endpoint`, with its fixed test credentials: for tests and
/// development tools, never for AWS itself.
pub async fn local_server_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "local-server"))
        .load()
        .await
}

/// An S3 client; path-style addressing when the SDK is pointed at a
/// non-AWS endpoint (a local AWS-protocol server has no bucket
/// subdomains).
pub(crate) fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let custom = sdk.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk).force_path_style(custom).interceptor(CountCalls).build(),
    )
}

/// The AWS backend: the four ports and the outbox intake journal over
/// them, for the resources named in the configuration.
#[derive(Debug, Clone)]
pub struct Aws {
    pub blobs: S3BlobStore,
    pub queue: SqsWorkQueue,
    pub notifier: SnsNotifier,
    pub state: DynamoStateStore,
    pub journal: OutboxJournal,
    /// KMS, for partners whose key versions a KMS key of their own wraps.
    pub kms: kms::KmsKeyService,
    /// Outbox entries older than this are the sweeper's to send.
    pub outbox_sweep_after: std::time::Duration,
    /// The audit log's table and checkpoint bucket.
    audit_table: String,
    audit_bucket: String,
    sdk: aws_config::SdkConfig,
}

impl Aws {
    /// Connects to existing resources (from Terraform or `clearway aws
    /// bootstrap`): `queue` and `topic` may be names (looked up) or a URL
    /// and an ARN (used as given, with no lookup call).
    pub async fn connect(names: &AwsConfig) -> PortResult<Aws> {
        Aws::connect_with(&sdk_config().await, names).await
    }

    /// [`Aws::connect`] with a given SDK configuration.
    pub async fn connect_with(sdk: &aws_config::SdkConfig, names: &AwsConfig) -> PortResult<Aws> {
        let queue_url = if names.queue.starts_with("https://") || names.queue.starts_with("http://") {
            names.queue.clone()
        } else {
            let sqs = sqs_client(sdk);
            let out = sqs.get_queue_url().queue_name(&names.queue).send().await.map_err(|e| sdk_err("queue url", e))?;
            out.queue_url()
                .map(str::to_string)
                .ok_or_else(|| PortError::new(ErrorKind::NotFound, "queue url: none returned"))?
        };
        let topic_arn = if names.topic.starts_with("arn:") {
            names.topic.clone()
        } else {
            SnsNotifier::find(sdk, &names.topic).await?
        };
        let blobs = S3BlobStore::new(sdk, &names.bucket, names.kms_key_id.clone());
        let queue = SqsWorkQueue::new(sdk, &queue_url);
        let state = DynamoStateStore::new(sdk, &names.table, names.partition_shards);
        let journal = OutboxJournal::batched(Arc::new(blobs.clone()), Arc::new(state.clone()), Arc::new(queue.clone()));
        let notifier = SnsNotifier::new(sdk, &topic_arn);
        let kms = kms::KmsKeyService::new(sdk);
        Ok(Aws {
            blobs,
            queue,
            notifier,
            state,
            journal,
            kms,
            outbox_sweep_after: names.outbox_sweep_after,
            audit_table: names.audit_table.clone(),
            audit_bucket: names.audit_bucket.clone(),
            sdk: sdk.clone(),
        })
    }

    /// The audit log in its own table, with checkpoints also written to
    /// the Object Lock bucket (see [`audit`]).
    pub fn audit(&self, signer: std::sync::Arc<clearway_core::audit::LogSigner>) -> audit::AwsAuditService {
        let archive = audit::S3CheckpointArchive::new(&self.sdk, &self.audit_bucket);
        audit::AwsAuditService::new(self.audit_log(), signer, Some(archive))
    }

    /// The audit log alone (to read and verify it: no signing key needed).
    pub fn audit_log(&self) -> audit::StoreAuditLog {
        audit::StoreAuditLog::new(Arc::new(DynamoStateStore::new(&self.sdk, &self.audit_table, 1)))
    }

    /// The ports (unsealed: the caller seals state values).
    pub fn ports(&self) -> Ports {
        Ports {
            blobs: Arc::new(self.blobs.clone()),
            queue: Arc::new(self.queue.clone()),
            notifier: Arc::new(self.notifier.clone()),
            state: Arc::new(self.state.clone()),
            journal: Arc::new(self.journal.clone()),
        }
    }
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
        SdkError::ServiceError(s) => kind_of(operation, s.err().code().unwrap_or("")),
        _ => ErrorKind::Internal,
    };
    PortError::with_cause(kind, operation, e)
}

/// The kind of a service error from its code. A `TransactionCanceledException`
/// is not a failed condition in itself (it may be throttling or a
/// conflict): the state store reads its reasons, and anything it does not
/// recognise is `Unavailable`, so retried.
fn kind_of(operation: &str, code: &str) -> ErrorKind {
    match code {
        "NoSuchKey"
        | "NotFound"
        | "NoSuchBucket"
        | "ResourceNotFoundException"
        | "AWS.SimpleQueueService.NonExistentQueue" => ErrorKind::NotFound,
        "PreconditionFailed" | "ConditionalCheckFailedException" => ErrorKind::PreconditionFailed,
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

/// Unix seconds now.
pub(crate) fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a cancelled DynamoDB transaction whose reason is not a
    /// failed condition (throttling, say) was taken for a duplicate.
    #[test]
    fn a_cancelled_transaction_is_not_a_failed_condition() {
        assert_eq!(kind_of("state write", "TransactionCanceledException"), ErrorKind::Unavailable);
        assert!(kind_of("state write", "TransactionCanceledException").is_retryable());
        assert_eq!(kind_of("state write", "ConditionalCheckFailedException"), ErrorKind::PreconditionFailed);
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(kind_of("queue extend", "ReceiptHandleIsInvalid"), ErrorKind::PreconditionFailed);
        assert_eq!(kind_of("state get", "InvalidParameterValue"), ErrorKind::Unavailable);
        assert_eq!(kind_of("blob put", "SlowDown"), ErrorKind::Throttled);
        assert_eq!(kind_of("state write", "ValidationException"), ErrorKind::InvalidInput);
        assert_eq!(kind_of("blob get", "NoSuchKey"), ErrorKind::NotFound);
        assert_eq!(kind_of("queue send", "AccessDenied"), ErrorKind::Unauthorized);
    }
}
