//! Configuration: defaults, then a TOML file, then `CLEARWAY__SECTION__KEY`
//! environment variables. Parsed raw (unknown keys are errors), then
//! validated into typed values, reporting **every** problem at once.
//! Units are in the names (`_secs`, `_ms`, `_bytes`); secrets are
//! [`Sensitive`].

use crate::Sensitive;
use crate::edits::{Policy, Severity};
use crate::ids::PartnerId;
use crate::systems::{MessageFilter, OnError, Route, SystemDestination, SystemsConfig, Transport};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where (`server.listen`, `payers.ACME01.rate_per_sec`).
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), message: message.into() }
}

// ------------------------------------------------------------------ raw --

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    mllp: RawMllp,
    #[serde(default)]
    dedupe: RawDedupe,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default)]
    routing: RawRouting,
    #[serde(default)]
    payers: BTreeMap<String, RawPayer>,
    #[serde(default)]
    security: RawSecurity,
    #[serde(default)]
    backend: RawBackend,
    #[serde(default)]
    fastpath: RawFastpath,
    #[serde(default)]
    pharmacy: RawPharmacy,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    webhooks: RawWebhooks,
    /// Routes of HL7 v2 messages and FHIR resources to subscribed systems.
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    destinations: BTreeMap<String, RawDestination>,
    /// Claim edits: edit id = "reject" | "warn" | "off", plus the settings
    /// `duplicate_window_days` and `codeset_refresh_secs`.
    #[serde(default)]
    edits: BTreeMap<String, toml::Value>,
    /// Per-partner settings (`[partners.<id>.edits]`).
    #[serde(default)]
    partners: BTreeMap<String, RawPartner>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    analytics: RawAnalytics,
    #[serde(default)]
    telemetry: RawTelemetry,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    protocol: Option<String>,
    service_name: Option<String>,
    sample_ratio: Option<f64>,
    export_timeout_ms: Option<u64>,
    max_queue_spans: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalytics {
    export_every_secs: Option<u64>,
    destination: Option<String>,
    profile: Option<String>,
    retain_days: Option<u64>,
    tuva_snapshots: Option<bool>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    kms_key_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    submit_per_sec: Option<f64>,
    submit_burst: Option<u32>,
    realtime_per_sec: Option<f64>,
    realtime_burst: Option<u32>,
    read_per_sec: Option<f64>,
    read_burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartner {
    #[serde(default)]
    edits: BTreeMap<String, toml::Value>,
    /// ERA enrollment: payees whose 835s this partner receives, as
    /// `XX:<NPI>` or `FI:<TIN>`.
    era_payees: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<String>,
    max_body_bytes: Option<u64>,
    max_in_flight: Option<usize>,
    max_connections: Option<usize>,
    max_queue_depth: Option<u64>,
    request_timeout_secs: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    feed_settle_ms: Option<u64>,
    client_auth: Option<String>,
    console: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMllp {
    listen: Option<String>,
    partner: Option<String>,
    max_frame_bytes: Option<usize>,
    max_connections: Option<usize>,
    client_auth: Option<String>,
    /// More listeners, each bound to its own partner.
    #[serde(default)]
    listeners: Vec<RawMllpListener>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMllpListener {
    listen: Option<String>,
    partner: Option<String>,
    client_auth: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedupe {
    idempotency_window_secs: Option<u64>,
    interchange_window_secs: Option<u64>,
    message_window_secs: Option<u64>,
    content_window_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    concurrency: Option<usize>,
    lease_secs: Option<u64>,
    max_attempts: Option<u32>,
    backoff_base_ms: Option<u64>,
    backoff_max_ms: Option<u64>,
    clearinghouse_name: Option<String>,
    clearinghouse_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouting {
    outbox_dir: Option<String>,
    /// Route claims for payers not listed here to their own outbox
    /// directory (true, the default) or reject them (false).
    route_unknown_payers: Option<bool>,
    /// The clearinghouse in outbound 837s: ISA05/ISA06, GS02, 1000A
    /// NM109 (ETIN) and its PER contact.
    isa_qualifier: Option<String>,
    isa_id: Option<String>,
    gs_id: Option<String>,
    etin: Option<String>,
    contact_name: Option<String>,
    contact_email: Option<String>,
    contact_phone: Option<String>,
    /// Default `batch_window_secs` of every payer.
    batch_window_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSftp {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    key_file: Option<String>,
    /// The payer's host key as an OpenSSH public key line
    /// (`ssh-ed25519 AAAA…`) or its `SHA256:` fingerprint.
    host_key: Option<String>,
    upload_dir: Option<String>,
    download_dir: Option<String>,
    /// Suffix of a file while it uploads (renamed away when whole).
    temp_suffix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPayer {
    destination: Option<String>,
    url: Option<String>,
    rate_per_sec: Option<f64>,
    burst: Option<u32>,
    timeout_ms: Option<u64>,
    failure_threshold: Option<u32>,
    cooldown_secs: Option<u64>,
    concurrency: Option<usize>,
    cache_ttl_secs: Option<u64>,
    name: Option<String>,
    /// Other identifiers of this payer (an 834's N1*IN id is often the
    /// insurer's tax id, where a 270 names the payer id).
    aliases: Option<Vec<String>>,
    /// Where real-time eligibility is answered: `local` (the coverage
    /// store, the default) or `http` (forwarded to `connector_url`).
    connector: Option<String>,
    connector_url: Option<String>,
    /// Claim edit severities for this payer's claims.
    #[serde(default)]
    edits: BTreeMap<String, toml::Value>,
    /// The payer in outbound 837s: ISA07/ISA08, GS03, ISA15 and ISA14.
    isa_qualifier: Option<String>,
    isa_id: Option<String>,
    gs_id: Option<String>,
    usage: Option<String>,
    ack_requested: Option<bool>,
    /// When a batch closes: this many claims, this many bytes, or this
    /// long after its first claim arrived.
    batch_max_claims: Option<usize>,
    batch_max_bytes: Option<usize>,
    batch_window_secs: Option<u64>,
    /// How often the payer's answers are looked for.
    poll_secs: Option<u64>,
    sftp: Option<RawSftp>,
    /// The partner (API key) this payer posts its answer files with
    /// (`POST /v1/payer-files`).
    partner: Option<String>,
    /// Encrypt batches to this OpenPGP public key (`.pgp` files).
    pgp_public_key_file: Option<String>,
    /// HTTPS to this payer (connector, batch delivery): trust only these
    /// CAs (PEM) instead of the web PKI roots, and present this client
    /// certificate and key (PEM).
    tls_ca_file: Option<String>,
    tls_client_cert_file: Option<String>,
    tls_client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecurity {
    master_key: Option<String>,
    root_key_file: Option<String>,
    allow_root_key_in_data_dir: Option<bool>,
    audit_key_file: Option<String>,
    audit_key: Option<String>,
    audit_requests: Option<bool>,
    audit_move_every_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: Option<String>,
    bucket: Option<String>,
    queue: Option<String>,
    dead_letter_queue: Option<String>,
    topic: Option<String>,
    table: Option<String>,
    kms_key_id: Option<String>,
    partition_shards: Option<u32>,
    outbox_sweep_after_secs: Option<u64>,
    audit_table: Option<String>,
    audit_bucket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPharmacy {
    #[serde(default)]
    routes: Vec<RawPharmacyRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPharmacyRoute {
    bin: Option<String>,
    pcn: Option<String>,
    group: Option<String>,
    payer: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<String>,
    key_file: Option<String>,
    client_ca_file: Option<String>,
    crl_files: Option<Vec<String>>,
    client_auth: Option<String>,
    handshake_timeout_ms: Option<u64>,
    allow_plaintext: Option<bool>,
}

/// TLS towards partners' webhook URLs (`[webhooks]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhooks {
    tls_ca_file: Option<String>,
    tls_client_cert_file: Option<String>,
    tls_client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: Option<String>,
    partners: Option<Vec<String>>,
    messages: Option<Vec<String>>,
    facilities: Option<Vec<String>>,
    resources: Option<Vec<String>>,
    to: Option<Vec<String>>,
    on_error: Option<String>,
    on_reject: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDestination {
    /// `mllp`, `http` or `fhir`.
    kind: Option<String>,
    /// `host:port` (MLLP).
    address: Option<String>,
    /// The endpoint (HTTP) or base URL (FHIR).
    url: Option<String>,
    ack_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    rate_per_sec: Option<f64>,
    burst: Option<u32>,
    failure_threshold: Option<u32>,
    cooldown_secs: Option<u64>,
    max_queue: Option<u64>,
    max_attempts: Option<u32>,
    alarm_after_secs: Option<u64>,
    retry_max_ms: Option<u64>,
    /// MLLP over TLS (kind mllp).
    tls: Option<bool>,
    tls_ca_file: Option<String>,
    tls_client_cert_file: Option<String>,
    tls_client_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFastpath {
    timeout_ms: Option<u64>,
    cache_capacity: Option<u64>,
}

// ---------------------------------------------------------------- typed --

/// Which processes this instance runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Intake,
    Worker,
}

/// The backend: embedded default or AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Local,
    Aws(Box<AwsConfig>),
}

/// AWS resource names (the Terraform creates the same ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsConfig {
    pub bucket: String,
    pub queue: String,
    pub dead_letter_queue: String,
    pub topic: String,
    pub table: String,
    pub kms_key_id: Option<String>,
    pub partition_shards: u32,
    pub outbox_sweep_after: Duration,
    /// The audit log's own DynamoDB table.
    pub audit_table: String,
    /// The S3 bucket (Object Lock, COMPLIANCE) every audit checkpoint is
    /// also written to.
    pub audit_bucket: String,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub max_body_bytes: u64,
    pub max_in_flight: usize,
    /// Most open HTTPS connections (handshakes included); one more is
    /// closed at once. Plaintext HTTP (loopback, or TLS ended upstream)
    /// is bounded by the load balancer in front.
    pub max_connections: usize,
    pub max_queue_depth: u64,
    pub request_timeout: Duration,
    /// After a shutdown signal, how long before Clearway logs that work is
    /// still in progress. It keeps waiting: in-flight work is never cut off.
    pub shutdown_grace: Duration,
    /// How far behind the clock acknowledgement-feed readers stay for
    /// writers in other processes (`server.feed_settle_ms`; see
    /// [`crate::feed`]). `None` (not configured): as the deployment
    /// allows, [`ServerConfig::lone_writer`] says which.
    pub feed_settle: Option<Duration>,
    /// Set by `serve` when it is the only process writing to its feeds (a
    /// lone `serve` of every role on the embedded backend, holding the data
    /// directory's lock): no settle window is needed.
    pub lone_writer: bool,
    /// Client certificates on the HTTP listener (`server.client_auth`);
    /// `None`: as `[tls] client_auth` says.
    pub client_auth: Option<ClientAuth>,
    /// Serve the operator console under `/console` on the HTTP listener
    /// (`server.console`, default on).
    pub console: bool,
}

/// The settle window when several processes may write to the feeds.
pub const SHARED_FEED_SETTLE: Duration = Duration::from_millis(500);

impl ServerConfig {
    /// The settle window feed readers use: as configured; otherwise none
    /// for a lone writer and [`SHARED_FEED_SETTLE`] when other processes
    /// may write too.
    pub fn feed_settle(&self) -> Duration {
        self.feed_settle.unwrap_or(if self.lone_writer { Duration::ZERO } else { SHARED_FEED_SETTLE })
    }
}

#[derive(Debug, Clone)]
pub struct MllpConfig {
    pub listen: SocketAddr,
    /// The partner this listener's messages belong to; `None` disables it.
    pub partner: Option<PartnerId>,
    /// Further listeners (`[[mllp.listeners]]`), each bound to its own
    /// partner.
    pub listeners: Vec<MllpListener>,
    pub max_frame_bytes: usize,
    /// Per listener.
    pub max_connections: usize,
    /// Client certificates on the main listener (`mllp.client_auth`);
    /// `None`: as `[tls] client_auth` says.
    pub client_auth: Option<ClientAuth>,
}

/// One MLLP listener and the partner its messages belong to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpListener {
    pub listen: SocketAddr,
    pub partner: PartnerId,
    /// Client certificates on this listener; `None`: as `[tls]
    /// client_auth` says.
    pub client_auth: Option<ClientAuth>,
}

impl MllpConfig {
    /// Every enabled listener: the main one (when `mllp.partner` is set),
    /// then `[[mllp.listeners]]`.
    pub fn all_listeners(&self) -> Vec<MllpListener> {
        let main = self.partner.clone().map(|partner| MllpListener {
            listen: self.listen,
            partner,
            client_auth: self.client_auth,
        });
        main.into_iter().chain(self.listeners.iter().cloned()).collect()
    }
}

#[derive(Debug, Clone)]
pub struct DedupeConfig {
    pub idempotency_window: Duration,
    pub interchange_window: Duration,
    pub message_window: Duration,
    pub content_window: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub lease: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub clearinghouse_name: String,
    pub clearinghouse_id: String,
}

/// Where a payer's claims go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `<outbox_dir>/<payer>/` (answers are read from
    /// `<outbox_dir>/<payer>/from-payer/`).
    Outbox,
    /// Batches are POSTed (answers come by POST to `/v1/payer-files`).
    Http(String),
    /// Batches are uploaded to the payer's SFTP server, answers downloaded.
    Sftp(SftpConfig),
}

/// A payer's SFTP server (`[payers.ID.sftp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SftpConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// OpenSSH private key file (unencrypted; keep it mode 0600).
    pub key_file: PathBuf,
    /// The pinned host key: an OpenSSH public key line or a `SHA256:`
    /// fingerprint. A server presenting another key is refused.
    pub host_key: String,
    pub upload_dir: String,
    pub download_dir: String,
    pub temp_suffix: String,
}

/// How a payer's outbound 837s are addressed and batched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interchange {
    pub isa_qualifier: String,
    pub isa_id: String,
    pub gs_id: String,
    /// ISA15: `P` or `T`.
    pub usage: String,
    /// ISA14.
    pub ack_requested: bool,
    pub batch_max_claims: usize,
    pub batch_max_bytes: usize,
    pub batch_window: Duration,
    pub poll: Duration,
}

/// Where the fast path gets a payer's real-time answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connector {
    /// The coverage store (834 enrollments) and the recorded claims.
    Local,
    /// The payer's real-time endpoint: a 270 is POSTed, a 271 expected.
    Http(String),
}

#[derive(Debug, Clone)]
pub struct PayerConfig {
    pub id: String,
    pub name: Option<String>,
    pub destination: Destination,
    pub rate_per_sec: f64,
    pub burst: u32,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub cooldown: Duration,
    pub concurrency: usize,
    pub cache_ttl: Duration,
    /// Other identifiers that mean this payer.
    pub aliases: Vec<String>,
    pub connector: Connector,
    /// Claim edit severities for this payer's claims (`[payers.ID.edits]`).
    pub edits: EditOverrides,
    pub interchange: Interchange,
    /// The partner whose API key posts this payer's files.
    pub partner: Option<String>,
    /// The payer's OpenPGP public key: batches are encrypted to it.
    pub pgp_public_key_file: Option<PathBuf>,
    /// HTTPS to this payer: its CAs and our client certificate.
    pub tls: OutboundTls,
}

/// TLS settings for calling a payer over HTTPS (`[payers.ID] tls_*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundTls {
    /// Trust only these CAs (PEM) instead of the web PKI roots.
    pub ca_file: Option<PathBuf>,
    /// Present this client certificate chain and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

impl OutboundTls {
    pub fn is_default(&self) -> bool {
        self.ca_file.is_none() && self.client_cert.is_none()
    }
}

impl PayerConfig {
    /// The defaults applied to a payer not listed in the configuration.
    pub fn default_for(id: &str) -> Self {
        PayerConfig {
            id: id.to_string(),
            name: None,
            destination: Destination::Outbox,
            rate_per_sec: 1000.0,
            burst: 2000,
            timeout: Duration::from_secs(5),
            failure_threshold: 5,
            cooldown: Duration::from_secs(30),
            concurrency: 16,
            cache_ttl: Duration::from_secs(60),
            aliases: Vec::new(),
            connector: Connector::Local,
            edits: Vec::new(),
            interchange: Interchange {
                isa_qualifier: "ZZ".into(),
                isa_id: id.chars().take(15).collect(),
                gs_id: id.chars().take(15).collect(),
                usage: "P".into(),
                ack_requested: true,
                batch_max_claims: 5000,
                batch_max_bytes: 16 << 20,
                batch_window: Duration::from_secs(60),
                poll: Duration::from_secs(60),
            },
            partner: None,
            pgp_public_key_file: None,
            tls: OutboundTls::default(),
        }
    }
}

/// Edit id → severity, in the order configured.
pub type EditOverrides = Vec<(&'static str, Severity)>;

/// `[edits]` and the partners' edit settings.
#[derive(Debug, Clone)]
pub struct EditsConfig {
    /// Severities for every claim.
    pub overrides: EditOverrides,
    /// Per partner (`[partners.ID.edits]`).
    pub partners: BTreeMap<String, EditOverrides>,
    /// `duplicate.claim`: how far back an accepted claim makes a new one a
    /// duplicate (`duplicate_window_days`, default 90).
    pub duplicate_window: Duration,
    /// How often workers look for newly imported code-set releases
    /// (`codeset_refresh_secs`, default 30).
    pub codeset_refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct RoutingConfig {
    pub outbox_dir: PathBuf,
    pub route_unknown_payers: bool,
    /// The clearinghouse as sender of outbound 837s.
    pub sender: Sender,
    /// ERA enrollments: payee (`XX:<NPI>`, `FI:<TIN>`) → partner.
    pub era_payees: BTreeMap<String, String>,
    /// `batch_window_secs` of payers that do not set one.
    pub default_batch_window: Duration,
}

/// The clearinghouse as the sender of outbound 837s (`[routing]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    pub isa_qualifier: String,
    pub isa_id: String,
    pub gs_id: String,
    pub name: String,
    /// 1000A NM109 (qualifier 46).
    pub etin: String,
    pub contact_name: String,
    /// PER03: `EM` or `TE`; PER04.
    pub contact_qualifier: String,
    pub contact: String,
}

#[derive(Debug, Clone)]
pub struct FastpathConfig {
    pub timeout: Duration,
    pub cache_capacity: u64,
}

/// One pharmacy route: claims whose BIN (and PCN, and group, when given)
/// match go to `payer` (a PBM; its connector, limits and timeout are the
/// payer's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PharmacyRoute {
    pub bin: String,
    pub pcn: Option<String>,
    pub group: Option<String>,
    pub payer: String,
}

/// The pharmacy switch path (`[pharmacy]`).
#[derive(Debug, Clone, Default)]
pub struct PharmacyConfig {
    pub routes: Vec<PharmacyRoute>,
}

impl PharmacyConfig {
    /// The payer for a BIN, PCN and group: the most specific matching route
    /// (BIN + PCN + group, then BIN + PCN, then BIN alone). `Err` with the
    /// reject code when none matches: `1` (no route for the BIN), `4` (the
    /// BIN is routed, not for this PCN), `6` (not for this group).
    pub fn route(&self, bin: &str, pcn: &str, group: Option<&str>) -> Result<&str, &'static str> {
        let same = |a: &Option<String>, b: &str| a.as_deref().is_none_or(|a| a.trim().eq_ignore_ascii_case(b.trim()));
        let for_pcn = || self.routes.iter().filter(|r| r.bin == bin && same(&r.pcn, pcn));
        if for_pcn().next().is_none() {
            return Err(if self.routes.iter().any(|r| r.bin == bin) { "4" } else { "1" });
        }
        for_pcn()
            .filter(|r| r.group.is_none() || group.is_some_and(|g| same(&r.group, g)))
            .max_by_key(|r| (r.pcn.is_some(), r.group.is_some()))
            .map(|r| r.payer.as_str())
            .ok_or("6")
    }
}

/// Whether listeners ask for client certificates (`[tls] client_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// A client may present one (verified when it does).
    Optional,
    /// A client must present one the configured CAs vouch for.
    Required,
}

/// TLS on the HTTP API and every MLLP listener (`[tls]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM: the server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM: the CAs client certificates are verified against.
    pub client_ca_file: Option<PathBuf>,
    /// PEM or DER: certificate revocation lists for client certificates.
    pub crl_files: Vec<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `None`: plaintext listeners.
    pub files: Option<TlsFiles>,
    pub client_auth: ClientAuth,
    /// A client that has not finished its handshake within this is
    /// disconnected.
    pub handshake_timeout: Duration,
    /// Plaintext listeners on addresses other than loopback are refused
    /// unless this says so (TLS terminated upstream by a load balancer).
    pub allow_plaintext: bool,
}

