//! The shared port conformance suites against a local AWS-protocol server
//! (`moto_server`), through the real SDK. `scripts/test` starts the server
//! and sets `CLEARWAY_TEST_AWS_ENDPOINT`; without it these tests fail
//! (they are the AWS lane, not optional).

mod common;

use clearway_aws::{DynamoStateStore, S3BlobStore, SnsNotifier, SqsWorkQueue};
use clearway_core::conformance;
use common::{config, unique};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_blob_store_conformance() {
    let c = config().await;
    let store = S3BlobStore::new(&c, &unique("clearway-test"), None);
    store.ensure_bucket().await.expect("bucket");
    conformance::blob_store(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_work_queue_conformance() {
    let c = config().await;
    let url = SqsWorkQueue::ensure(&c, &unique("clearway-test")).await.expect("queue");
    // SQS leases are whole seconds.
    conformance::work_queue(Arc::new(SqsWorkQueue::new(&c, &url)), Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_state_store_conformance() {
    let c = config().await;
    let store = DynamoStateStore::new(&c, &unique("clearway-test"), 4);
    store.ensure_table().await.expect("table");
    // The whole suite, races included: moto alone does not serialise
    // concurrent conditional writes (2 of 8 concurrent `attribute_not_exists`
    // puts of one key won), which DynamoDB does; `scripts/moto_server.py`,
    // which `scripts/test` runs, adds that atomicity to the emulator.
    conformance::state_store(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_notifier_conformance() {
    use aws_sdk_sqs::types::QueueAttributeName;
    let c = config().await;
    let topic = SnsNotifier::ensure(&c, &unique("clearway-test")).await.expect("topic");
    // A subscriber: an SQS queue with raw delivery, so message attributes
    // arrive as SQS message attributes.
    let url = SqsWorkQueue::ensure(&c, &unique("clearway-sub")).await.expect("queue");
    let sqs = aws_sdk_sqs::Client::new(&c);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue arn");
    let arn = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().expect("arn");
    let sns = aws_sdk_sns::Client::new(&c);
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .expect("subscribe");
    let seen: Arc<tokio::sync::Mutex<Vec<clearway_core::ports::Event>>> = Arc::default();
    let observe = {
        let (sqs, url, seen) = (sqs.clone(), url.clone(), seen.clone());
        move || {
            let (sqs, url, seen) = (sqs.clone(), url.clone(), seen.clone());
            async move {
                let out = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .message_attribute_names("All")
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .expect("receive");
                let mut seen = seen.lock().await;
                for m in out.messages() {
                    let attrs = m.message_attributes().cloned().unwrap_or_default();
                    let text = |k: &str| attrs.get(k).and_then(|v| v.string_value()).map(str::to_string);
                    let mut attributes = std::collections::BTreeMap::new();
                    for k in attrs.keys().filter(|k| *k != clearway_aws::topic::EVENT_ID_ATTRIBUTE) {
                        if let Some(v) = text(k) {
                            attributes.insert(k.clone(), v);
                        }
                    }
                    seen.push(clearway_core::ports::Event {
                        id: text(clearway_aws::topic::EVENT_ID_ATTRIBUTE).unwrap_or_default(),
                        attributes,
                        body: bytes::Bytes::from(m.body().unwrap_or_default().to_string()),
                    });
                }
                seen.clone()
            }
        }
    };
    conformance::notifier(Arc::new(SnsNotifier::new(&c, &topic)), observe).await;
}

/// The intake journal on AWS: the outbox pattern over S3, DynamoDB and
/// SQS keeps the journal's contract.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_journal_on_aws_conformance() {
    let c = config().await;
    let blobs = S3BlobStore::new(&c, &unique("clearway-journal"), None);
    blobs.ensure_bucket().await.expect("bucket");
    let state = DynamoStateStore::new(&c, &unique("clearway-journal"), 4);
    state.ensure_table().await.expect("table");
    let url = SqsWorkQueue::ensure(&c, &unique("clearway-journal")).await.expect("queue");
    let queue = SqsWorkQueue::new(&c, &url);
    // Batched, as `clearway serve` runs it.
    let journal = clearway_core::outbox::OutboxJournal::batched(
        Arc::new(blobs.clone()),
        Arc::new(state.clone()),
        Arc::new(queue.clone()),
    );
    conformance::intake_journal(Arc::new(journal), Arc::new(state), Arc::new(queue), Arc::new(blobs)).await;
}

/// A hot partner's items are spread over the configured shards (so one
/// partner cannot cap throughput at one DynamoDB partition's rate), and
/// its listings still come back whole, in order, page by page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_partitions_are_sharded_and_list_in_order() {
    use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
    let c = config().await;
    let name = unique("clearway-shards");
    let store = DynamoStateStore::new(&c, &name, 8);
    store.ensure_table().await.expect("table");
    let sks: Vec<String> = (0..60).map(|i| format!("tx-{i:04}")).collect();
    for chunk in sks.chunks(20) {
        let ops = chunk
            .iter()
            .map(|sk| WriteOp::Put {
                key: Key::new(Table::Transactions, "bigpartner", sk),
                value: bytes::Bytes::from(sk.clone()),
                expires_at: None,
                condition: Condition::NotExists,
                owner: None,
            })
            .collect();
        store.write(ops).await.expect("write");
    }
    // An unsharded table's partition keeps one key.
    store
        .write(vec![WriteOp::Put {
            key: Key::new(Table::Acks, "tx-0001", "999"),
            value: bytes::Bytes::from_static(b"ack"),
            expires_at: None,
            condition: Condition::None,
            owner: None,
        }])
        .await
        .expect("ack write");

    let raw = aws_sdk_dynamodb::Client::new(&c);
    let scan = raw.scan().table_name(&name).send().await.expect("scan");
    let pks: std::collections::BTreeSet<String> = scan
        .items()
        .iter()
        .filter_map(|i| i.get("pk").and_then(|v| v.as_s().ok()).cloned())
        .filter(|pk| pk.starts_with("transactions#bigpartner"))
        .collect();
    assert_eq!(pks.len(), 8, "60 items over 8 shards use every shard: {pks:?}");
    assert!(
        scan.items()
            .iter()
            .any(|i| i.get("pk").and_then(|v| v.as_s().ok()).map(String::as_str) == Some("acks#tx-0001"))
    );

    let mut listed = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.query(Table::Transactions, "bigpartner", after.as_deref(), 7).await.expect("query");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().map(|(k, _)| k.clone());
        listed.extend(page.into_iter().map(|(k, _)| k));
    }
    assert_eq!(listed, sks, "every item once, in sort-key order, across pages");
    let one = store.get(&Key::new(Table::Transactions, "bigpartner", "tx-0042")).await.expect("get");
    assert_eq!(one.expect("present").value, bytes::Bytes::from_static(b"tx-0042"));
}
