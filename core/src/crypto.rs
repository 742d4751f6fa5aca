//! Encryption at rest, API-key hashing and webhook signatures (aws-lc-rs).
//!
//! - Each partner has a 256-bit data key, stored only wrapped (AES-256-GCM)
//!   by the master key. Payloads are sealed with the partner's data key
//!   (AES-256-GCM, random 96-bit nonce) and the transaction id and partner
//!   id as associated data, so a ciphertext cannot be moved to another
//!   record unnoticed.
//! - API keys are 256 random bits; only their SHA-256 is stored.
//! - Webhook bodies are signed with HMAC-SHA256 over `timestamp.body`.

use crate::Sensitive;
use crate::error::{ErrorKind, PortError, PortResult};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{digest, hmac, rand};

/// The header of a payload sealed directly with a key (format 1).
pub(crate) const MAGIC: &[u8; 3] = b"CW1";
/// What sealing adds to a plaintext besides a header: nonce and tag.
pub(crate) const SEALED_OVERHEAD_BYTES: usize = NONCE_LEN + 16;

fn open_failed() -> PortError {
    PortError::new(ErrorKind::InvalidInput, "open sealed payload")
}

/// A 256-bit key. Debug never shows it. The AES key schedule is built
/// once, when the key is made, not per message.
#[derive(Clone)]
pub struct Key(Sensitive<[u8; 32]>, std::sync::Arc<std::sync::OnceLock<LessSafeKey>>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

impl Key {
    /// A fresh random key.
    pub fn generate() -> PortResult<Self> {
        let mut k = [0u8; 32];
        rand::fill(&mut k).map_err(|_| PortError::new(ErrorKind::Internal, "generate key"))?;
        Ok(Key::from_bytes(k))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Key(Sensitive::new(bytes), std::sync::Arc::new(std::sync::OnceLock::new()))
    }

    /// Reads a key written as 64 hex digits.
    pub fn from_hex(hex_text: &str) -> Option<Self> {
        let bytes = hex::decode(hex_text.trim()).ok()?;
        let arr: [u8; 32] = bytes.try_into().ok()?;
        Some(Key::from_bytes(arr))
    }

    pub(crate) fn expose_bytes(&self) -> &[u8; 32] {
        self.0.expose()
    }

    /// The key as 64 hex digits (for the master key file only).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.expose())
    }

    fn aead(&self) -> PortResult<&LessSafeKey> {
        if let Some(k) = self.1.get() {
            return Ok(k);
        }
        let k = UnboundKey::new(&AES_256_GCM, self.0.expose())
            .map_err(|_| PortError::new(ErrorKind::Internal, "load key"))?;
        Ok(self.1.get_or_init(|| LessSafeKey::new(k)))
    }

    /// Seals `plaintext` with associated data `aad`: `CW1 ‖ nonce ‖
    /// ciphertext ‖ tag`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        let mut out = Vec::with_capacity(MAGIC.len() + SEALED_OVERHEAD_BYTES + plaintext.len());
        out.extend_from_slice(MAGIC);
        self.seal_into(plaintext, aad, &mut out)?;
        Ok(out)
    }

    /// Appends `nonce ‖ ciphertext ‖ tag` (no header) to `out`.
    pub(crate) fn seal_into(&self, plaintext: &[u8], aad: &[u8], out: &mut Vec<u8>) -> PortResult<()> {
        let key = self.aead()?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).map_err(|_| PortError::new(ErrorKind::Internal, "seal: nonce"))?;
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| PortError::new(ErrorKind::Internal, "seal"))?;
        out.extend_from_slice(&body);
        Ok(())
    }

    /// Opens what [`Key::seal`] produced with the same `aad`. Tampering, a
    /// wrong key or wrong associated data fail with `InvalidInput`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        let rest = sealed.strip_prefix(MAGIC).ok_or_else(open_failed)?;
        self.open_raw(rest, aad)
    }

    /// Opens `nonce ‖ ciphertext ‖ tag` (no header).
    pub(crate) fn open_raw(&self, sealed: &[u8], aad: &[u8]) -> PortResult<Vec<u8>> {
        if sealed.len() < SEALED_OVERHEAD_BYTES {
            return Err(open_failed());
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| open_failed())?;
        let mut body = body.to_vec();
        let key = self.aead()?;
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut body)
            .map_err(|_| open_failed())?;
        let n = plain.len();
        body.truncate(n);
        Ok(body)
    }

    /// Wraps `data_key` with this (master) key, for storage.
    pub fn wrap(&self, data_key: &Key, partner: &str) -> PortResult<Vec<u8>> {
        self.seal(data_key.0.expose(), partner.as_bytes())
    }

    /// Unwraps a data key wrapped by [`Key::wrap`] for the same partner.
    pub fn unwrap_key(&self, wrapped: &[u8], partner: &str) -> PortResult<Key> {
        let raw = self.open(wrapped, partner.as_bytes())?;
        let arr: [u8; 32] = raw.try_into().map_err(|_| PortError::new(ErrorKind::InvalidInput, "unwrap data key"))?;
        Ok(Key::from_bytes(arr))
    }
}

