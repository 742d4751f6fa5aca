//! A payer's SFTP server: key authentication, a pinned host key, uploads
//! under a temporary name renamed when whole (resumed after a crash),
//! listing, download and removal of the payer's answer files.

use clearway_core::config::SftpConfig;
use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh_sftp::client::SftpSession;
use russh_sftp::protocol::OpenFlags;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

/// What went wrong talking to the payer's server. Messages carry no file
/// contents, only names Clearway chose and the server's error kinds.
#[derive(Debug, thiserror::Error)]
pub enum SftpError {
    #[error("the payer's host key does not match the pinned key (presented {presented})")]
    HostKeyMismatch { presented: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("authentication refused for the configured user and key")]
    AuthRefused,
    #[error("private key: {0}")]
    Key(String),
    #[error("sftp: {0}")]
    Sftp(String),
    #[error("file larger than {0} bytes")]
    TooLarge(u64),
}

struct Pinned {
    pinned: String,
    /// The fingerprint presented when it did not match.
    mismatch: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &russh::keys::PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // A host certificate is not a pinned key: refused.
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) = Some("a host certificate".into());
            return Ok(false);
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        let ok = if self.pinned.starts_with("SHA256:") {
            self.pinned.trim() == fingerprint
        } else {
            // An OpenSSH public key line: compare algorithm and key data.
            let mut parts = self.pinned.split_whitespace();
            let (alg, data) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            key.to_openssh().is_ok_and(|line| {
                let mut p = line.split_whitespace();
                p.next() == Some(alg) && p.next() == Some(data)
            })
        };
        if !ok {
            *self.mismatch.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint);
        }
        Ok(ok)
    }
}

/// An open SFTP session.
pub struct Sftp {
    session: SftpSession,
    _handle: client::Handle<Pinned>,
    cfg: SftpConfig,
}

impl std::fmt::Debug for Sftp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sftp").field("host", &self.cfg.host).finish_non_exhaustive()
    }
}

fn sftp_err(e: impl std::fmt::Display) -> SftpError {
    SftpError::Sftp(e.to_string())
}

/// Joins a directory and a file name with `/`.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." { name.to_string() } else { format!("{}/{}", dir.trim_end_matches('/'), name) }
}

impl Sftp {
    /// Connects, checks the host key against the pinned one and
    /// authenticates with the configured key, all within `timeout`.
    pub async fn connect(cfg: &SftpConfig, timeout: Duration) -> Result<Sftp, SftpError> {
        tokio::time::timeout(timeout, Self::connect_inner(cfg, timeout))
            .await
            .map_err(|_| SftpError::Connect("timed out".into()))?
    }