/// Where the root key of the key hierarchy comes from (`[security]`).
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// The root key itself (64 hex digits), from a secret: what processes
    /// on the AWS backend share. When set, no file is read.
    pub master_key: Option<Sensitive<String>>,
    /// The root key file (created, mode 0600, on first start). Defaults to
    /// `<data_dir>.root.key`, next to the data directory and not in it, so
    /// a copy of the data directory is not a copy of its key.
    pub root_key_file: PathBuf,
    /// Lets the root key live inside the data directory (development only;
    /// `serve` warns).
    pub allow_root_key_in_data_dir: bool,
    /// The audit log's signing key (its origin and an Ed25519 seed; created,
    /// mode 0600, on first use). Defaults to `<data_dir>.audit.key`: never
    /// inside the data directory, so whoever can rewrite the audit log
    /// there cannot re-sign it.
    pub audit_key_file: PathBuf,
    /// The audit signing key itself (the key file's contents: origin line,
    /// then 64 hex digits), from a secret store; takes the place of the
    /// file, so that every process of a deployment signs with one key.
    pub audit_key: Option<Sensitive<String>>,
    /// Whether `serve` records an audit event for every authenticated
    /// request (default true; off only to measure what auditing costs).
    pub audit_requests: bool,
    /// How often the events accepted submissions stage in their own commit
    /// are moved into the audit log (embedded backend; default 50 ms).
    pub audit_move_every: Duration,
}

