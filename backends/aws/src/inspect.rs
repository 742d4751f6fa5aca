//! Everything the AWS backend has stored, as raw bytes: for tests and
//! diagnostics that must see what is at rest (that no plaintext PHI is
//! there), not what the ports return.

use crate::{dynamodb_client, s3_client, sdk_err};
use aws_sdk_dynamodb::types::AttributeValue;
use clearway_core::PortResult;
use clearway_core::config::AwsConfig;

/// Every object in the bucket and every item in the table (its keys and
/// value), each as `(where, bytes)`.
pub async fn raw_contents(sdk: &aws_config::SdkConfig, names: &AwsConfig) -> PortResult<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let s3 = s3_client(sdk);
    let mut token: Option<String> = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(&names.bucket)
            .set_continuation_token(token.take())
            .send()
            .await
            .map_err(|e| sdk_err("s3 list", e))?;
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let obj = s3.get_object().bucket(&names.bucket).key(key).send().await.map_err(|e| sdk_err("s3 get", e))?;
            let body = obj.body.collect().await.map_err(|e| {
                clearway_core::PortError::with_cause(clearway_core::ErrorKind::Unavailable, "s3 read", e)
            })?;
            out.push((format!("s3://{}/{key}", names.bucket), body.to_vec()));
        }
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let db = dynamodb_client(sdk);
    let mut start = None;
    loop {
        let page = db
            .scan()
            .table_name(&names.table)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| sdk_err("state scan", e))?;
        for item in page.items() {
            let mut bytes = Vec::new();
            for v in item.values() {
                match v {
                    AttributeValue::S(s) | AttributeValue::N(s) => bytes.extend_from_slice(s.as_bytes()),
                    AttributeValue::B(b) => bytes.extend_from_slice(b.as_ref()),
                    _ => {}
                }
                bytes.push(0);
            }
            out.push((format!("dynamodb://{}", names.table), bytes));
        }
        match page.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    Ok(out)
}
