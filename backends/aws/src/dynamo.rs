//! [`StateStore`] on DynamoDB: one table, partition key `pk` (`<table>#<pk>`)
//! and sort key `sk`, the value in `v` (binary), the version in `ver`, the
//! expiry in `exp` (the table's TTL attribute).
//!
//! - Batches are `TransactWriteItems` (all or nothing, up to 100 items);
//!   every put is an update that sets the value and bumps the version,
//!   under the operation's condition (`attribute_not_exists`, or a version
//!   check); a failed condition is `PreconditionFailed`.
//! - DynamoDB deletes expired items lazily (up to days later), so an item
//!   whose `exp` has passed is treated as absent on every read and by
//!   every condition, whatever the table still holds.
//! - Reads are strongly consistent.
//! - **Write sharding.** Partitions keyed by a partner or payer
//!   (transactions, dedupe keys, the ack feed, dead letters, coverage,
//!   counters and the outbox) can be far hotter than one DynamoDB partition
//!   takes (about 1,000 writes/s per partition key), so their items are
//!   spread over `shards` partition keys, `<table>#<pk>#<n>` with `n` a
//!   stable hash of the sort key. A point read or write goes straight to its
//!   shard; a query asks every shard (concurrently) and merges by sort key,
//!   so listings keep their order and their cursors.

use crate::{now_secs, sdk_err};
use async_trait::async_trait;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement, KeyType,
    ScalarAttributeType, TransactWriteItem, Update,
};
use bytes::Bytes;
use clearway_core::ports::{
    Condition, Item, Key, MAX_QUERY_LIMIT, ScanPage, StateStore, Table, WriteOp, check_write_batch, parse_scan_cursor,
    scan_cursor,
};
use clearway_core::{ErrorKind, PortError, PortResult};
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    shards: u32,
}

/// Whether a table's partitions are spread over shards (those keyed by a
/// partner or payer, which a large one makes hot).
pub fn sharded(table: Table) -> bool {
    matches!(
        table,
        Table::Transactions
            | Table::Dedupe
            | Table::AckFeed
            | Table::DeadLetters
            | Table::Coverage
            | Table::Counters
            | Table::Changes
    )
}

/// FNV-1a: stable across processes and releases (the shard is part of the
/// stored key).
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl DynamoStateStore {
    /// The stored partition key of `key`.
    pub fn partition_key(&self, key: &Key) -> String {
        if self.shards > 1 && sharded(key.table) {
            format!("{}#{}#{}", key.table.name(), key.pk, stable_hash(&key.sk) % u64::from(self.shards))
        } else {
            format!("{}#{}", key.table.name(), key.pk)
        }
    }

    /// Every stored partition key a logical partition may use.
    fn partition_keys(&self, table: Table, partition: &str) -> Vec<String> {
        if self.shards > 1 && sharded(table) {
            (0..self.shards).map(|n| format!("{}#{partition}#{n}", table.name())).collect()
        } else {
            vec![format!("{}#{partition}", table.name())]
        }
    }

    fn key_attrs(&self, k: &Key) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".to_string(), AttributeValue::S(self.partition_key(k))),
            ("sk".to_string(), AttributeValue::S(k.sk.clone())),
        ])
    }
}

fn item_of(attrs: &HashMap<String, AttributeValue>, now: i64) -> Option<Item> {
    let expires_at = attrs.get("exp").and_then(|v| v.as_n().ok()).and_then(|n| n.parse::<i64>().ok());
    if expires_at.is_some_and(|e| e <= now) {
        return None;
    }
    let value = attrs.get("v").and_then(|v| v.as_b().ok()).map(|b| Bytes::copy_from_slice(b.as_ref()))?;
    let version = attrs.get("ver").and_then(|v| v.as_n().ok()).and_then(|n| n.parse().ok()).unwrap_or(1);
    Some(Item { value, version, expires_at })
}

/// The condition expression for `c` (with `:now` bound), or `None`.
fn condition(c: Condition, values: &mut HashMap<String, AttributeValue>, now: i64) -> Option<String> {
    match c {
        Condition::None => None,
        Condition::NotExists => {
            values.insert(":now".into(), AttributeValue::N(now.to_string()));
            Some("attribute_not_exists(pk) OR (attribute_exists(#exp) AND #exp <= :now)".into())
        }
        Condition::Version(v) => {
            values.insert(":now".into(), AttributeValue::N(now.to_string()));
            values.insert(":expect".into(), AttributeValue::N(v.to_string()));
            Some("#ver = :expect AND (attribute_not_exists(#exp) OR #exp > :now)".into())
        }
    }
}

impl DynamoStateStore {
    /// `shards`: how many partition keys a hot partition is spread over
    /// (1: none). Changing it re-addresses stored items, so it is fixed for
    /// a table's life.
    pub fn new(config: &aws_config::SdkConfig, table: &str, shards: u32) -> Self {
        DynamoStateStore { client: crate::dynamodb_client(config), table: table.to_string(), shards: shards.max(1) }
    }