/// `<data_dir>.root.key`: the data directory's name with `.root.key`, in
/// its parent directory.
/// A data directory of `.` or `..` is made absolute first, so the key is
/// still next to it rather than inside it.
pub fn default_root_key_file(data_dir: &std::path::Path) -> PathBuf {
    beside(data_dir, "root.key")
}

/// `<data_dir>.audit.key`, beside the data directory as the root key is.
pub fn default_audit_key_file(data_dir: &std::path::Path) -> PathBuf {
    beside(data_dir, "audit.key")
}

fn beside(data_dir: &std::path::Path, suffix: &str) -> PathBuf {
    let dir = if data_dir.file_name().is_some() { data_dir.to_path_buf() } else { normalized(data_dir) };
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "clearway".into());
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    parent.join(format!("{name}.{suffix}"))
}

/// An absolute form of `p` with `.` and `..` resolved lexically (files
/// need not exist).
fn normalized(p: &std::path::Path) -> PathBuf {
    let p = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Whether `path` is `dir` or under it, comparing absolute, normalised
/// forms (`.` and `..` resolved lexically, so files need not exist).
/// Symbolic links are followed where the paths exist.
pub fn inside(path: &std::path::Path, dir: &std::path::Path) -> bool {
    // The file may not exist yet: resolve its directory.
    let real = |p: &std::path::Path| -> PathBuf {
        if let Ok(c) = std::fs::canonicalize(p) {
            return c;
        }
        match (p.parent(), p.file_name()) {
            (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => {
                std::fs::canonicalize(parent).map(|c| c.join(name)).unwrap_or_else(|_| normalized(p))
            }
            _ => normalized(p),
        }
    };
    real(path).starts_with(real(dir)) || normalized(path).starts_with(normalized(dir))
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub mllp: MllpConfig,
    pub dedupe: DedupeConfig,
    pub workers: WorkerConfig,
    pub routing: RoutingConfig,
    pub payers: BTreeMap<String, PayerConfig>,
    pub security: SecurityConfig,
    pub backend: Backend,
    pub fastpath: FastpathConfig,
    pub edits: EditsConfig,
    pub pharmacy: PharmacyConfig,
    /// Routes and destinations for HL7 v2 and FHIR (`[[routes]]`,
    /// `[destinations.NAME]`).
    pub systems: SystemsConfig,
    pub tls: TlsConfig,
    /// TLS towards partners' webhook URLs (`[webhooks] tls_ca_file`,
    /// `tls_client_cert_file`, `tls_client_key_file`).
    pub webhooks_tls: OutboundTls,
    /// Per-caller request limits (`[limits]`).
    pub limits: LimitsConfig,
    /// The analytics export (`[analytics]`).
    pub analytics: AnalyticsConfig,
    /// Span export (`[telemetry]`).
    pub telemetry: TelemetryConfig,
}

/// Span export over OTLP (`[telemetry]`); see `clearway_core::telemetry`.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP traces URL (`http://127.0.0.1:4318/v1/traces`);
    /// `None`: spans are not exported (a caller's `traceparent` is still
    /// kept and passed on).
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the OTLP default) or `http/json`.
    pub protocol: OtlpProtocol,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces sampled (0 to 1); a caller's sampling decision
    /// in its `traceparent` is followed.
    pub sample_ratio: f64,
    /// Longest wait for the collector per export.
    pub export_timeout: Duration,
    /// Spans held for export; beyond it new spans are dropped (and
    /// counted), never waited for.
    pub max_queue_spans: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    HttpProtobuf,
    HttpJson,
}

/// The analytics export (`[analytics]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// How often `serve` exports; `None`: `serve` does not (0 in the file).
    pub export_every: Option<Duration>,
    /// A directory or `s3://bucket/prefix`; default `<data_dir>/analytics`.
    pub destination: String,
    /// How long sealed change batches are kept for other destinations and
    /// re-exports.
    pub retain: Duration,
    /// Whether exports write the day's Tuva snapshot once a day
    /// (`<destination>/tuva/<table>/snapshot_date=…/`).
    pub tuva_snapshots: bool,
    pub s3_endpoint: Option<String>,
    pub s3_region: Option<String>,
    /// SSE-KMS key for exports to S3.
    pub kms_key_id: Option<String>,
}

/// A token bucket's settings: `per_sec` requests a second on average, at
/// most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: u32,
}

/// Per-caller (partner or person) token buckets, one per route class:
/// over its rate a caller is answered `429` with `Retry-After`, and the
/// other callers do not notice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitsConfig {
    /// Submissions: `POST /v1/transactions`, payer files.
    pub submit: Rate,
    /// Real-time exchanges: eligibility, claim status, CORE, pharmacy.
    pub realtime: Rate,
    /// Everything else: reads, the feed, operator and audit routes.
    pub read: Rate,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let rate = |per_sec, burst| Rate { per_sec, burst };
        LimitsConfig { submit: rate(1000.0, 2000), realtime: rate(500.0, 1000), read: rate(1000.0, 2000) }
    }
}

impl Config {
    /// The claim edits' severities for one claim: the catalog's defaults,
    /// then `[edits]`, then the partner's, then the payer's.
    pub fn edit_policy(&self, partner: &str, payer: Option<&str>) -> Policy {
        let mut p = Policy::default().with(self.edits.overrides.iter().copied());
        if let Some(o) = self.edits.partners.get(partner) {
            p = p.with(o.iter().copied());
        }
        if let Some(payer) = payer.and_then(|id| self.payers.get(self.canonical_payer(id))) {
            p = p.with(payer.edits.iter().copied());
        }
        p
    }

    /// The payer's settings, or the defaults for an unlisted payer.
    pub fn payer(&self, id: &str) -> PayerConfig {
        let id = self.canonical_payer(id);
        self.payers.get(id).cloned().unwrap_or_else(|| {
            let mut p = PayerConfig::default_for(id);
            p.interchange.batch_window = self.routing.default_batch_window;
            p
        })
    }

    /// The configured payer id that `id` names (itself, or the payer that
    /// lists it among its aliases); `id` itself when no payer does.
    pub fn canonical_payer<'a>(&'a self, id: &'a str) -> &'a str {
        if self.payers.contains_key(id) {
            return id;
        }
        self.payers.values().find(|p| p.aliases.iter().any(|a| a == id)).map_or(id, |p| p.id.as_str())
    }
}

/// Environment variables that configure Clearway: `CLEARWAY__SECTION__KEY`
/// (payers: `CLEARWAY__PAYERS__<ID>__<KEY>`).
pub const ENV_PREFIX: &str = "CLEARWAY__";

/// Builds the configuration from an optional TOML text and an environment
/// map (passed in, never read from globals here).
pub fn load(file: Option<&str>, env: &HashMap<String, String>) -> Result<Config, Vec<ConfigError>> {
    let mut tree: toml::Table = match file {
        Some(text) => text.parse::<toml::Table>().map_err(|e| vec![err("config file", e.to_string())])?,
        None => toml::Table::new(),
    };
    let mut errors = Vec::new();
    let mut vars: Vec<(&String, &String)> = env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (k, v) in vars {
        let path: Vec<String> = k[ENV_PREFIX.len()..].split("__").map(|p| p.to_lowercase()).collect();
        if path.len() < 2 || path.iter().any(String::is_empty) {
            errors.push(err(k.as_str(), "expected CLEARWAY__SECTION__KEY"));
            continue;
        }
        // Payer ids keep their case.
        let path: Vec<String> = if (path[0] == "payers" || path[0] == "destinations") && path.len() == 3 {
            let original: Vec<&str> = k[ENV_PREFIX.len()..].split("__").collect();
            vec![path[0].clone(), original[1].to_string(), path[2].clone()]
        } else {
            path
        };
        let leaf = path.last().cloned().unwrap_or_default();
        set(&mut tree, &path, env_value(&leaf, v));
    }
    let raw: Raw = match toml::Value::Table(tree).try_into() {
        Ok(r) => r,
        Err(e) => {
            errors.push(err("config", e.to_string()));
            return Err(errors);
        }
    };
    let config = validate(raw, &mut errors);
    if errors.is_empty() { Ok(config) } else { Err(errors) }
}

/// Environment values are strings; keys that hold numbers or booleans (by
/// their names) are converted, everything else stays a string (so a
/// master key of only digits is not read as a number).
fn env_value(key: &str, v: &str) -> toml::Value {
    const NUMERIC: &[&str] = &[
        "_secs",
        "_ms",
        "_bytes",
        "_per_sec",
        "burst",
        "concurrency",
        "max_attempts",
        "threshold",
        "capacity",
        "shards",
        "max_connections",
        "max_in_flight",
        "max_queue_depth",
        "max_queue",
        "max_claims",
        "port",
        "_ratio",
        "_spans",
        "_days",
    ];
    const BOOLEAN: &[&str] = &[
        "route_unknown_payers",
        "ack_requested",
        "allow_plaintext",
        "allow_root_key_in_data_dir",
        "audit_requests",
        "tuva_snapshots",
        "console",
        "tls",
    ];
    if BOOLEAN.contains(&key)
        && let Ok(b) = v.parse::<bool>()
    {
        return toml::Value::Boolean(b);
    }
    if NUMERIC.iter().any(|s| key.ends_with(s)) {
        if let Ok(i) = v.parse::<i64>() {
            return toml::Value::Integer(i);
        }
        if let Ok(f) = v.parse::<f64>() {
            return toml::Value::Float(f);
        }
    }
    toml::Value::String(v.to_string())
}

