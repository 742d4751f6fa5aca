//! `clearway aws bootstrap`: creates what the AWS backend uses — the
//! payload bucket, the work queue and its dead-letter queue (with a redrive
//! policy), the acknowledgement topic, the state table (with TTL), and the
//! audit log's table and Object Lock bucket —
//! under the names the Terraform in `infra/` uses. Idempotent: what exists
//! is kept. For development and tests; production resources come from
//! Terraform.

use crate::{DynamoStateStore, S3BlobStore, SnsNotifier, SqsWorkQueue, sdk_err};
use aws_sdk_sqs::types::QueueAttributeName;
use clearway_core::config::AwsConfig;
use clearway_core::{ErrorKind, PortError, PortResult};

/// What exists after a bootstrap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub bucket: String,
    pub queue_url: String,
    pub dead_letter_queue_url: String,
    pub topic_arn: String,
    pub table: String,
}

/// Creates (or finds) every resource. `max_receives` is the queue's
/// redrive threshold: after that many receives SQS moves a message to the
/// dead-letter queue (set above Clearway's own `workers.max_attempts`, so
/// Clearway dead-letters first, with its reason).
pub async fn bootstrap(sdk: &aws_config::SdkConfig, names: &AwsConfig, max_receives: u32) -> PortResult<Resources> {
    S3BlobStore::new(sdk, &names.bucket, names.kms_key_id.clone()).ensure_bucket().await?;
    let dlq = SqsWorkQueue::ensure(sdk, &names.dead_letter_queue).await?;
    let queue = SqsWorkQueue::ensure(sdk, &names.queue).await?;
    let sqs = crate::sqs_client(sdk);
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| sdk_err("queue attributes", e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .ok_or_else(|| PortError::new(ErrorKind::Internal, "dead-letter queue: no arn"))?;
    let redrive = format!("{{\"deadLetterTargetArn\":\"{dlq_arn}\",\"maxReceiveCount\":\"{max_receives}\"}}");
    sqs.set_queue_attributes()
        .queue_url(&queue)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| sdk_err("queue redrive policy", e))?;
    let topic_arn = SnsNotifier::ensure(sdk, &names.topic).await?;
    DynamoStateStore::new(sdk, &names.table, names.partition_shards).ensure_table().await?;
    // The audit log's own table, and its checkpoint bucket under Object
    // Lock: GOVERNANCE mode for one day here (a bootstrap is for
    // development and tests; a COMPLIANCE bucket could not be emptied for
    // years), COMPLIANCE for six years from Terraform.
    DynamoStateStore::new(sdk, &names.audit_table, 1).ensure_table().await?;
    crate::audit::S3CheckpointArchive::new(sdk, &names.audit_bucket).ensure_bucket(false, 1).await?;
    Ok(Resources {
        bucket: names.bucket.clone(),
        queue_url: queue,
        dead_letter_queue_url: dlq,
        topic_arn,
        table: names.table.clone(),
    })
}