    /// Creates the table (on-demand, with the TTL attribute) if it does not
    /// exist.
    pub async fn ensure_table(&self) -> PortResult<()> {
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(internal)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("sk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(internal)?,
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name("pk").key_type(KeyType::Hash).build().map_err(internal)?,
            )
            .key_schema(
                KeySchemaElement::builder().attribute_name("sk").key_type(KeyType::Range).build().map_err(internal)?,
            )
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e) == Some("ResourceInUseException") => {
                return Ok(());
            }
            Err(e) => return Err(sdk_err("state create table", e)),
        }
        let ttl = aws_sdk_dynamodb::types::TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name("exp")
            .build()
            .map_err(internal)?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send()
            .await
            .map_err(|e| sdk_err("state table ttl", e))?;
        Ok(())
    }

    fn transact_item(&self, op: &WriteOp, now: i64) -> PortResult<TransactWriteItem> {
        let mut values = HashMap::new();
        let mut names =
            HashMap::from([("#ver".to_string(), "ver".to_string()), ("#exp".to_string(), "exp".to_string())]);
        match op {
            WriteOp::Put { key, value, expires_at, condition: c, .. } => {
                let cond = condition(*c, &mut values, now);
                values.insert(":v".into(), AttributeValue::B(Blob::new(value.to_vec())));
                if !matches!(c, Condition::Version(_)) {
                    values.insert(":one".into(), AttributeValue::N("1".into()));
                }
                // A put over an absent or expired item starts at version 1.
                let version = match c {
                    Condition::NotExists => "#ver = :one".to_string(),
                    Condition::Version(v) => {
                        values.insert(":next".into(), AttributeValue::N((v + 1).to_string()));
                        "#ver = :next".to_string()
                    }
                    Condition::None => "#ver = if_not_exists(#ver, :zero) + :one".to_string(),
                };
                if matches!(c, Condition::None) {
                    values.insert(":zero".into(), AttributeValue::N("0".into()));
                }
                names.insert("#v".into(), "v".into());
                let mut update = format!("SET #v = :v, {version}");
                match expires_at {
                    Some(e) => {
                        values.insert(":exp".into(), AttributeValue::N(e.to_string()));
                        update.push_str(", #exp = :exp");
                    }
                    None => update.push_str(" REMOVE #exp"),
                }
                let mut u = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(self.key_attrs(key)))
                    .update_expression(update)
                    .set_expression_attribute_names(Some(names))
                    .set_expression_attribute_values(Some(values));
                if let Some(cond) = cond {
                    u = u.condition_expression(cond);
                }
                Ok(TransactWriteItem::builder().update(u.build().map_err(internal)?).build())
            }
            WriteOp::Delete { key, condition: c } => {
                let cond = condition(*c, &mut values, now);
                let mut d = Delete::builder().table_name(&self.table).set_key(Some(self.key_attrs(key)));
                if let Some(cond) = cond {
                    d = d
                        .condition_expression(cond)
                        .set_expression_attribute_names(Some(used(names, &values)))
                        .set_expression_attribute_values(Some(values));
                }
                Ok(TransactWriteItem::builder().delete(d.build().map_err(internal)?).build())
            }
            WriteOp::Check { key, condition: c } => {
                // A check of `None` always holds: checked as "the key
                // exists or not", which is always true.
                let cond = condition(*c, &mut values, now)
                    .unwrap_or_else(|| "attribute_not_exists(pk) OR attribute_exists(pk)".to_string());
                let mut cc = ConditionCheck::builder()
                    .table_name(&self.table)
                    .set_key(Some(self.key_attrs(key)))
                    .condition_expression(cond);
                if !values.is_empty() {
                    cc = cc
                        .set_expression_attribute_names(Some(used(names, &values)))
                        .set_expression_attribute_values(Some(values));
                }
                Ok(TransactWriteItem::builder().condition_check(cc.build().map_err(internal)?).build())
            }
        }
    }
}

/// DynamoDB refuses unused expression attribute names: keep those the
/// conditions use (they use both `#ver` and `#exp` whenever they bind
/// values).
fn used(names: HashMap<String, String>, values: &HashMap<String, AttributeValue>) -> HashMap<String, String> {
    let version_check = values.contains_key(":expect");
    names.into_iter().filter(|(k, _)| k == "#exp" || (k == "#ver" && version_check)).collect()
}

fn internal(e: impl std::error::Error + Send + Sync + 'static) -> PortError {
    PortError::with_cause(ErrorKind::Internal, "dynamodb request", e)
}

