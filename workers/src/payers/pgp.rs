//! OpenPGP encryption of outbound batches to a payer's public key (some
//! payers require `.pgp` files), with rPGP.

use pgp::composed::{Deserializable, MessageBuilder, SignedPublicKey};
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::types::KeyDetails;

/// A payer's public key, read from an ASCII-armored or binary file.
#[derive(Debug, Clone)]
pub struct Recipient {
    key: SignedPublicKey,
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    #[error("cannot read the payer's OpenPGP key file: {0}")]
    Read(String),
    #[error("the payer's OpenPGP key has no key that can encrypt")]
    NoEncryptionKey,
    #[error("OpenPGP encryption failed: {0}")]
    Encrypt(String),
}

impl Recipient {
    /// Reads and checks a public key file.
    pub fn load(path: &std::path::Path) -> Result<Recipient, PgpError> {
        let bytes = std::fs::read(path).map_err(|e| PgpError::Read(format!("{}: {}", path.display(), e.kind())))?;
        let key = if bytes.starts_with(b"-----BEGIN PGP") {
            SignedPublicKey::from_armor_single(std::io::Cursor::new(&bytes)).map(|(k, _)| k)
        } else {
            SignedPublicKey::from_bytes(std::io::Cursor::new(&bytes))
        }
        .map_err(|e| PgpError::Read(format!("{}: {e}", path.display())))?;
        key.verify_bindings().map_err(|e| PgpError::Read(format!("{}: {e}", path.display())))?;
        let r = Recipient { key };
        if !r.can_encrypt() {
            return Err(PgpError::NoEncryptionKey);
        }
        Ok(r)
    }

    fn can_encrypt(&self) -> bool {
        self.key.public_subkeys.iter().any(|k| k.algorithm().can_encrypt()) || self.key.algorithm().can_encrypt()
    }

    /// Encrypts `data` (AES-256, SEIPD v1: what every OpenPGP
    /// implementation in use reads) to the key's encryption subkey (or
    /// its primary key when that is the one that encrypts). Binary output.
    pub fn encrypt(&self, data: &[u8]) -> Result<Vec<u8>, PgpError> {
        let mut rng = rand::thread_rng();
        let mut builder =
            MessageBuilder::from_bytes("", data.to_vec()).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        match self.key.public_subkeys.iter().find(|k| k.algorithm().can_encrypt()) {
            Some(sub) => builder.encrypt_to_key(&mut rng, sub),
            None => builder.encrypt_to_key(&mut rng, &self.key),
        }
        .map_err(|e| PgpError::Encrypt(e.to_string()))?;
        builder.to_vec(&mut rng).map_err(|e| PgpError::Encrypt(e.to_string()))
    }
}