/// A new API key: `cw_` and 43 characters of base64url (256 random bits).
pub fn new_api_key() -> PortResult<Sensitive<String>> {
    let mut k = [0u8; 32];
    rand::fill(&mut k).map_err(|_| PortError::new(ErrorKind::Internal, "generate api key"))?;
    Ok(Sensitive::new(format!("cw_{}", base64url(&k))))
}

/// Fills `out` from the system's secure random source.
pub fn random_bytes(out: &mut [u8]) -> PortResult<()> {
    rand::fill(out).map_err(|_| PortError::new(ErrorKind::Internal, "random bytes"))
}

/// The stored form of an API key: SHA-256, hex.
pub fn api_key_hash(key: &str) -> String {
    hex::encode(api_key_digest(key))
}

/// SHA-256 of an API key, as bytes (what [`api_key_hash`] writes in hex).
pub fn api_key_digest(key: &str) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, key.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// SHA-256 of content, hex (content-hash dedupe).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// HMAC-SHA256 over `timestamp.body`, hex: the webhook signature.
pub fn webhook_signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex::encode(ctx.sign().as_ref())
}

/// Constant-time comparison of a presented signature with the expected one.
pub fn verify_webhook_signature(secret: &[u8], timestamp: i64, body: &[u8], signature_hex: &str) -> bool {
    let Ok(tag) = hex::decode(signature_hex) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut msg = timestamp.to_string().into_bytes();
    msg.push(b'.');
    msg.extend_from_slice(body);
    hmac::verify(&key, &msg, &tag).is_ok()
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_detect_tampering() {
        let k = Key::generate().unwrap();
        let sealed = k.seal(b"ISA*00*...", b"tx1|acme").unwrap();
        assert_ne!(&sealed[3..], b"ISA*00*...");
        assert_eq!(k.open(&sealed, b"tx1|acme").unwrap(), b"ISA*00*...");
        assert!(k.open(&sealed, b"tx2|acme").is_err(), "other associated data");
        let mut bad = sealed.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(k.open(&bad, b"tx1|acme").is_err(), "tampered");
        assert!(Key::generate().unwrap().open(&sealed, b"tx1|acme").is_err(), "other key");
        assert!(k.open(b"CW1", b"").is_err());
    }

    #[test]
    fn data_keys_wrap_per_partner() {
        let master = Key::generate().unwrap();
        let data = Key::generate().unwrap();
        let wrapped = master.wrap(&data, "acme").unwrap();
        let back = master.unwrap_key(&wrapped, "acme").unwrap();
        assert_eq!(back.to_hex(), data.to_hex());
        assert!(master.unwrap_key(&wrapped, "other").is_err());
        assert!(!format!("{data:?}").contains(&data.to_hex()));
    }

    #[test]
    fn api_keys_and_signatures() {
        let k = new_api_key().unwrap();
        assert!(k.expose().starts_with("cw_") && k.expose().len() == 46);
        assert_eq!(api_key_hash(k.expose()).len(), 64);
        let sig = webhook_signature(b"secret", 1_700_000_000, b"{}");
        assert!(verify_webhook_signature(b"secret", 1_700_000_000, b"{}", &sig));
        assert!(!verify_webhook_signature(b"secret", 1_700_000_001, b"{}", &sig));
        assert!(!verify_webhook_signature(b"other", 1_700_000_000, b"{}", &sig));
        assert_eq!(base64url(b"\xff\xff\xff"), "____");
    }
}