fn set(tree: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut cur = tree;
    for p in parents {
        let entry = cur.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(t) = entry else { return };
        cur = t;
    }
    cur.insert(last.clone(), value);
}

fn addr(path: &str, v: Option<String>, default: &str, errors: &mut Vec<ConfigError>) -> SocketAddr {
    let text = v.unwrap_or_else(|| default.to_string());
    text.parse().unwrap_or_else(|_| {
        errors.push(err(path, format!("not a socket address (host:port): {text}")));
        default.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    })
}

fn positive<T: PartialOrd + Default + Copy>(path: &str, v: Option<T>, default: T, errors: &mut Vec<ConfigError>) -> T {
    let v = v.unwrap_or(default);
    if v <= T::default() {
        errors.push(err(path, "must be greater than zero"));
        return default;
    }
    v
}

fn secs(path: &str, v: Option<u64>, default: u64, errors: &mut Vec<ConfigError>) -> Duration {
    Duration::from_secs(positive(path, v, default, errors))
}

fn millis(path: &str, v: Option<u64>, default: u64, errors: &mut Vec<ConfigError>) -> Duration {
    Duration::from_millis(positive(path, v, default, errors))
}

/// Edit severities of a table (`path` names it in errors); other keys are
/// errors unless `settings` lists them.
fn edit_overrides(
    path: &str,
    table: &BTreeMap<String, toml::Value>,
    settings: &[&str],
    e: &mut Vec<ConfigError>,
) -> EditOverrides {
    let mut out = Vec::new();
    for (k, v) in table {
        if settings.contains(&k.as_str()) {
            continue;
        }
        let Some(id) = crate::edits::static_id(k) else {
            e.push(err(format!("{path}.{k}"), "not an edit id (see `clearway edits list`)"));
            continue;
        };
        match v.as_str().and_then(Severity::parse) {
            Some(s) => out.push((id, s)),
            None => e.push(err(format!("{path}.{k}"), "must be \"reject\", \"warn\" or \"off\"")),
        }
    }
    out
}

fn setting_u64(path: &str, v: Option<&toml::Value>, default: u64, e: &mut Vec<ConfigError>) -> u64 {
    match v {
        None => default,
        Some(toml::Value::Integer(i)) if *i > 0 => *i as u64,
        Some(_) => {
            e.push(err(path, "must be a whole number greater than zero"));
            default
        }
    }
}