    async fn connect_inner(cfg: &SftpConfig, timeout: Duration) -> Result<Sftp, SftpError> {
        let key = russh::keys::load_secret_key(&cfg.key_file, None).map_err(|e| SftpError::Key(e.to_string()))?;
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(60)),
            nodelay: true,
            ..Default::default()
        });
        let mismatch = Arc::new(std::sync::Mutex::new(None));
        let handler = Pinned { pinned: cfg.host_key.clone(), mismatch: mismatch.clone() };
        let mut handle = match client::connect(config, (cfg.host.as_str(), cfg.port), handler).await {
            Ok(h) => h,
            Err(e) => {
                if let Some(presented) = mismatch.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(SftpError::HostKeyMismatch { presented });
                }
                return Err(SftpError::Connect(e.to_string()));
            }
        };
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let auth = handle
            .authenticate_publickey(cfg.user.clone(), PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| SftpError::Connect(e.to_string()))?;
        if !auth.success() {
            return Err(SftpError::AuthRefused);
        }
        let channel = handle.channel_open_session().await.map_err(|e| SftpError::Connect(e.to_string()))?;
        channel.request_subsystem(true, "sftp").await.map_err(|e| SftpError::Connect(e.to_string()))?;
        let session = SftpSession::new(channel.into_stream()).await.map_err(sftp_err)?;
        session.set_timeout(timeout.as_secs().max(5));
        Ok(Sftp { session, _handle: handle, cfg: cfg.clone() })
    }

    /// Uploads `bytes` as `<upload_dir>/<name>`: written to
    /// `<name><temp_suffix>` (resumed from as much of it as agrees with
    /// `bytes` when a previous attempt was cut short), its size checked,
    /// then renamed. Returns false when `<name>` was already there
    /// (delivered before).
    pub async fn upload(&self, name: &str, bytes: &[u8]) -> Result<bool, SftpError> {
        let target = join(&self.cfg.upload_dir, name);
        if self.session.try_exists(target.clone()).await.map_err(sftp_err)? {
            return Ok(false);
        }
        let part = format!("{target}{}", self.cfg.temp_suffix);
        // What an earlier, interrupted attempt left: kept as far as it
        // agrees with the batch (writes may land out of order when a
        // connection dies, so the length alone proves nothing).
        let done = match self.session.metadata(part.clone()).await {
            Ok(m) if m.size.unwrap_or(0) > 0 && m.size.unwrap_or(0) <= bytes.len() as u64 => {
                let mut f = self.session.open(part.clone()).await.map_err(sftp_err)?;
                let mut have = Vec::with_capacity(m.size.unwrap_or(0) as usize);
                f.read_to_end(&mut have).await.map_err(sftp_err)?;
                have.iter().zip(bytes).take_while(|(a, b)| a == b).count() as u64
            }
            _ => 0,
        };
        let mut file = if done > 0 {
            let mut f = self.session.open_with_flags(part.clone(), OpenFlags::WRITE).await.map_err(sftp_err)?;
            f.seek(std::io::SeekFrom::Start(done)).await.map_err(sftp_err)?;
            f
        } else {
            self.session
                .open_with_flags(part.clone(), OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE)
                .await
                .map_err(sftp_err)?
        };
        if done > 0 {
            metrics::counter!("clearway_sftp_uploads_resumed_total").increment(1);
            tracing::info!(resumed_at_bytes = done, "resuming an interrupted upload");
        }
        for chunk in bytes[done as usize..].chunks(32 * 1024) {
            file.write_all(chunk).await.map_err(sftp_err)?;
        }
        file.flush().await.map_err(sftp_err)?;
        // fsync@openssh.com where the server has it.
        let _ = file.sync_all().await;
        file.shutdown().await.map_err(sftp_err)?;
        let size = self.session.metadata(part.clone()).await.map_err(sftp_err)?.size.unwrap_or(0);
        if size != bytes.len() as u64 {
            return Err(SftpError::Sftp(format!("uploaded {size} of {} bytes", bytes.len())));
        }
        self.session.rename(part, target).await.map_err(sftp_err)?;
        Ok(true)
    }

    /// Regular files in the download directory (name, size), skipping
    /// hidden files and files still being written (the temporary suffix).
    pub async fn list(&self) -> Result<Vec<(String, u64)>, SftpError> {
        let dir = if self.cfg.download_dir.is_empty() { ".".to_string() } else { self.cfg.download_dir.clone() };
        let mut out = Vec::new();
        for entry in self.session.read_dir(dir).await.map_err(sftp_err)? {
            let name = entry.file_name();
            let meta = entry.metadata();
            if name.starts_with('.') || name.ends_with(&self.cfg.temp_suffix) || !meta.is_regular() {
                continue;
            }
            out.push((name, meta.size.unwrap_or(0)));
        }
        out.sort();
        Ok(out)
    }

    /// Opens a file of the download directory, to read as it comes.
    pub async fn open_download(&self, name: &str) -> Result<russh_sftp::client::fs::File, SftpError> {
        self.session.open(join(&self.cfg.download_dir, name)).await.map_err(sftp_err)
    }

    /// Removes a file of the download directory.
    pub async fn remove(&self, name: &str) -> Result<(), SftpError> {
        self.session.remove_file(join(&self.cfg.download_dir, name)).await.map_err(sftp_err)
    }

    /// Uploads a file into the upload directory (an acknowledgement for the
    /// payer), as [`Sftp::upload`].
    pub async fn close(self) {
        let _ = self.session.close().await;
    }
}
