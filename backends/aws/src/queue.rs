//! [`WorkQueue`] on SQS: batched sends (10 per call), long-poll receives,
//! lease = visibility timeout, `extend`/`release` by
//! ChangeMessageVisibility, batched deletes, the attempt count from
//! `ApproximateReceiveCount`. The queue's redrive policy (a dead-letter
//! queue after N receives) is set by Terraform and `clearway aws
//! bootstrap`; Clearway's own dead-lettering happens first, after
//! `workers.max_attempts`.
//!
//! SQS counts in whole seconds: a lease or wait is rounded up to the next
//! second (a lease of at least 1 s).

use crate::sdk_err;
use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use bytes::Bytes;
use clearway_core::ports::{
    MAX_LEASE, MAX_QUEUE_BATCH, MAX_RECEIVE_WAIT, QueueDepth, QueueMessage, Receipt, WorkQueue, check_send_batch,
};
use clearway_core::{ErrorKind, PortError, PortResult};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SqsWorkQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

fn whole_secs(d: Duration) -> i32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.min(i32::MAX as u64) as i32
}

impl SqsWorkQueue {
    pub fn new(config: &aws_config::SdkConfig, queue_url: &str) -> Self {
        SqsWorkQueue { client: crate::sqs_client(config), url: queue_url.to_string() }
    }

    /// Creates the queue (and returns its URL) if it does not exist.
    pub async fn ensure(config: &aws_config::SdkConfig, name: &str) -> PortResult<String> {
        let client = crate::sqs_client(config);
        let out = client.create_queue().queue_name(name).send().await.map_err(|e| sdk_err("queue create", e))?;
        out.queue_url().map(str::to_string).ok_or_else(|| PortError::new(ErrorKind::Internal, "queue create: no url"))
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn send(&self, bodies: &[Bytes]) -> PortResult<()> {
        check_send_batch(bodies)?;
        let mut entries = Vec::with_capacity(bodies.len());
        for (i, b) in bodies.iter().enumerate() {
            let body =
                std::str::from_utf8(b).map_err(|_| PortError::invalid_input("queue send: bodies are UTF-8 text"))?;
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "queue send", e))?,
            );
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_err("queue send", e))?;
        if !out.failed().is_empty() {
            return Err(PortError::new(ErrorKind::Unavailable, "queue send: some messages were not accepted"));
        }
        Ok(())
    }

    async fn receive(&self, max: usize, lease: Duration, wait: Duration) -> PortResult<Vec<QueueMessage>> {
        if max == 0 || max > MAX_QUEUE_BATCH || lease > MAX_LEASE || wait > MAX_RECEIVE_WAIT {
            return Err(PortError::invalid_input("queue receive: max 1-10, lease up to 12 h, wait up to 20 s"));
        }
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max as i32)
            .visibility_timeout(whole_secs(lease).max(1))
            .wait_time_seconds(whole_secs(wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| sdk_err("queue receive", e))?;
        let mut got = Vec::new();
        for m in out.messages() {
            let (Some(id), Some(receipt)) = (m.message_id(), m.receipt_handle()) else { continue };
            let attempt = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            got.push(QueueMessage {
                id: id.to_string(),
                receipt: Receipt(receipt.to_string()),
                body: Bytes::from(m.body().unwrap_or_default().to_string()),
                attempt,
            });
        }
        Ok(got)
    }

    async fn extend(&self, receipt: &Receipt, lease: Duration) -> PortResult<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(whole_secs(lease.min(MAX_LEASE)))
            .send()
            .await
            .map_err(|e| sdk_err("queue extend", e))?;
        Ok(())
    }

    async fn extend_many(&self, receipts: &[Receipt], lease: Duration) -> PortResult<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        if receipts.len() > MAX_QUEUE_BATCH {
            return Err(PortError::invalid_input("queue extend: at most 10 receipts"));
        }
        let secs = whole_secs(lease.min(MAX_LEASE));
        let mut entries = Vec::with_capacity(receipts.len());
        for (i, r) in receipts.iter().enumerate() {
            entries.push(
                aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(&r.0)
                    .visibility_timeout(secs)
                    .build()
                    .map_err(|e| PortError::with_cause(ErrorKind::Internal, "queue extend", e))?,
            );
        }
        // Per-entry failures are stale receipts (redelivered elsewhere):
        // skipped, as the contract says.
        self.client
            .change_message_visibility_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_err("queue extend", e))?;
        Ok(())
    }

    async fn release(&self, receipt: &Receipt) -> PortResult<()> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(0)
            .send()
            .await
            .map_err(|e| sdk_err("queue release", e))?;
        Ok(())
    }

    async fn ack(&self, receipts: &[Receipt]) -> PortResult<()> {
        if receipts.is_empty() || receipts.len() > MAX_QUEUE_BATCH {
            return Err(PortError::invalid_input("queue ack: 1 to 10 receipts"));
        }
        let entries: Vec<DeleteMessageBatchRequestEntry> = receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(&r.0).build().ok()
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_err("queue ack", e))?;
        if !out.failed().is_empty() {
            return Err(PortError::precondition_failed("queue ack: stale receipt"));
        }
        Ok(())
    }

    async fn depth(&self) -> PortResult<QueueDepth> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_err("queue depth", e))?;
        let get = |n: QueueAttributeName| {
            out.attributes().and_then(|a| a.get(&n)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        };
        Ok(QueueDepth {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }
}