fn validate(raw: Raw, e: &mut Vec<ConfigError>) -> Config {
    let data_dir = PathBuf::from(raw.server.data_dir.unwrap_or_else(|| "./var".into()));
    let server = ServerConfig {
        listen: addr("server.listen", raw.server.listen, "127.0.0.1:8080", e),
        max_body_bytes: positive("server.max_body_bytes", raw.server.max_body_bytes, 64 * 1024 * 1024, e),
        max_in_flight: positive("server.max_in_flight", raw.server.max_in_flight, 4096, e),
        max_connections: positive("server.max_connections", raw.server.max_connections, 10_000, e),
        max_queue_depth: positive("server.max_queue_depth", raw.server.max_queue_depth, 200_000, e),
        request_timeout: secs("server.request_timeout_secs", raw.server.request_timeout_secs, 60, e),
        shutdown_grace: secs("server.shutdown_grace_secs", raw.server.shutdown_grace_secs, 30, e),
        feed_settle: raw.server.feed_settle_ms.map(Duration::from_millis),
        lone_writer: false,
        data_dir: data_dir.clone(),
        client_auth: client_auth_of("server.client_auth", raw.server.client_auth.as_deref(), e),
        console: raw.server.console.unwrap_or(true),
    };
    let partner = raw.mllp.partner.and_then(|p| match PartnerId::new(&p) {
        Ok(id) => Some(id),
        Err(x) => {
            e.push(err("mllp.partner", x.to_string()));
            None
        }
    });
    let mut listeners = Vec::new();
    for (n, l) in raw.mllp.listeners.into_iter().enumerate() {
        let path = |k: &str| format!("mllp.listeners[{n}].{k}");
        let Some(text) = l.listen else {
            e.push(err(path("listen"), "required"));
            continue;
        };
        let listen = addr(&path("listen"), Some(text), "127.0.0.1:0", e);
        let client_auth = client_auth_of(&path("client_auth"), l.client_auth.as_deref(), e);
        match l.partner.as_deref().map(PartnerId::new) {
            Some(Ok(partner)) => listeners.push(MllpListener { listen, partner, client_auth }),
            Some(Err(x)) => e.push(err(path("partner"), x.to_string())),
            None => e.push(err(path("partner"), "required: each listener is bound to a partner")),
        }
    }
    let main_listen = addr("mllp.listen", raw.mllp.listen, "127.0.0.1:2575", e);
    let mut seen = std::collections::HashSet::new();
    let fixed = partner.iter().map(|_| main_listen).chain(listeners.iter().map(|l| l.listen));
    for a in fixed.filter(|a| a.port() != 0) {
        if !seen.insert(a) {
            e.push(err("mllp.listeners", format!("two listeners on {a}")));
        }
    }
    let mllp = MllpConfig {
        listen: main_listen,
        partner,
        listeners,
        max_frame_bytes: positive("mllp.max_frame_bytes", raw.mllp.max_frame_bytes, 32 * 1024 * 1024, e),
        max_connections: positive("mllp.max_connections", raw.mllp.max_connections, 256, e),
        client_auth: client_auth_of("mllp.client_auth", raw.mllp.client_auth.as_deref(), e),
    };
    let dedupe = DedupeConfig {
        idempotency_window: secs("dedupe.idempotency_window_secs", raw.dedupe.idempotency_window_secs, 24 * 3600, e),
        interchange_window: secs(
            "dedupe.interchange_window_secs",
            raw.dedupe.interchange_window_secs,
            30 * 24 * 3600,
            e,
        ),
        message_window: secs("dedupe.message_window_secs", raw.dedupe.message_window_secs, 30 * 24 * 3600, e),
        content_window: secs("dedupe.content_window_secs", raw.dedupe.content_window_secs, 30 * 24 * 3600, e),
    };
    let base = millis("workers.backoff_base_ms", raw.workers.backoff_base_ms, 500, e);
    let max = millis("workers.backoff_max_ms", raw.workers.backoff_max_ms, 60_000, e);
    if max < base {
        e.push(err("workers.backoff_max_ms", "must not be smaller than workers.backoff_base_ms"));
    }
    let lease = secs("workers.lease_secs", raw.workers.lease_secs, 60, e);
    if lease > Duration::from_secs(12 * 3600) {
        e.push(err("workers.lease_secs", "must be at most 43200 (12 hours)"));
    }
    let workers = WorkerConfig {
        concurrency: positive("workers.concurrency", raw.workers.concurrency, 8, e),
        lease,
        max_attempts: positive("workers.max_attempts", raw.workers.max_attempts, 5, e),
        backoff_base: base,
        backoff_max: max,
        clearinghouse_name: raw.workers.clearinghouse_name.unwrap_or_else(|| "CLEARWAY".into()),
        clearinghouse_id: raw.workers.clearinghouse_id.unwrap_or_else(|| "CLEARWAY".into()),
    };
    let isa_id = x12_id("routing.isa_id", raw.routing.isa_id, &workers.clearinghouse_id, 15, e);
    let (contact_qualifier, contact) = match (raw.routing.contact_email, raw.routing.contact_phone) {
        (_, Some(phone)) if !phone.is_empty() && phone.bytes().all(|b| b.is_ascii_digit()) => ("TE".into(), phone),
        (_, Some(_)) => {
            e.push(err("routing.contact_phone", "digits only (PER04 with qualifier TE)"));
            ("TE".into(), String::new())
        }
        (Some(mail), None) => ("EM".into(), mail),
        (None, None) => ("EM".into(), "edi@clearway.invalid".into()),
    };
    let mut era_payees = BTreeMap::new();
    for (id, p) in &raw.partners {
        for payee in p.era_payees.iter().flatten() {
            let ok = matches!(payee.split_once(':'), Some(("XX" | "FI" | "XV", v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()));
            if !ok {
                e.push(err(
                    format!("partners.{id}.era_payees"),
                    format!("{payee:?}: must be XX:<NPI>, FI:<TIN> or XV:<id>"),
                ));
            } else if let Some(other) = era_payees.insert(payee.clone(), id.clone()) {
                e.push(err(
                    format!("partners.{id}.era_payees"),
                    format!("{payee} is already enrolled to {other}: a payee's ERAs go to one partner"),
                ));
            }
        }
    }
    let routing = RoutingConfig {
        outbox_dir: raw.routing.outbox_dir.map(PathBuf::from).unwrap_or_else(|| data_dir.join("outbox")),
        route_unknown_payers: raw.routing.route_unknown_payers.unwrap_or(true),
        sender: Sender {
            isa_qualifier: x12_id("routing.isa_qualifier", raw.routing.isa_qualifier, "ZZ", 2, e),
            gs_id: x12_id("routing.gs_id", raw.routing.gs_id, &isa_id, 15, e),
            isa_id,
            name: workers.clearinghouse_name.clone(),
            etin: x12_id("routing.etin", raw.routing.etin, &workers.clearinghouse_id, 80, e),
            contact_name: raw.routing.contact_name.unwrap_or_else(|| "EDI SUPPORT".into()),
            contact_qualifier,
            contact,
        },
        era_payees,
        default_batch_window: secs("routing.batch_window_secs", raw.routing.batch_window_secs, 60, e),
    };
    let mut payers = BTreeMap::new();
    for (id, p) in raw.payers {
        let path = |k: &str| format!("payers.{id}.{k}");
        let d = PayerConfig::default_for(&id);
        if id.is_empty() || id.len() > 80 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            e.push(err(format!("payers.{id}"), "payer id must be 1-80 characters of letters, digits, '.', '_' or '-'"));
        }
        let destination = match (p.destination.as_deref(), p.url) {
            (Some("sftp"), url) => {
                if url.is_some() {
                    e.push(err(path("url"), "not used with destination sftp"));
                }
                match p.sftp {
                    Some(s) => Destination::Sftp(sftp_config(&id, s, e)),
                    None => {
                        e.push(err(
                            path("sftp"),
                            "required when destination is sftp ([payers.ID.sftp] host, user, key_file, host_key)",
                        ));
                        Destination::Outbox
                    }
                }
            }
            (None | Some("outbox"), None) => Destination::Outbox,
            (Some("http") | None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Destination::Http(url)
            }
            (Some("http") | None, Some(_)) => {
                e.push(err(path("url"), "must start with http:// or https://"));
                Destination::Outbox
            }
            (Some("http"), None) => {
                e.push(err(path("url"), "required when destination is http"));
                Destination::Outbox
            }
            (Some("outbox"), Some(_)) => {
                e.push(err(path("url"), "not used with destination outbox"));
                Destination::Outbox
            }
            (Some(other), _) => {
                e.push(err(path("destination"), format!("must be outbox, http or sftp, not {other}")));
                Destination::Outbox
            }
        };
        let connector = match (p.connector.as_deref(), p.connector_url) {
            (None | Some("local"), None) => Connector::Local,
            (Some("http"), Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                Connector::Http(url)
            }
            (Some("http"), Some(_)) => {
                e.push(err(path("connector_url"), "must start with http:// or https://"));
                Connector::Local
            }
            (Some("http"), None) => {
                e.push(err(path("connector_url"), "required when connector is http"));
                Connector::Local
            }
            (None | Some("local"), Some(_)) => {
                e.push(err(path("connector_url"), "only used with connector = \"http\""));
                Connector::Local
            }
            (Some(other), _) => {
                e.push(err(path("connector"), format!("must be local or http, not {other}")));
                Connector::Local
            }
        };
        let payer = PayerConfig {
            connector,
            id: id.clone(),
            name: p.name,
            destination,
            rate_per_sec: positive(&path("rate_per_sec"), p.rate_per_sec, d.rate_per_sec, e),
            burst: positive(&path("burst"), p.burst, d.burst, e),
            timeout: millis(&path("timeout_ms"), p.timeout_ms, 5000, e),
            failure_threshold: positive(&path("failure_threshold"), p.failure_threshold, d.failure_threshold, e),
            cooldown: secs(&path("cooldown_secs"), p.cooldown_secs, 30, e),
            concurrency: positive(&path("concurrency"), p.concurrency, d.concurrency, e),
            cache_ttl: secs(&path("cache_ttl_secs"), p.cache_ttl_secs, 60, e),
            aliases: p.aliases.unwrap_or_default(),
            edits: edit_overrides(&format!("payers.{id}.edits"), &p.edits, &[], e),
            interchange: {
                let di = &d.interchange;
                let isa_id = x12_id(&path("isa_id"), p.isa_id, &di.isa_id, 15, e);
                let usage = p.usage.unwrap_or_else(|| "P".into());
                if usage != "P" && usage != "T" {
                    e.push(err(path("usage"), "must be P (production) or T (test)"));
                }
                let batch_max_claims = positive(&path("batch_max_claims"), p.batch_max_claims, di.batch_max_claims, e);
                if batch_max_claims > 100_000 {
                    e.push(err(path("batch_max_claims"), "at most 100000"));
                }
                Interchange {
                    isa_qualifier: x12_id(&path("isa_qualifier"), p.isa_qualifier, "ZZ", 2, e),
                    gs_id: x12_id(&path("gs_id"), p.gs_id, &isa_id, 15, e),
                    isa_id,
                    usage,
                    ack_requested: p.ack_requested.unwrap_or(true),
                    batch_max_claims,
                    batch_max_bytes: positive(&path("batch_max_bytes"), p.batch_max_bytes, di.batch_max_bytes, e),
                    batch_window: match p.batch_window_secs {
                        Some(v) => secs(&path("batch_window_secs"), Some(v), 60, e),
                        None => routing.default_batch_window,
                    },
                    poll: secs(&path("poll_secs"), p.poll_secs, 60, e),
                }
            },
            partner: p.partner,
            pgp_public_key_file: p.pgp_public_key_file.map(PathBuf::from),
            tls: outbound_tls(&path, p.tls_ca_file, p.tls_client_cert_file, p.tls_client_key_file, e),
        };
        payers.insert(id, payer);
    }
    let master_key = raw.security.master_key.map(Sensitive::new);
    let allow_root_key_in_data_dir = raw.security.allow_root_key_in_data_dir.unwrap_or(false);
    let root_key_file =
        raw.security.root_key_file.map(PathBuf::from).unwrap_or_else(|| default_root_key_file(&data_dir));
    if master_key.is_none() && !allow_root_key_in_data_dir && inside(&root_key_file, &data_dir) {
        e.push(err(
            "security.root_key_file",
            "is inside server.data_dir: keep the root key apart from the data it protects \
             (or set security.allow_root_key_in_data_dir = true, for development only)",
        ));
    }
    let audit_key_file =
        raw.security.audit_key_file.map(PathBuf::from).unwrap_or_else(|| default_audit_key_file(&data_dir));
    if inside(&audit_key_file, &data_dir) {
        e.push(err(
            "security.audit_key_file",
            "is inside server.data_dir: whoever can rewrite the audit log there could re-sign it",
        ));
    }
    if let Some(k) = &master_key {
        let ok = k.expose().len() == 64 && k.expose().bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            e.push(err("security.master_key", "must be 64 hex digits"));
        }
    }
    let backend = match raw.backend.kind.as_deref().unwrap_or("local") {
        "local" => Backend::Local,
        "aws" => Backend::Aws(Box::new(AwsConfig {
            bucket: raw.backend.bucket.unwrap_or_else(|| "clearway-payloads".into()),
            queue: raw.backend.queue.unwrap_or_else(|| "clearway-work".into()),
            dead_letter_queue: raw.backend.dead_letter_queue.unwrap_or_else(|| "clearway-work-dlq".into()),
            topic: raw.backend.topic.unwrap_or_else(|| "clearway-acks".into()),
            table: raw.backend.table.unwrap_or_else(|| "clearway-state".into()),
            kms_key_id: raw.backend.kms_key_id,
            partition_shards: positive("backend.partition_shards", raw.backend.partition_shards, 8, e),
            outbox_sweep_after: secs("backend.outbox_sweep_after_secs", raw.backend.outbox_sweep_after_secs, 60, e),
            audit_table: raw.backend.audit_table.unwrap_or_else(|| "clearway-audit".into()),
            audit_bucket: raw.backend.audit_bucket.unwrap_or_else(|| "clearway-audit-checkpoints".into()),
        })),
        other => {
            e.push(err("backend.kind", format!("must be local or aws, not {other}")));
            Backend::Local
        }
    };
    let d = LimitsConfig::default();
    let mut rate = |class: &str, per_sec: Option<f64>, burst: Option<u32>, d: Rate| Rate {
        per_sec: positive(&format!("limits.{class}_per_sec"), per_sec, d.per_sec, e),
        burst: positive(&format!("limits.{class}_burst"), burst, d.burst, e),
    };
    let l = &raw.limits;
    let limits = LimitsConfig {
        submit: rate("submit", l.submit_per_sec, l.submit_burst, d.submit),
        realtime: rate("realtime", l.realtime_per_sec, l.realtime_burst, d.realtime),
        read: rate("read", l.read_per_sec, l.read_burst, d.read),
    };
    let a = &raw.analytics;
    match a.profile.as_deref().unwrap_or("limited") {
        "limited" => {}
        "identified" => e.push(err(
            "analytics.profile",
            "the identified profile is not available in this release; the export is the limited data set",
        )),
        other => e.push(err("analytics.profile", format!("must be limited, not {other}"))),
    }
    let analytics = AnalyticsConfig {
        export_every: match a.export_every_secs {
            Some(0) => None,
            v => Some(Duration::from_secs(v.unwrap_or(300))),
        },
        destination: a
            .destination
            .clone()
            .filter(|d| !d.trim().is_empty())
            .unwrap_or_else(|| data_dir.join("analytics").display().to_string()),
        retain: Duration::from_secs(positive("analytics.retain_days", a.retain_days, 35, e) * 86_400),
        tuva_snapshots: a.tuva_snapshots.unwrap_or(true),
        s3_endpoint: a.s3_endpoint.clone(),
        s3_region: a.s3_region.clone(),
        kms_key_id: a.kms_key_id.clone(),
    };
    let t = &raw.telemetry;
    let telemetry = TelemetryConfig {
        otlp_endpoint: match t.otlp_endpoint.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => Some(u.to_string()),
            Some(_) => {
                e.push(err("telemetry.otlp_endpoint", "must start with http:// or https:// (OTLP over HTTP)"));
                None
            }
        },
        protocol: match t.protocol.as_deref().unwrap_or("http/protobuf") {
            "http/protobuf" => OtlpProtocol::HttpProtobuf,
            "http/json" => OtlpProtocol::HttpJson,
            other => {
                e.push(err("telemetry.protocol", format!("must be http/protobuf or http/json, not {other}")));
                OtlpProtocol::HttpProtobuf
            }
        },
        service_name: match t.service_name.as_deref().map(str::trim) {
            None | Some("") => "clearway".into(),
            Some(n) => n.to_string(),
        },
        sample_ratio: match t.sample_ratio {
            None => 1.0,
            Some(r) if (0.0..=1.0).contains(&r) => r,
            Some(r) => {
                e.push(err("telemetry.sample_ratio", format!("must be between 0 and 1, not {r}")));
                1.0
            }
        },
        export_timeout: Duration::from_millis(positive("telemetry.export_timeout_ms", t.export_timeout_ms, 10_000, e)),
        max_queue_spans: positive("telemetry.max_queue_spans", t.max_queue_spans, 2048, e) as usize,
    };
    let fastpath = FastpathConfig {
        timeout: millis("fastpath.timeout_ms", raw.fastpath.timeout_ms, 2000, e),
        cache_capacity: positive("fastpath.cache_capacity", raw.fastpath.cache_capacity, 1_000_000, e),
    };
    const SETTINGS: &[&str] = &["duplicate_window_days", "codeset_refresh_secs"];
    let mut partners = BTreeMap::new();
    for (id, p) in &raw.partners {
        if let Err(x) = PartnerId::new(id) {
            e.push(err(format!("partners.{id}"), x.to_string()));
        }
        partners.insert(id.clone(), edit_overrides(&format!("partners.{id}.edits"), &p.edits, &[], e));
    }
    let days = setting_u64("edits.duplicate_window_days", raw.edits.get("duplicate_window_days"), 90, e);
    let refresh = setting_u64("edits.codeset_refresh_secs", raw.edits.get("codeset_refresh_secs"), 30, e);
    let edits = EditsConfig {
        overrides: edit_overrides("edits", &raw.edits, SETTINGS, e),
        partners,
        duplicate_window: Duration::from_secs(days * 86_400),
        codeset_refresh: Duration::from_secs(refresh),
    };
    let mut routes = Vec::new();
    for (n, r) in raw.pharmacy.routes.into_iter().enumerate() {
        let path = |k: &str| format!("pharmacy.routes[{n}].{k}");
        let bin = r.bin.unwrap_or_default();
        if bin.len() != 6 || !bin.bytes().all(|b| b.is_ascii_digit()) {
            e.push(err(path("bin"), "required: the six-digit BIN"));
        }
        let payer = r.payer.unwrap_or_default();
        if payer.trim().is_empty() {
            e.push(err(path("payer"), "required: the payer (PBM) that answers these claims"));
        }
        let blank = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        routes.push(PharmacyRoute { bin, pcn: blank(r.pcn), group: blank(r.group), payer });
    }
    let pharmacy = PharmacyConfig { routes };
    let systems = systems_config(raw.routes, raw.destinations, e);
    let tls = tls_config(raw.tls, e);
    let w = raw.webhooks;
    let webhooks_tls = outbound_tls(
        &|k: &str| format!("webhooks.{k}"),
        w.tls_ca_file,
        w.tls_client_cert_file,
        w.tls_client_key_file,
        e,
    );
    if mllp.client_auth.is_some() && mllp.partner.is_none() {
        e.push(err("mllp.client_auth", "only used with mllp.partner (the main listener)"));
    }
    // A listener's own client_auth needs what [tls] client_auth would.
    let overrides = std::iter::once(("server.client_auth".to_string(), server.client_auth))
        .chain(std::iter::once(("mllp.client_auth".to_string(), mllp.client_auth)))
        .chain(
            mllp.listeners.iter().enumerate().map(|(n, l)| (format!("mllp.listeners[{n}].client_auth"), l.client_auth)),
        );
    for (path, auth) in overrides {
        match (auth, &tls.files) {
            (Some(_), None) => e.push(err(path, "needs TLS: set tls.cert_file and tls.key_file")),
            (Some(a), Some(f)) if a != ClientAuth::None && f.client_ca_file.is_none() => {
                e.push(err(path, "asks for client certificates: set tls.client_ca_file"))
            }
            _ => {}
        }
    }
    Config {
        server,
        mllp,
        dedupe,
        workers,
        routing,
        payers,
        security: SecurityConfig {
            master_key,
            root_key_file,
            allow_root_key_in_data_dir,
            audit_key_file,
            audit_key: raw.security.audit_key.map(Sensitive::new),
            audit_requests: raw.security.audit_requests.unwrap_or(true),
            audit_move_every: Duration::from_millis(positive(
                "security.audit_move_every_ms",
                raw.security.audit_move_every_ms,
                50,
                e,
            )),
        },
        backend,
        fastpath,
        edits,
        pharmacy,
        systems,
        tls,
        webhooks_tls,
        limits,
        analytics,
        telemetry,
    }
}

