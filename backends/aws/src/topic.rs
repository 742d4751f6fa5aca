//! [`Notifier`] on SNS: events published in batches (up to 10) with their
//! attributes (partner, kind, ...) as message attributes, so subscribers
//! can use filter policies, and the event's stable id as the `event_id`
//! attribute for subscriber-side dedupe (SNS itself may deliver twice).

use crate::sdk_err;
use async_trait::async_trait;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use clearway_core::ports::{Event, Notifier, check_publish_batch};
use clearway_core::{ErrorKind, PortError, PortResult};

/// The message attribute carrying an event's stable id.
pub const EVENT_ID_ATTRIBUTE: &str = "event_id";

#[derive(Debug, Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(config: &aws_config::SdkConfig, topic_arn: &str) -> Self {
        SnsNotifier { client: crate::sns_client(config), topic_arn: topic_arn.to_string() }
    }

    /// Creates the topic (and returns its ARN) if it does not exist.
    pub async fn ensure(config: &aws_config::SdkConfig, name: &str) -> PortResult<String> {
        let client = crate::sns_client(config);
        let out = client.create_topic().name(name).send().await.map_err(|e| sdk_err("topic create", e))?;
        out.topic_arn().map(str::to_string).ok_or_else(|| PortError::new(ErrorKind::Internal, "topic create: no arn"))
    }

    /// Finds an existing topic's ARN by name (no create permission
    /// needed).
    pub async fn find(config: &aws_config::SdkConfig, name: &str) -> PortResult<String> {
        let client = crate::sns_client(config);
        let suffix = format!(":{name}");
        let mut next: Option<String> = None;
        loop {
            let out =
                client.list_topics().set_next_token(next.take()).send().await.map_err(|e| sdk_err("topic list", e))?;
            if let Some(arn) = out.topics().iter().filter_map(|t| t.topic_arn()).find(|a| a.ends_with(&suffix)) {
                return Ok(arn.to_string());
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_string()),
                _ => return Err(PortError::new(ErrorKind::NotFound, "topic: no topic of that name")),
            }
        }
    }
}

fn string_attr(v: &str) -> PortResult<MessageAttributeValue> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .map_err(|e| PortError::with_cause(ErrorKind::Internal, "publish: attribute", e))
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, events: &[Event]) -> PortResult<()> {
        check_publish_batch(events)?;
        let mut entries = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let body =
                std::str::from_utf8(&e.body).map_err(|_| PortError::invalid_input("publish: bodies are UTF-8 JSON"))?;
            let mut b = PublishBatchRequestEntry::builder().id(format!("e{i}")).message(body);
            b = b.message_attributes(EVENT_ID_ATTRIBUTE, string_attr(&e.id)?);
            for (k, v) in &e.attributes {
                b = b.message_attributes(k, string_attr(v)?);
            }
            entries.push(b.build().map_err(|x| PortError::with_cause(ErrorKind::Internal, "publish", x))?);
        }
        let out = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await
            .map_err(|e| sdk_err("publish", e))?;
        if !out.failed().is_empty() {
            return Err(PortError::new(ErrorKind::Unavailable, "publish: some events were not accepted"));
        }
        Ok(())
    }
}
