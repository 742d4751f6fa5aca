//! TLS on the HTTP API and the MLLP listeners.
//!
//! - rustls with the aws-lc-rs provider named explicitly (the process links
//!   one provider today; naming it keeps a second one from making the
//!   builder ambiguous), TLS 1.3 and 1.2 only (rustls implements nothing
//!   older: a TLS 1.0/1.1 `ClientHello` is refused), and the provider's
//!   default suites, all AEAD with forward secrecy (ECDHE).
//! - The certificate chain, the key, the client CA bundle and the CRLs are
//!   PEM files. A missing, unreadable or mismatched file is an error naming
//!   the file and the problem; at start-up it stops `serve`.
//! - [`Tls::reload`] (on SIGHUP) builds a new configuration from the files
//!   and swaps it in for new handshakes; open connections keep theirs. A
//!   reload that fails keeps the old configuration and says why.
//! - A client that has not finished its handshake within
//!   `tls.handshake_timeout_ms` is disconnected (a slow or idle client
//!   cannot hold a connection slot by never finishing).

use arc_swap::ArcSwap;
use clearway_core::config::{ClientAuth, TlsConfig};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// The client certificate a connection presented, if any: its SHA-256
/// fingerprint (hex) and the partner it is bound to (a request extension
/// on HTTPS, looked up once per connection).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerCertificate {
    pub fingerprint: Option<String>,
    pub partner: Option<clearway_core::PartnerId>,
}

/// The fingerprint of the leaf certificate the client presented.
pub fn peer_fingerprint(stream: &TlsStream<TcpStream>) -> Option<String> {
    let (_, conn) = stream.get_ref();
    conn.peer_certificates().and_then(|c| c.first()).map(|leaf| clearway_core::crypto::sha256_hex(leaf.as_ref()))
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named in `[tls]` is missing, unreadable or not what it should be.
    #[error("{path}: {problem}")]
    File { path: String, problem: String },
    /// The files are readable but do not make a configuration (a key that
    /// does not match the certificate, a client CA bundle rustls refuses).
    #[error("{0}")]
    Config(String),
}

fn file_error(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::File { path: path.display().to_string(), problem: problem.into() }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        file_error(
            path,
            match e.kind() {
                std::io::ErrorKind::NotFound => "no such file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                k => format!("cannot read it ({k})"),
            },
        )
    })
}

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| file_error(path, format!("not a PEM file of {what}")))?;
    if certs.is_empty() {
        return Err(file_error(path, format!("no {what} in it (expected PEM \"BEGIN CERTIFICATE\" blocks)")));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|_| file_error(path, "no private key in it (expected PEM PKCS#8, PKCS#1 or SEC1)"))
}

fn crls(paths: &[std::path::PathBuf]) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let mut out = Vec::new();
    for path in paths {
        let bytes = read(path)?;
        let pem: Result<Vec<_>, _> = CertificateRevocationListDer::pem_slice_iter(&bytes).collect();
        match pem {
            Ok(list) if !list.is_empty() => out.extend(list),
            // Not PEM: a DER CRL (a SEQUENCE).
            _ if bytes.first() == Some(&0x30) => out.push(CertificateRevocationListDer::from(bytes)),
            _ => return Err(file_error(path, "not a CRL (PEM \"BEGIN X509 CRL\" or DER)")),
        }
    }
    Ok(out)
}