fn tls_config(t: RawTls, e: &mut Vec<ConfigError>) -> TlsConfig {
    let path = |v: Option<String>| v.filter(|v| !v.trim().is_empty()).map(PathBuf::from);
    let (cert, key) = (path(t.cert_file), path(t.key_file));
    let files = match (cert, key) {
        (Some(cert_file), Some(key_file)) => Some(TlsFiles {
            cert_file,
            key_file,
            client_ca_file: path(t.client_ca_file.clone()),
            crl_files: t.crl_files.clone().unwrap_or_default().into_iter().map(PathBuf::from).collect(),
        }),
        (Some(_), None) => {
            e.push(err("tls.key_file", "required with tls.cert_file"));
            None
        }
        (None, Some(_)) => {
            e.push(err("tls.cert_file", "required with tls.key_file"));
            None
        }
        (None, None) => None,
    };
    let has_ca = t.client_ca_file.as_deref().is_some_and(|v| !v.trim().is_empty());
    let client_auth = match client_auth_of("tls.client_auth", t.client_auth.as_deref(), e) {
        None if has_ca => ClientAuth::Required,
        None => ClientAuth::None,
        Some(a) => a,
    };
    if client_auth != ClientAuth::None && !has_ca {
        e.push(err("tls.client_ca_file", "required when tls.client_auth asks for client certificates"));
    }
    if files.is_none() && (has_ca || t.crl_files.as_ref().is_some_and(|c| !c.is_empty())) {
        e.push(err("tls.cert_file", "client certificates need TLS: set tls.cert_file and tls.key_file"));
    }
    if t.crl_files.as_ref().is_some_and(|c| !c.is_empty()) && !has_ca {
        e.push(err("tls.crl_files", "only used with tls.client_ca_file"));
    }
    TlsConfig {
        files,
        client_auth,
        handshake_timeout: millis("tls.handshake_timeout_ms", t.handshake_timeout_ms, 10_000, e),
        allow_plaintext: t.allow_plaintext.unwrap_or(false),
    }
}

/// `tls_ca_file`, `tls_client_cert_file` and `tls_client_key_file` of a
/// payer or a destination (`path` makes each setting's path).
fn outbound_tls(
    path: &dyn Fn(&str) -> String,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    e: &mut Vec<ConfigError>,
) -> OutboundTls {
    OutboundTls {
        ca_file: ca.map(PathBuf::from),
        client_cert: match (cert, key) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            (None, None) => None,
            (Some(_), None) => {
                e.push(err(path("tls_client_key_file"), "required with tls_client_cert_file"));
                None
            }
            (None, Some(_)) => {
                e.push(err(path("tls_client_cert_file"), "required with tls_client_key_file"));
                None
            }
        },
    }
}

/// `none`, `optional` or `required`; `None` when not set.
fn client_auth_of(path: &str, v: Option<&str>, e: &mut Vec<ConfigError>) -> Option<ClientAuth> {
    match v {
        None => None,
        Some("none") => Some(ClientAuth::None),
        Some("optional") => Some(ClientAuth::Optional),
        Some("required") => Some(ClientAuth::Required),
        Some(other) => {
            e.push(err(path, format!("none, optional or required, not {other}")));
            None
        }
    }
}

/// Most destinations (`[destinations.NAME]`).
pub const MAX_DESTINATIONS: usize = 50;

fn systems_config(
    raw_routes: Vec<RawRoute>,
    raw_destinations: BTreeMap<String, RawDestination>,
    e: &mut Vec<ConfigError>,
) -> SystemsConfig {
    let mut destinations = Vec::new();
    for (name, d) in raw_destinations {
        let path = |k: &str| format!("destinations.{name}.{k}");
        if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            e.push(err(format!("destinations.{name}"), "a name is 1 to 64 letters, digits, '_', '-' or '.'"));
        }
        let http = |k: &str, v: Option<String>, e: &mut Vec<ConfigError>| match v {
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => u,
            Some(_) => {
                e.push(err(path(k), "must start with http:// or https://"));
                String::new()
            }
            None => {
                e.push(err(path(k), "required"));
                String::new()
            }
        };
        let transport = match d.kind.as_deref() {
            Some("mllp") => {
                let address = d.address.clone().unwrap_or_default();
                let ok = address
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    e.push(err(path("address"), "required: host:port of the MLLP server"));
                }
                if d.url.is_some() {
                    e.push(err(path("url"), "not used with kind mllp"));
                }
                Transport::Mllp { address, tls: d.tls.unwrap_or(false) }
            }
            Some("http") => Transport::Http { url: http("url", d.url, e) },
            Some("fhir") => Transport::Fhir { base: http("url", d.url, e).trim_end_matches('/').to_string() },
            other => {
                e.push(err(path("kind"), format!("must be mllp, http or fhir, not {}", other.unwrap_or("(missing)"))));
                Transport::Http { url: String::new() }
            }
        };
        if !matches!(transport, Transport::Mllp { .. }) && d.address.is_some() {
            e.push(err(path("address"), "only used with kind mllp"));
        }
        let tls = outbound_tls(&path, d.tls_ca_file, d.tls_client_cert_file, d.tls_client_key_file, e);
        let over_tls = match &transport {
            Transport::Mllp { tls, .. } => *tls,
            Transport::Http { url } | Transport::Fhir { base: url } => url.starts_with("https://"),
        };
        if d.tls.is_some() && !matches!(transport, Transport::Mllp { .. }) {
            e.push(err(path("tls"), "only used with kind mllp (HTTP takes TLS from an https:// URL)"));
        }
        if !tls.is_default() && !over_tls {
            e.push(err(path("tls_ca_file"), "TLS files need TLS: tls = true (MLLP) or an https:// URL"));
        }
        let rate_per_sec = d.rate_per_sec.unwrap_or(0.0);
        if !(rate_per_sec >= 0.0 && rate_per_sec.is_finite()) {
            e.push(err(path("rate_per_sec"), "0 (no limit) or more"));
        }
        destinations.push(SystemDestination {
            transport,
            ack_timeout: millis(&path("ack_timeout_ms"), d.ack_timeout_ms, 10_000, e),
            connect_timeout: millis(&path("connect_timeout_ms"), d.connect_timeout_ms, 5_000, e),
            rate_per_sec,
            burst: positive(&path("burst"), d.burst, 100, e),
            failure_threshold: positive(&path("failure_threshold"), d.failure_threshold, 5, e),
            cooldown: secs(&path("cooldown_secs"), d.cooldown_secs, 10, e),
            max_queue: positive(&path("max_queue"), d.max_queue, 1_000_000, e),
            max_attempts: d.max_attempts.unwrap_or(0),
            alarm_after: secs(&path("alarm_after_secs"), d.alarm_after_secs, 300, e),
            retry_max: millis(&path("retry_max_ms"), d.retry_max_ms, 30_000, e),
            tls,
            name,
        });
    }
    // Each destination a message goes to is one write in the intake commit.
    if destinations.len() > MAX_DESTINATIONS {
        e.push(err("destinations", format!("at most {MAX_DESTINATIONS} destinations")));
    }
    let mut routes = Vec::new();
    for (n, r) in raw_routes.into_iter().enumerate() {
        let path = |k: &str| format!("routes[{n}].{k}");
        let name = r.name.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| format!("route-{}", n + 1));
        let mut messages = Vec::new();
        for m in r.messages.unwrap_or_default() {
            match MessageFilter::parse(&m) {
                Some(f) => messages.push(f),
                None => e.push(err(path("messages"), format!("{m:?} is not a message type (ADT, ADT^A01, ADT^*, *)"))),
            }
        }
        let resources = r.resources.unwrap_or_default();
        for t in &resources {
            if !(t.len() <= 64
                && t.starts_with(|c: char| c.is_ascii_uppercase())
                && t.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                e.push(err(path("resources"), format!("{t:?} is not a FHIR resource type")));
            }
        }
        let to = r.to.unwrap_or_default();
        if to.is_empty() {
            e.push(err(path("to"), "required: the destinations this route delivers to"));
        }
        for d in &to {
            match destinations.iter().find(|x: &&SystemDestination| &x.name == d) {
                None => e.push(err(path("to"), format!("no destination named {d} ([destinations.{d}])"))),
                Some(x) => match &x.transport {
                    Transport::Mllp { .. } if !resources.is_empty() => {
                        e.push(err(path("to"), format!("{d} is an MLLP destination: it cannot take FHIR resources")))
                    }
                    Transport::Fhir { .. } if !messages.is_empty() => {
                        e.push(err(path("to"), format!("{d} is a FHIR server: it cannot take HL7 v2 messages")))
                    }
                    _ => {}
                },
            }
        }
        let policy = |k: &str, v: Option<String>, default: OnError, e: &mut Vec<ConfigError>| match v {
            None => default,
            Some(v) => OnError::parse(&v).unwrap_or_else(|| {
                e.push(err(path(k), "retry or dead-letter"));
                default
            }),
        };
        let on_error = policy("on_error", r.on_error, OnError::Retry, e);
        let on_reject = policy("on_reject", r.on_reject, OnError::DeadLetter, e);
        routes.push(Route {
            name,
            partners: r.partners.unwrap_or_default(),
            messages,
            facilities: r.facilities.unwrap_or_default(),
            resources,
            to,
            on_error,
            on_reject,
        });
    }
    SystemsConfig { routes, destinations }
}

