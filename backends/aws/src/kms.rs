//! Partner keys in AWS KMS ([`KeyService`]): a partner's key versions
//! wrapped by a KMS key of its own (`Encrypt`/`Decrypt` with the partner
//! and version as encryption context), so deleting that key erases the
//! partner's data for good. The key never leaves KMS; one `Decrypt` per
//! version per process every few seconds (the key ring's cache).

use crate::{CountCalls, sdk_err};
use aws_sdk_kms::primitives::Blob;
use clearway_core::keys::KeyService;
use clearway_core::{ErrorKind, PortError, PortResult};

#[derive(Debug, Clone)]
pub struct KmsKeyService {
    client: aws_sdk_kms::Client,
}

impl KmsKeyService {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        KmsKeyService {
            client: aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(sdk).interceptor(CountCalls).build(),
            ),
        }
    }

    /// Creates a symmetric key and returns its id: for development and
    /// tests (production keys come from Terraform, `partner_kms_keys`).
    pub async fn create_key(&self, description: &str) -> PortResult<String> {
        let out =
            self.client.create_key().description(description).send().await.map_err(|e| sdk_err("kms create key", e))?;
        out.key_metadata()
            .map(|m| m.key_id().to_string())
            .ok_or_else(|| PortError::new(ErrorKind::Internal, "kms create key: no key id"))
    }

    /// Points `alias` (`alias/…`) at a key: for development and tests.
    pub async fn create_alias(&self, alias: &str, key_id: &str) -> PortResult<()> {
        self.client
            .create_alias()
            .alias_name(alias)
            .target_key_id(key_id)
            .send()
            .await
            .map_err(|e| sdk_err("kms create alias", e))?;
        Ok(())
    }

    /// The key's state (`Enabled`, `PendingDeletion`, …), for tests.
    pub async fn key_state(&self, key_id: &str) -> PortResult<String> {
        let out = self.client.describe_key().key_id(key_id).send().await.map_err(|e| sdk_err("kms describe key", e))?;
        Ok(out.key_metadata().and_then(|m| m.key_state()).map(|s| s.as_str().to_string()).unwrap_or_default())
    }
}

fn context(pairs: &[(&str, String)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[async_trait::async_trait]
impl KeyService for KmsKeyService {
    async fn encrypt(&self, key_id: &str, plaintext: &[u8], ctx: &[(&str, String)]) -> PortResult<(Vec<u8>, String)> {
        let out = self
            .client
            .encrypt()
            .key_id(key_id)
            .plaintext(Blob::new(plaintext))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| sdk_err("kms encrypt", e))?;
        let ct = out
            .ciphertext_blob()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| PortError::new(ErrorKind::Internal, "kms encrypt: no ciphertext"))?;
        let arn = out.key_id().unwrap_or(key_id).to_string();
        Ok((ct, arn))
    }

    async fn decrypt(&self, key_id: &str, ciphertext: &[u8], ctx: &[(&str, String)]) -> PortResult<Vec<u8>> {
        let out = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(ciphertext))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| sdk_err("kms decrypt", e))?;
        out.plaintext()
            .map(|b| b.as_ref().to_vec())
            .ok_or_else(|| PortError::new(ErrorKind::Internal, "kms decrypt: no plaintext"))
    }

    async fn schedule_deletion(&self, key_id: &str, days: u32) -> PortResult<()> {
        // The key's id from its ARN: KMS takes either (a key is deleted in
        // its own account), and local emulators take only the id.
        let id = key_id.rsplit_once(":key/").map_or(key_id, |(_, id)| id);
        self.client
            .schedule_key_deletion()
            .key_id(id)
            .pending_window_in_days(days as i32)
            .send()
            .await
            .map_err(|e| sdk_err("kms schedule key deletion", e))?;
        Ok(())
    }
}