#[async_trait]
impl StateStore for DynamoStateStore {
    async fn get(&self, key: &Key) -> PortResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("state get", e))?;
        Ok(out.item().and_then(|i| item_of(i, now_secs())))
    }

    async fn write(&self, ops: Vec<WriteOp>) -> PortResult<()> {
        check_write_batch(&ops)?;
        let now = now_secs();
        let items: Vec<TransactWriteItem> =
            ops.iter().map(|op| self.transact_item(op, now)).collect::<PortResult<_>>()?;
        match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&e).unwrap_or("").to_string();
                let message = aws_sdk_dynamodb::error::ProvideErrorMetadata::message(&e).unwrap_or("").to_string();
                if code == "TransactionCanceledException" && message.contains("ConditionalCheckFailed") {
                    Err(PortError::precondition_failed("state write"))
                } else if code == "TransactionCanceledException" && message.contains("TransactionConflict") {
                    // A concurrent transaction on the same item: retryable.
                    Err(PortError::with_cause(ErrorKind::Unavailable, "state write: conflict", e))
                } else {
                    Err(sdk_err("state write", e))
                }
            }
        }
    }

    async fn query(
        &self,
        table: Table,
        partition: &str,
        after: Option<&str>,
        limit: usize,
    ) -> PortResult<Vec<(String, Item)>> {
        let limit = limit.clamp(1, MAX_QUERY_LIMIT);
        // Every sort key is after "" (and DynamoDB refuses an empty key
        // value).
        let after = after.filter(|a| !a.is_empty());
        let keys = self.partition_keys(table, partition);
        if let [only] = keys.as_slice() {
            return self.query_partition(only, after, limit).await;
        }
        let pages =
            futures_util::future::try_join_all(keys.iter().map(|k| self.query_partition(k, after, limit))).await?;
        let mut all: Vec<(String, Item)> = pages.into_iter().flatten().collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all.truncate(limit);
        Ok(all)
    }

    async fn scan(&self, table: Table, after: Option<&str>, limit: usize) -> PortResult<ScanPage> {
        let limit = limit.clamp(1, MAX_QUERY_LIMIT);
        // One DynamoDB Scan page over the whole (single) table, filtered to
        // this table's partitions; the cursor is DynamoDB's own.
        let start = match after.map(parse_scan_cursor) {
            Some(Some((pk, sk))) => Some(HashMap::from([
                ("pk".to_string(), AttributeValue::S(pk.to_string())),
                ("sk".to_string(), AttributeValue::S(sk.to_string())),
            ])),
            Some(None) => return Err(PortError::invalid_input("state scan: not a scan cursor")),
            None => None,
        };
        let page = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(pk, :table)")
            .expression_attribute_values(":table", AttributeValue::S(format!("{}#", table.name())))
            .limit(limit as i32)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| sdk_err("state scan", e))?;
        let now = now_secs();
        let mut items = Vec::new();
        for attrs in page.items() {
            let stored = attrs.get("pk").and_then(|v| v.as_s().ok());
            let sk = attrs.get("sk").and_then(|v| v.as_s().ok());
            let (Some(pk), Some(sk)) = (stored.and_then(|p| self.logical_partition(table, p)), sk) else { continue };
            if let Some(item) = item_of(attrs, now) {
                items.push((Key::new(table, pk, sk.as_str()), item));
            }
        }
        let next = page.last_evaluated_key().filter(|k| !k.is_empty()).and_then(|k| {
            let pk = k.get("pk").and_then(|v| v.as_s().ok())?;
            let sk = k.get("sk").and_then(|v| v.as_s().ok())?;
            Some(scan_cursor(pk, sk))
        });
        Ok(ScanPage { items, next })
    }
}

impl DynamoStateStore {
    /// The logical partition of a stored partition key of `table`.
    fn logical_partition<'a>(&self, table: Table, stored: &'a str) -> Option<&'a str> {
        let rest = stored.strip_prefix(table.name())?.strip_prefix('#')?;
        if self.shards > 1 && sharded(table) { rest.rsplit_once('#').map(|(pk, _)| pk) } else { Some(rest) }
    }

    /// Up to `limit` live items of one stored partition, in sort-key order.
    async fn query_partition(&self, pk: &str, after: Option<&str>, limit: usize) -> PortResult<Vec<(String, Item)>> {
        let now = now_secs();
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()))
                .limit(limit as i32)
                .set_exclusive_start_key(start.take());
            q = match after {
                Some(a) => q
                    .key_condition_expression("pk = :pk AND sk > :after")
                    .expression_attribute_values(":after", AttributeValue::S(a.to_string())),
                None => q.key_condition_expression("pk = :pk"),
            };
            let page = q.send().await.map_err(|e| sdk_err("state query", e))?;
            for attrs in page.items() {
                let Some(sk) = attrs.get("sk").and_then(|v| v.as_s().ok()) else { continue };
                if let Some(item) = item_of(attrs, now) {
                    out.push((sk.clone(), item));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
            match page.last_evaluated_key() {
                Some(k) if !k.is_empty() => start = Some(k.clone()),
                _ => return Ok(out),
            }
        }
    }
}