/// An X12 identifier setting: 1 to `max` printable ASCII characters that
/// are none of the delimiters Clearway writes.
fn x12_id(path: &str, v: Option<String>, default: &str, max: usize, e: &mut Vec<ConfigError>) -> String {
    let v = v.unwrap_or_else(|| default.chars().take(max).collect());
    let ok =
        !v.trim().is_empty() && v.len() <= max && v.bytes().all(|b| (0x20..0x7F).contains(&b) && !b"*:^~".contains(&b));
    if !ok {
        e.push(err(path, format!("1 to {max} printable characters, none of * : ^ ~")));
    }
    v
}

fn sftp_config(id: &str, s: RawSftp, e: &mut Vec<ConfigError>) -> SftpConfig {
    let path = |k: &str| format!("payers.{id}.sftp.{k}");
    let mut required = |k: &str, v: Option<String>| {
        v.filter(|v| !v.trim().is_empty()).unwrap_or_else(|| {
            e.push(err(path(k), "required"));
            String::new()
        })
    };
    let host = required("host", s.host);
    let user = required("user", s.user);
    let key_file = PathBuf::from(required("key_file", s.key_file));
    let host_key = required("host_key", s.host_key);
    if !host_key.is_empty() && !host_key.starts_with("SHA256:") && host_key.split_whitespace().count() < 2 {
        e.push(err(path("host_key"), "an OpenSSH public key line (ssh-ed25519 AAAA…) or a SHA256: fingerprint"));
    }
    let temp_suffix = s.temp_suffix.unwrap_or_else(|| ".part".into());
    if temp_suffix.is_empty() || temp_suffix.contains('/') {
        e.push(err(path("temp_suffix"), "a non-empty file-name suffix"));
    }
    SftpConfig {
        host,
        port: s.port.unwrap_or(22),
        user,
        key_file,
        host_key,
        upload_dir: s.upload_dir.unwrap_or_else(|| "inbound".into()),
        download_dir: s.download_dir.unwrap_or_else(|| "outbound".into()),
        temp_suffix,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_may_ask_for_client_certificates_its_own_way() {
        let pki = "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\nclient_ca_file = \"ca.pem\"\n";
        let file = format!(
            "{pki}client_auth = \"optional\"\n[server]\nclient_auth = \"none\"\n[mllp]\npartner = \"lab\"\nclient_auth = \"required\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:2600\"\npartner = \"clinic\"\n"
        );
        let c = load(Some(&file), &HashMap::new()).unwrap();
        assert_eq!(c.tls.client_auth, ClientAuth::Optional);
        assert_eq!(c.server.client_auth, Some(ClientAuth::None));
        let modes: Vec<_> = c.mllp.all_listeners().iter().map(|l| l.client_auth).collect();
        assert_eq!(modes, vec![Some(ClientAuth::Required), None], "the second listener follows [tls]");
        // Without TLS, or asking for certificates without a CA, or a word
        // that is no mode: each reported with its path.
        let bad = "[server]\nclient_auth = \"required\"\n[mllp]\npartner = \"lab\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:2600\"\npartner = \"clinic\"\nclient_auth = \"sometimes\"\n";
        let paths: Vec<String> = load(Some(bad), &HashMap::new()).unwrap_err().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["mllp.listeners[0].client_auth", "server.client_auth"], "{paths:?}");
        let no_ca = "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n[mllp]\npartner = \"lab\"\nclient_auth = \"optional\"\n";
        let paths: Vec<String> = load(Some(no_ca), &HashMap::new()).unwrap_err().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec!["mllp.client_auth"]);
    }

    #[test]
    fn the_default_root_key_is_next_to_the_data_directory_not_in_it() {
        use std::path::Path;
        assert_eq!(default_root_key_file(Path::new("./var")), Path::new("./var.root.key"));
        assert_eq!(default_root_key_file(Path::new("/srv/clearway/")), Path::new("/srv/clearway.root.key"));
        for dir in [".", "./", "..", "var"] {
            let key = default_root_key_file(Path::new(dir));
            assert!(!inside(&key, Path::new(dir)), "{dir}: {}", key.display());
        }
        assert!(inside(Path::new("./var/master.key"), Path::new("var")));
        assert!(inside(Path::new("var/../var/k"), Path::new("./var/")));
        assert!(!inside(Path::new("./var.root.key"), Path::new("./var")));
        let tmp = std::env::temp_dir().join(format!("cw-inside-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("data")).unwrap();
        #[cfg(unix)]
        {
            // A link that leads into the data directory is inside it.
            let _ = std::fs::remove_file(tmp.join("keys"));
            std::os::unix::fs::symlink(tmp.join("data"), tmp.join("keys")).unwrap();
            assert!(inside(&tmp.join("keys/root.key"), &tmp.join("data")));
        }
        let _ = std::fs::remove_dir_all(&tmp);
    }

    #[test]
    fn defaults_without_file_or_env() {
        let c = load(None, &HashMap::new()).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(c.mllp.listen.to_string(), "127.0.0.1:2575");
        assert_eq!(c.dedupe.idempotency_window, Duration::from_secs(86_400));
        assert_eq!(c.workers.max_attempts, 5);
        assert_eq!(c.backend, Backend::Local);
    }

    #[test]
    fn environment_overrides_file() {
        let file = "[server]\nlisten = \"127.0.0.1:9000\"\n[payers.ACME01]\nrate_per_sec = 5.0\n";
        let env = HashMap::from([
            ("CLEARWAY__SERVER__LISTEN".to_string(), "0.0.0.0:9100".to_string()),
            ("CLEARWAY__WORKERS__MAX_ATTEMPTS".to_string(), "3".to_string()),
            ("CLEARWAY__PAYERS__ACME01__BURST".to_string(), "7".to_string()),
            ("OTHER".to_string(), "ignored".to_string()),
        ]);
        let c = load(Some(file), &env).unwrap();
        assert_eq!(c.server.listen.to_string(), "0.0.0.0:9100");
        assert_eq!(c.workers.max_attempts, 3);
        let p = &c.payers["ACME01"];
        assert_eq!((p.rate_per_sec, p.burst), (5.0, 7));
    }

    // Regression: CLEARWAY__SECURITY__AUDIT_REQUESTS=false was read as the
    // string "false" and refused ("expected a boolean").
    #[test]
    fn boolean_settings_come_from_the_environment() {
        let env = HashMap::from([("CLEARWAY__SECURITY__AUDIT_REQUESTS".to_string(), "false".to_string())]);
        assert!(!load(None, &env).unwrap().security.audit_requests);
        assert!(load(None, &HashMap::new()).unwrap().security.audit_requests, "on by default");
        // Regression: the same for CLEARWAY__ANALYTICS__TUVA_SNAPSHOTS.
        let env = HashMap::from([("CLEARWAY__ANALYTICS__TUVA_SNAPSHOTS".to_string(), "false".to_string())]);
        assert!(!load(None, &env).unwrap().analytics.tuva_snapshots);
        assert!(load(None, &HashMap::new()).unwrap().analytics.tuva_snapshots, "on by default");
    }

    /// Regression: numbers and booleans whose names the environment's
    /// typing did not know came in as text ("expected f64").
    #[test]
    fn every_numeric_and_boolean_setting_can_come_from_the_environment() {
        let env: HashMap<String, String> = [
            ("CLEARWAY__TELEMETRY__SAMPLE_RATIO", "0.1"),
            ("CLEARWAY__TELEMETRY__MAX_QUEUE_SPANS", "4096"),
            ("CLEARWAY__ANALYTICS__RETAIN_DAYS", "7"),
            ("CLEARWAY__SERVER__CONSOLE", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let c = load(None, &env).unwrap();
        assert_eq!((c.telemetry.sample_ratio, c.telemetry.max_queue_spans), (0.1, 4096));
        assert_eq!(c.analytics.retain, Duration::from_secs(7 * 86_400));
        assert!(!c.server.console);
        // A destination's `tls` too.
        let file = "[destinations.EHR]\nkind = \"mllp\"\naddress = \"ehr.local:6661\"\n\n[[routes]]\nmessages = [\"ADT\"]\nto = [\"EHR\"]\n";
        let env: HashMap<String, String> =
            [("CLEARWAY__DESTINATIONS__EHR__TLS".to_string(), "true".to_string())].into_iter().collect();
        let c = load(Some(file), &env).unwrap();
        assert!(matches!(c.systems.destinations[0].transport, Transport::Mllp { tls: true, .. }));
    }

    #[test]
    fn telemetry_settings_are_checked_together() {
        let t = load(None, &HashMap::new()).unwrap().telemetry;
        assert_eq!(
            (t.otlp_endpoint, t.protocol, t.service_name.as_str()),
            (None, OtlpProtocol::HttpProtobuf, "clearway")
        );
        assert_eq!((t.sample_ratio, t.max_queue_spans), (1.0, 2048));
        let good = "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318/v1/traces\"\nprotocol = \"http/json\"\nsample_ratio = 0.25\n";
        let t = load(Some(good), &HashMap::new()).unwrap().telemetry;
        assert_eq!(t.otlp_endpoint.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
        assert_eq!((t.protocol, t.sample_ratio), (OtlpProtocol::HttpJson, 0.25));
        let bad = "[telemetry]\notlp_endpoint = \"grpc://collector:4317\"\nprotocol = \"grpc\"\nsample_ratio = 2.0\nexport_timeout_ms = 0\n";
        let paths: Vec<String> = load(Some(bad), &HashMap::new()).unwrap_err().into_iter().map(|e| e.path).collect();
        for p in
            ["telemetry.otlp_endpoint", "telemetry.protocol", "telemetry.sample_ratio", "telemetry.export_timeout_ms"]
        {
            assert!(paths.iter().any(|x| x == p), "{p} reported: {paths:?}");
        }
    }

    #[test]
    fn every_problem_is_reported() {
        let file = "[server]\nlisten = \"nowhere\"\nmax_body_bytes = 0\n[workers]\nbackoff_base_ms = 10\nbackoff_max_ms = 5\n[payers.P1]\ndestination = \"http\"\n[backend]\nkind = \"cloud\"\n";
        let errors = load(Some(file), &HashMap::new()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["server.listen", "server.max_body_bytes", "workers.backoff_max_ms", "payers.P1.url", "backend.kind"],
            "{errors:?}"
        );
    }

    #[test]
    fn routes_and_destinations() {
        let file = "[destinations.EHR]\nkind = \"mllp\"\naddress = \"ehr.local:6661\"\n\n[destinations.Fhir]\nkind = \"fhir\"\nurl = \"https://fhir.example/r4/\"\n\n[[routes]]\nname = \"adt\"\nmessages = [\"ADT^A01\", \"SIU\"]\nto = [\"EHR\"]\non_error = \"dead-letter\"\n\n[[routes]]\nresources = [\"Patient\"]\nto = [\"Fhir\"]\n";
        let env = HashMap::from([("CLEARWAY__DESTINATIONS__EHR__MAX_QUEUE".to_string(), "500".to_string())]);
        let c = load(Some(file), &env).unwrap();
        let s = &c.systems;
        assert_eq!(s.destination("EHR").unwrap().max_queue, 500, "destination names keep their case in env");
        assert_eq!(
            s.destination("Fhir").unwrap().transport,
            Transport::Fhir { base: "https://fhir.example/r4".into() }
        );
        assert_eq!(s.routes[0].on_error, OnError::DeadLetter);
        assert_eq!(s.routes[0].on_reject, OnError::DeadLetter);
        assert_eq!(s.routes[1].name, "route-2");
        assert_eq!(s.routes[1].on_error, OnError::Retry);

        let bad = "[destinations.A]\nkind = \"smtp\"\n\n[destinations.B]\nkind = \"mllp\"\naddress = \"nohost\"\nurl = \"http://x\"\n\n[destinations.C]\nkind = \"http\"\nurl = \"ftp://x\"\nmax_queue = 0\n\n[[routes]]\nmessages = [\"AD T\"]\nresources = [\"patient\"]\nto = [\"B\", \"NOPE\"]\non_reject = \"drop\"\n\n[[routes]]\n";
        let errors = load(Some(bad), &HashMap::new()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "destinations.A.kind",
                "destinations.B.address",
                "destinations.B.url",
                "destinations.C.url",
                "destinations.C.max_queue",
                "routes[0].messages",
                "routes[0].resources",
                "routes[0].to",
                "routes[0].to",
                "routes[0].on_reject",
                "routes[1].to",
            ],
            "{errors:?}"
        );
    }

    #[test]
    fn a_route_cannot_pair_a_format_with_a_destination_that_cannot_carry_it() {
        let file = "[destinations.EHR]\nkind = \"mllp\"\naddress = \"ehr:1\"\n\n[destinations.F]\nkind = \"fhir\"\nurl = \"http://f\"\n\n[[routes]]\nresources = [\"Patient\"]\nto = [\"EHR\"]\n\n[[routes]]\nmessages = [\"ADT\"]\nto = [\"F\"]\n";
        let errors = load(Some(file), &HashMap::new()).unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "routes[0].to: EHR is an MLLP destination: it cannot take FHIR resources",
                "routes[1].to: F is a FHIR server: it cannot take HL7 v2 messages"
            ]
        );
        // A route with no filter takes both formats, each to what carries it.
        let both = "[destinations.EHR]\nkind = \"mllp\"\naddress = \"ehr:1\"\n\n[destinations.F]\nkind = \"fhir\"\nurl = \"http://f\"\n\n[[routes]]\nto = [\"EHR\", \"F\"]\n";
        let c = load(Some(both), &HashMap::new()).unwrap();
        let hl7 = crate::systems::Facts::Hl7 { partner: "p", code: "ADT", trigger: "A01", facility: "" };
        let fhir = crate::systems::Facts::Fhir { partner: "p", resource: "Patient" };
        let to = |f| c.systems.select(f).iter().map(|s| s.destination.to_string()).collect::<Vec<_>>();
        assert_eq!(to(&hl7), ["EHR"]);
        assert_eq!(to(&fhir), ["F"]);
    }

    #[test]
    fn mllp_listeners_each_bound_to_a_partner() {
        let file = "[mllp]\npartner = \"main\"\nlisten = \"127.0.0.1:2575\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:2576\"\npartner = \"lab\"\n";
        let c = load(Some(file), &HashMap::new()).unwrap();
        let all: Vec<(String, String)> =
            c.mllp.all_listeners().iter().map(|l| (l.listen.to_string(), l.partner.to_string())).collect();
        assert_eq!(all, vec![("127.0.0.1:2575".into(), "main".into()), ("127.0.0.1:2576".into(), "lab".into())]);
        let bad = "[mllp]\npartner = \"main\"\nlisten = \"127.0.0.1:2575\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:2575\"\npartner = \"lab\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:2577\"\n";
        let errors = load(Some(bad), &HashMap::new()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, vec!["mllp.listeners[1].partner", "mllp.listeners"], "{errors:?}");
    }

    #[test]
    fn payer_aliases_name_the_payer() {
        let c =
            load(Some("[payers.ACME01]\naliases = [\"987654321\"]\nrate_per_sec = 3.0\n"), &HashMap::new()).unwrap();
        assert_eq!(c.canonical_payer("987654321"), "ACME01");
        assert_eq!(c.canonical_payer("ACME01"), "ACME01");
        assert_eq!(c.canonical_payer("OTHER"), "OTHER");
        assert_eq!(c.payer("987654321").rate_per_sec, 3.0);
    }

    #[test]
    fn pharmacy_routes_pick_the_most_specific_and_name_the_reject() {
        let file = "[pharmacy]\nroutes = [\n { bin = \"610020\", payer = \"PBM_A\" },\n { bin = \"610020\", pcn = \"MEDD\", payer = \"PBM_B\" },\n { bin = \"610020\", pcn = \"MEDD\", group = \"G1\", payer = \"PBM_C\" },\n { bin = \"004336\", pcn = \"ADV\", payer = \"PBM_D\" },\n]\n";
        let c = load(Some(file), &HashMap::new()).unwrap();
        let p = &c.pharmacy;
        assert_eq!(p.route("610020", "OTHER", None), Ok("PBM_A"));
        assert_eq!(p.route("610020", "MEDD", Some("G9")), Ok("PBM_B"));
        assert_eq!(p.route("610020", "MEDD", Some("G1")), Ok("PBM_C"));
        assert_eq!(p.route("999999", "MEDD", None), Err("1"));
        assert_eq!(p.route("004336", "X", None), Err("4"));
        let bad = load(Some("[pharmacy]\nroutes = [{ bin = \"61\" }]\n"), &HashMap::new()).unwrap_err();
        let paths: Vec<&str> = bad.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["pharmacy.routes[0].bin", "pharmacy.routes[0].payer"]);
    }

    #[test]
    fn edit_severities_globally_per_partner_and_per_payer() {
        let file = "[edits]\n\"npi.rendering\" = \"warn\"\nduplicate_window_days = 30\n\n[partners.acme.edits]\n\"npi.rendering\" = \"off\"\n\n[payers.P1.edits]\n\"npi.billing\" = \"off\"\n";
        let c = load(Some(file), &HashMap::new()).unwrap();
        assert_eq!(c.edits.duplicate_window, Duration::from_secs(30 * 86_400));
        let p = c.edit_policy("other", None);
        assert_eq!(p.severity_of("npi.rendering"), Severity::Warn);
        assert_eq!(p.severity_of("npi.billing"), Severity::Reject);
        assert_eq!(c.edit_policy("acme", None).severity_of("npi.rendering"), Severity::Off);
        assert_eq!(c.edit_policy("other", Some("P1")).severity_of("npi.billing"), Severity::Off);
        let env = HashMap::from([("CLEARWAY__EDITS__NPI.BILLING".to_string(), "warn".to_string())]);
        assert_eq!(load(None, &env).unwrap().edit_policy("x", None).severity_of("npi.billing"), Severity::Warn);
    }

    #[test]
    fn bad_edit_settings_are_all_reported() {
        let file = "[edits]\n\"npi.nope\" = \"warn\"\n\"npi.billing\" = \"maybe\"\nduplicate_window_days = 0\n\n[payers.P1.edits]\n\"dx.pointers\" = \"off\"\n";
        let errors = load(Some(file), &HashMap::new()).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["payers.P1.edits.dx.pointers", "edits.duplicate_window_days", "edits.npi.billing", "edits.npi.nope"],
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let errors = load(Some("[server]\nlisten_addr = \"x\"\n"), &HashMap::new()).unwrap_err();
        assert!(errors[0].message.contains("listen_addr"), "{errors:?}");
    }

    #[test]
    fn secrets_do_not_print() {
        let env = HashMap::from([("CLEARWAY__SECURITY__MASTER_KEY".to_string(), "ab".repeat(32))]);
        let c = load(None, &env).unwrap();
        assert!(!format!("{c:?}").contains(&"ab".repeat(32)));
    }
}
