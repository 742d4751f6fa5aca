//! [`BlobStore`] on S3.
//!
//! - `put` is a conditional write (`If-None-Match: *`): an existing key is
//!   refused with `AlreadyExists`, never overwritten. Each put carries a
//!   SHA-256 checksum that S3 verifies, and the configured server-side
//!   encryption (SSE-KMS with a key id, else S3's default).
//! - `get` checks the object's size before reading it.
//! - Keys are Clearway's `BlobKey`s: partner, date and transaction id,
//!   never PHI.

use crate::sdk_err;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ServerSideEncryption};
use bytes::Bytes;
use clearway_core::ports::{BlobStore, MAX_BLOB_BYTES};
use clearway_core::{BlobKey, ErrorKind, PortError, PortResult};

#[derive(Debug, Clone)]
pub struct S3BlobStore {
    client: aws_sdk_s3::Client,
    bucket: String,
    kms_key_id: Option<String>,
}

impl S3BlobStore {
    pub fn new(config: &aws_config::SdkConfig, bucket: &str, kms_key_id: Option<String>) -> Self {
        S3BlobStore { client: crate::s3_client(config), bucket: bucket.to_string(), kms_key_id }
    }

    /// Creates the bucket if it does not exist (for `clearway aws
    /// bootstrap` and tests; production buckets come from Terraform).
    pub async fn ensure_bucket(&self) -> PortResult<()> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e).unwrap_or("").to_string();
                if code == "BucketAlreadyOwnedByYou" || code == "BucketAlreadyExists" {
                    Ok(())
                } else {
                    Err(sdk_err("s3 create bucket", e))
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        if bytes.len() as u64 > MAX_BLOB_BYTES {
            return Err(PortError::invalid_input("blob put: object too large"));
        }
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .if_none_match("*")
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(bytes));
        if let Some(k) = &self.kms_key_id {
            req = req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if status == Some(412) || status == Some(409) {
                    // 412: the key exists; 409: a concurrent conditional put
                    // of the same key won.
                    Err(PortError::already_exists("blob put"))
                } else {
                    Err(sdk_err("blob put", e))
                }
            }
        }
    }

    async fn get(&self, key: &BlobKey, max_bytes: u64) -> PortResult<Bytes> {
        let out = match self.client.get_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(o) => o,
            Err(e) => {
                if e.raw_response().map(|r| r.status().as_u16()) == Some(404) {
                    return Err(PortError::not_found("blob get"));
                }
                return Err(sdk_err("blob get", e));
            }
        };
        if out.content_length().unwrap_or(0) as u64 > max_bytes {
            return Err(PortError::invalid_input("blob get: object larger than the bound"));
        }
        let data = out
            .body
            .collect()
            .await
            .map_err(|e| PortError::with_cause(ErrorKind::Unavailable, "blob get: read body", e))?;
        let bytes = data.into_bytes();
        if bytes.len() as u64 > max_bytes {
            return Err(PortError::invalid_input("blob get: object larger than the bound"));
        }
        Ok(bytes)
    }

    async fn exists(&self, key: &BlobKey) -> PortResult<bool> {
        match self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(_) => Ok(true),
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => Ok(false),
            Err(e) => Err(sdk_err("blob exists", e)),
        }
    }

    async fn list(&self, prefix: &str, after: Option<&BlobKey>, limit: usize) -> PortResult<Vec<BlobKey>> {
        clearway_core::ports::check_list_limit(limit)?;
        let mut req = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).max_keys(limit as i32);
        if let Some(a) = after {
            req = req.start_after(a.as_str());
        }
        let out = req.send().await.map_err(|e| sdk_err("blob list", e))?;
        // A key that is not a BlobKey would end a caller's paging early: an
        // error, not skipped.
        out.contents()
            .iter()
            .filter_map(|o| o.key())
            .take(limit)
            .map(|k| BlobKey::parse(k).ok_or_else(|| PortError::new(ErrorKind::Internal, "blob list: stored key")))
            .collect()
    }

    async fn replace(&self, key: &BlobKey, bytes: Bytes) -> PortResult<()> {
        if bytes.len() as u64 > MAX_BLOB_BYTES {
            return Err(PortError::invalid_input("blob replace: object too large"));
        }
        // S3 replaces an object atomically; the object must exist (an
        // `If-Match` on its ETag, so a deleted object is not brought back).
        let head = match self.client.head_object().bucket(&self.bucket).key(key.as_str()).send().await {
            Ok(h) => h,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => {
                return Err(PortError::not_found("blob replace"));
            }
            Err(e) => return Err(sdk_err("blob replace", e)),
        };
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .body(ByteStream::from(bytes));
        if let Some(etag) = head.e_tag() {
            req = req.if_match(etag);
        }
        if let Some(k) = &self.kms_key_id {
            req = req.server_side_encryption(ServerSideEncryption::AwsKms).ssekms_key_id(k);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_response().map(|r| r.status().as_u16()), Some(404 | 412)) => {
                Err(PortError::new(ErrorKind::PreconditionFailed, "blob replace: the object changed or went away"))
            }
            Err(e) => Err(sdk_err("blob replace", e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> PortResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| sdk_err("blob delete", e))?;
        Ok(())
    }
}