/// One DER element at the start of `b`: its tag, its contents and what
/// follows it. `None` when it does not fit (bounded: never reads past `b`).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7F);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The end of a certificate's validity (`notAfter`), as Unix seconds.
pub fn not_after(cert: &[u8]) -> Option<i64> {
    let (_, certificate, _) = der(cert).filter(|(t, _, _)| *t == 0x30)?;
    let (_, tbs, _) = der(certificate).filter(|(t, _, _)| *t == 0x30)?;
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer.
    if rest.first() == Some(&0xA0) {
        rest = der(rest)?.2;
    }
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (_, validity, _) = der(rest).filter(|(t, _, _)| *t == 0x30)?;
    let (_, _not_before, after) = der(validity)?;
    let (tag, time, _) = der(after)?;
    let text = std::str::from_utf8(time).ok().filter(|t| t.bytes().all(|b| b.is_ascii_digit() || b == b'Z'))?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if digits.len() == 12 => {
            let yy: i32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        0x18 if digits.len() == 14 => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2).and_then(|v| v.parse::<u8>().ok());
    let month = time::Month::try_from(n(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, n(2)?).ok()?;
    let at = date.with_hms(n(4)?, n(6)?, n(8)?).ok()?;
    Some(at.assume_utc().unix_timestamp())
}

/// A server configuration from the `[tls]` files, asking for client
/// certificates as `auth` says.
pub fn server_config(settings: &TlsConfig, auth: ClientAuth) -> Result<Option<ServerConfig>, TlsError> {
    let Some(files) = &settings.files else { return Ok(None) };
    let chain = certificates(&files.cert_file, "certificates")?;
    let expires_at = chain.first().and_then(|leaf| not_after(leaf.as_ref()));
    let key = private_key(&files.key_file)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(format!("TLS versions: {e}")))?;
    let builder = match (&files.client_ca_file, auth) {
        (Some(ca), auth) if auth != ClientAuth::None => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca, "CA certificates")? {
                roots.add(c).map_err(|e| file_error(ca, format!("a CA certificate rustls refuses: {e}")))?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .with_crls(crls(&files.crl_files)?);
            if auth == ClientAuth::Optional {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier.build().map_err(|e| TlsError::Config(format!("client certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, ClientAuth::Optional | ClientAuth::Required) => {
            return Err(TlsError::Config("client certificates are asked for but tls.client_ca_file is not set".into()));
        }
        _ => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => file_error(
            &files.key_file,
            format!("this key does not match the certificate in {}", files.cert_file.display()),
        ),
        other => file_error(&files.key_file, format!("unusable key: {other}")),
    })?;
    // When the served certificate expires (set only for a configuration
    // that is used): a gauge to alert on, and a warning inside 30 days.
    if let Some(at) = expires_at {
        metrics::gauge!("clearway_tls_certificate_expires_at_seconds").set(at as f64);
        let left_days = (at - time::OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        if left_days < 30 {
            tracing::warn!(days = left_days, file = %files.cert_file.display(), "the TLS certificate expires soon");
        }
    }
    Ok(Some(config))
}

/// A server configuration per way of asking for client certificates.
type Configs = Vec<(ClientAuth, Arc<ServerConfig>)>;

/// One server configuration per mode, or `None` without TLS files.
fn build(settings: &TlsConfig, modes: &[ClientAuth]) -> Result<Option<Configs>, TlsError> {
    let mut out = Vec::new();
    for m in modes {
        match server_config(settings, *m)? {
            Some(c) => out.push((*m, Arc::new(c))),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The live TLS configurations of this process's listeners: one per way
/// of asking for client certificates that a listener uses (`[tls]
/// client_auth`, or the listener's own).
pub struct Tls {
    current: ArcSwap<Configs>,
    settings: TlsConfig,
    modes: Vec<ClientAuth>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.settings.files).finish_non_exhaustive()
    }
}

/// Why a handshake failed (the label of
/// `clearway_tls_handshake_failures_total`).
fn failure_reason(e: &std::io::Error) -> &'static str {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(rustls::Error::PeerIncompatible(_)) => "incompatible",
        Some(rustls::Error::NoCertificatesPresented) => "no-client-certificate",
        Some(rustls::Error::InvalidCertificate(_)) => "bad-client-certificate",
        Some(rustls::Error::InvalidMessage(_)) => "not-tls",
        Some(rustls::Error::AlertReceived(_)) => "alert-received",
        Some(_) => "other",
        None if matches!(e.kind(), std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset) => "closed",
        None => "other",
    }
}

impl Tls {
    /// `Ok(None)` when `[tls]` names no certificate (plaintext). `modes`:
    /// the ways listeners ask for client certificates (the `[tls]` default
    /// is always included).
    pub fn from_config(settings: &TlsConfig, modes: &[ClientAuth]) -> Result<Option<Arc<Tls>>, TlsError> {
        let mut all = vec![settings.client_auth];
        for m in modes {
            if !all.contains(m) {
                all.push(*m);
            }
        }
        Ok(build(settings, &all)?
            .map(|c| Arc::new(Tls { current: ArcSwap::from_pointee(c), settings: settings.clone(), modes: all })))
    }

    /// Reads the files again and serves the new configuration to new
    /// handshakes; on error the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        match build(&self.settings, &self.modes) {
            Ok(Some(c)) => {
                self.current.store(Arc::new(c));
                metrics::counter!("clearway_tls_reloads_total", "outcome" => "ok").increment(1);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                metrics::counter!("clearway_tls_reloads_total", "outcome" => "failed").increment(1);
                Err(e)
            }
        }
    }

    /// Completes a server handshake within the configured timeout, asking
    /// for a client certificate as `auth` says (`None`: as `[tls]` says);
    /// `None` (and the connection dropped) when it fails.
    pub async fn accept(&self, tcp: TcpStream, auth: Option<ClientAuth>) -> Option<TlsStream<TcpStream>> {
        let auth = auth.unwrap_or(self.settings.client_auth);
        let configs = self.current.load();
        // Never a weaker configuration than the listener asks for.
        let Some(config) = configs.iter().find(|(m, _)| *m == auth).map(|(_, c)| c.clone()) else {
            metrics::counter!("clearway_tls_handshake_failures_total", "reason" => "other").increment(1);
            tracing::error!(?auth, "no TLS configuration for this listener's client_auth");
            return None;
        };
        let acceptor = TlsAcceptor::from(config);
        match tokio::time::timeout(self.settings.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                let reason = failure_reason(&e);
                metrics::counter!("clearway_tls_handshake_failures_total", "reason" => reason).increment(1);
                tracing::debug!(reason, "tls handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!("clearway_tls_handshake_failures_total", "reason" => "timeout").increment(1);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn not_after_of_a_certificate_and_never_a_panic_on_garbage() {
        // A self-signed certificate made with openssl (`-days 3650`), valid
        // to 2036-12-03 09:54:11 UTC (UTCTime; GeneralizedTime past 2049).
        let pem = "-----BEGIN CERTIFICATE-----\nMIIBgjCCASegAwIBAgIUWPrWrV8jCrgQmXKoAtAF6RhdHDUwCgYIKoZIzj0EAwIw\nFjEUMBIGA1UEAwwLZXhwaXJ5LXRlc3QwHhcNMjYxMjA2MDk1NDExWhcNMzYxMjAz\nMDk1NDExWjAWMRQwEgYDVQQDDAtleHBpcnktdGVzdDBZMBMGByqGSM49AgEGCCqG\nSM49AwEHA0IABF16O11cC78eQREbjQCBFVulCNreB5jYGl9lutaPTg0TNyQ3FH+7\nimatn4PbWaBUUrQgRwl6JfO+DmA+8zl/9mqjUzBRMB0GA1UdDgQWBBSzY1akM7Q3\nYbXEeaGV1WeNhS1k5TAfBgNVHSMEGDAWgBSzY1akM7Q3YbXEeaGV1WeNhS1k5TAP\nBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCqDCxoMdsOQurYvwhn\n5iMvqmw/7gyamkndLu4LTrHoAwIhALg7Pe6B4wYVFrfYqh7O9DMvpwMKSrhqltEn\nd84lfJQY\n-----END CERTIFICATE-----\n";
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let at = not_after(der.as_ref()).unwrap();
        assert_eq!(
            time::OffsetDateTime::from_unix_timestamp(at).unwrap().to_string(),
            "2036-12-03 9:54:11.0 +00:00:00"
        );
        for n in 0..der.as_ref().len() {
            let _ = not_after(&der.as_ref()[..n]);
        }
        assert_eq!(not_after(b""), None);
        // A validity time with a multi-byte character: no panic.
        let mut odd = der.as_ref().to_vec();
        if let Some(i) = odd.windows(13).position(|w| w == b"361203095411Z") {
            odd[i..i + 3].copy_from_slice("€".as_bytes());
            assert_eq!(not_after(&odd), None);
        }
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
