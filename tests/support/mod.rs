//! Test harness: runs the real `clearway` binary over real TCP on ports the
//! kernel picks, with its own data directory and log file.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod faults;
pub mod payer;
pub mod sshd;

pub const BIN: &str = env!("CARGO_BIN_EXE_clearway");

/// A scratch area: `data/` for the store (or, on the AWS lane, its master
/// key and payer outbox), `serve.log` for the logs of every run, and the
/// environment every `clearway` command of the test gets.
pub struct Scratch {
    pub root: tempfile::TempDir,
    /// `CLEARWAY__…` and `AWS_…` settings for every command.
    pub env: Vec<(String, String)>,
    /// The CA of the server certificate when the service runs over TLS
    /// ([`Scratch::tls`]); the harness's clients then trust only it.
    pub tls_ca: Option<PathBuf>,
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Local,
    Aws,
}

impl Scratch {
    /// On the embedded backend.
    pub fn new() -> Self {
        Scratch { root: tempfile::tempdir().unwrap(), env: Vec::new(), tls_ca: None }
    }

    /// On the embedded backend with HTTP and MLLP over TLS: a CA and a
    /// server certificate for 127.0.0.1 made by `openssl`, and every
    /// request, connection and MLLP frame of the harness going through
    /// rustls trusting that CA only.
    pub fn tls() -> Self {
        let mut scratch = Scratch::new();
        let dir = scratch.root.path().join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl").current_dir(&dir).args(args).output().unwrap();
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=e2e CA"],
            ]
            .concat(),
        );
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        openssl(
            &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ]);
        for (k, file) in [("CLEARWAY__TLS__CERT_FILE", "server.pem"), ("CLEARWAY__TLS__KEY_FILE", "server.key")] {
            scratch.env.push((k.to_string(), dir.join(file).display().to_string()));
        }
        scratch.tls_ca = Some(dir.join("ca.pem"));
        scratch
    }

    pub fn on(lane: Lane) -> Self {
        match lane {
            Lane::Local => Scratch::new(),
            Lane::Aws => Scratch::aws(),
        }
    }

    /// On the AWS backend, against the local AWS-protocol server that
    /// `scripts/test` starts (`CLEARWAY_TEST_AWS_ENDPOINT`), with resources
    /// of its own made by `clearway aws bootstrap`. Only the SDK's standard
    /// variables point it there. The outbox sweeper runs every second with
    /// a 2 s threshold, so commits cut off by a kill are finished quickly.
    pub fn aws() -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let endpoint = std::env::var("CLEARWAY_TEST_AWS_ENDPOINT")
            .expect("CLEARWAY_TEST_AWS_ENDPOINT: the URL of a moto_server (scripts/test starts one)");
        let suffix = format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut env: Vec<(String, String)> = [
            ("AWS_ENDPOINT_URL", endpoint),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("CLEARWAY__BACKEND__BUCKET", format!("cw-payloads-{suffix}")),
            ("CLEARWAY__BACKEND__QUEUE", format!("cw-work-{suffix}")),
            ("CLEARWAY__BACKEND__DEAD_LETTER_QUEUE", format!("cw-work-dlq-{suffix}")),
            ("CLEARWAY__BACKEND__TOPIC", format!("cw-acks-{suffix}")),
            ("CLEARWAY__BACKEND__TABLE", format!("cw-state-{suffix}")),
            ("CLEARWAY__BACKEND__AUDIT_TABLE", format!("cw-audit-{suffix}")),
            ("CLEARWAY__BACKEND__AUDIT_BUCKET", format!("cw-audit-{suffix}")),
            ("CLEARWAY__BACKEND__OUTBOX_SWEEP_AFTER_SECS", "2".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.sort();
        let scratch = Scratch { root: tempfile::tempdir().unwrap(), env, tls_ca: None };
        let out = scratch.command().args(["aws", "bootstrap", "--data-dir"]).arg(scratch.data()).output().unwrap();
        assert!(out.status.success(), "aws bootstrap: {}", String::from_utf8_lossy(&out.stderr));
        scratch
    }

    pub fn lane(&self) -> Lane {
        if self.env.iter().any(|(k, _)| k == "CLEARWAY__BACKEND__BUCKET") { Lane::Aws } else { Lane::Local }
    }

    /// `--backend …` for commands that touch state (the flag, not the
    /// configuration, chooses the AWS lane's backend).
    pub fn backend_args(&self) -> &'static [&'static str] {
        match self.lane() {
            Lane::Local => &[],
            Lane::Aws => &["--backend", "aws"],
        }
    }

    /// `clearway` with this scratch's environment.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd
    }

    /// Runs an operator command (`clearway ARGS --data-dir … [--backend
    /// aws]`) on this scratch's store and waits for it.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        let data = self.data().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--data-dir", &data]);
        all.extend_from_slice(self.backend_args());
        self.command().args(&all).output().unwrap()
    }

    /// [`Scratch::run`] that must succeed (else the test fails with its
    /// output); returns its standard output.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "clearway {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A setting of this scratch's environment.
    pub fn env_value(&self, k: &str) -> String {
        self.env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap()
    }

    fn aws_names(&self) -> clearway_core::config::AwsConfig {
        let get = |k: &str| self.env_value(k);
        clearway_core::config::AwsConfig {
            bucket: get("CLEARWAY__BACKEND__BUCKET"),
            queue: get("CLEARWAY__BACKEND__QUEUE"),
            dead_letter_queue: get("CLEARWAY__BACKEND__DEAD_LETTER_QUEUE"),
            topic: get("CLEARWAY__BACKEND__TOPIC"),
            table: get("CLEARWAY__BACKEND__TABLE"),
            kms_key_id: None,
            partition_shards: 8,
            outbox_sweep_after: Duration::from_secs(2),
            audit_table: get("CLEARWAY__BACKEND__AUDIT_TABLE"),
            audit_bucket: get("CLEARWAY__BACKEND__AUDIT_BUCKET"),
        }
    }

    /// Everything stored on the AWS lane, raw (objects and items).
    pub fn aws_raw_contents(&self) -> Vec<(String, Vec<u8>)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let sdk = clearway_aws::local_server_config(&self.env_value("AWS_ENDPOINT_URL")).await;
            clearway_aws::inspect::raw_contents(&sdk, &self.aws_names()).await.unwrap()
        })
    }

    /// The store's ports as the service sees them (sealed), for tests that
    /// inspect what was stored.
    pub async fn ports(&self) -> clearway_core::ports::Ports {
        self.sealed().await.ports
    }

    /// The store as the service opens it: sealed ports, the sealed state
    /// store and partner management (with AWS KMS on the AWS lane).
    pub async fn sealed(&self) -> clearway_core::sealed::SealedStore {
        let dir = self.data();
        let master = clearway_core::partners::load_root_key(&self.security(), &dir, false).unwrap().0;
        let (raw, kms): (_, Option<std::sync::Arc<dyn clearway_core::keys::KeyService>>) = match self.lane() {
            Lane::Local => (clearway_local::Local::open(&dir).unwrap().ports(), None),
            Lane::Aws => {
                let sdk = clearway_aws::local_server_config(&self.env_value("AWS_ENDPOINT_URL")).await;
                let aws = clearway_aws::Aws::connect_with(&sdk, &self.aws_names()).await.unwrap();
                (aws.ports(), Some(std::sync::Arc::new(aws.kms.clone())))
            }
        };
        clearway_core::sealed::SealedStore::new(&master, raw, kms)
    }
    /// The security settings the scratch area's service runs with: the
    /// default root key file, next to `data/`.
    pub fn security(&self) -> clearway_core::config::SecurityConfig {
        clearway_core::config::SecurityConfig {
            master_key: None,
            root_key_file: clearway_core::config::default_root_key_file(&self.data()),
            allow_root_key_in_data_dir: false,
            audit_key_file: clearway_core::config::default_audit_key_file(&self.data()),
            audit_key: None,
            audit_requests: true,
            audit_move_every: std::time::Duration::from_millis(50),
        }
    }
    pub fn data(&self) -> PathBuf {
        self.root.path().join("data")
    }
    pub fn log(&self) -> PathBuf {
        self.root.path().join("serve.log")
    }
    /// Adds a partner and returns its API key.
    pub fn partner(&self, id: &str, operator: bool) -> String {
        let mut args = vec!["partners", "add", "--id", id, "--data-dir"];
        let data = self.data().display().to_string();
        args.push(&data);
        if operator {
            args.push("--operator");
        }
        args.extend_from_slice(self.backend_args());
        let out = self.command().args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap();
        assert_eq!(key.lines().count(), 1, "the key is alone on stdout");
        key.trim().to_string()
    }
    /// Writes the configuration file every later [`Server::start`] passes
    /// with `--config`.
    pub fn write_config(&self, toml: &str) {
        std::fs::write(self.config(), toml).unwrap();
    }
    pub fn config(&self) -> PathBuf {
        self.root.path().join("clearway.toml")
    }
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }
}

/// A running `clearway serve`.
pub struct Server {
    child: Option<Child>,
    pub http: SocketAddr,
    /// The first MLLP listener.
    pub mllp: Option<SocketAddr>,
    /// Every MLLP listener, with its partner.
    pub mllp_all: Vec<(SocketAddr, String)>,
    /// Addresses registered as TLS servers, forgotten when it stops.
    tls_addrs: Vec<SocketAddr>,
}

impl Server {
    /// Starts the service; `env` adds configuration (`CLEARWAY__…`).
    pub fn start(scratch: &Scratch, mllp_partner: Option<&str>, env: &[(&str, &str)]) -> Server {
        Server::start_with(scratch, mllp_partner, env, &[])
    }

    /// [`Server::start`] with more `serve` arguments (`--role worker`, ...).
    pub fn start_with(scratch: &Scratch, mllp_partner: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(scratch.log()).unwrap();
        let mut cmd = scratch.command();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--mllp-listen", "127.0.0.1:0", "--data-dir"])
            .arg(scratch.data())
            .env("CLEARWAY_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(p) = mllp_partner {
            cmd.args(["--mllp-partner", p]);
        }
        if scratch.config().exists() {
            cmd.arg("--config").arg(scratch.config());
        }
        cmd.args(args);
        cmd.args(scratch.backend_args());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let (mut http, mut mllp, mut mllp_all) = (None, None, Vec::new());
        let mut https = false;
        for line in lines.by_ref() {
            let line = line.unwrap();
            https |= line.starts_with("clearway: http listening on https://");
            let listening = line
                .strip_prefix("clearway: http listening on http://")
                .or_else(|| line.strip_prefix("clearway: http listening on https://"));
            if let Some(rest) = listening {
                http = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            }
            if let Some(rest) = line.strip_prefix("clearway: mllp listening on ") {
                let mut words = rest.split_whitespace();
                let addr: SocketAddr = words.next().unwrap().parse().unwrap();
                let partner = words.last().unwrap_or_default().to_string();
                mllp.get_or_insert(addr);
                mllp_all.push((addr, partner));
            }
            if line == "clearway: ready" {
                break;
            }
        }
        // Keep draining stdout so the child never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        let http = http.expect("server printed its address");
        assert!(https || scratch.tls_ca.is_none(), "a TLS scratch area's service serves HTTPS");
        let mut tls_addrs = Vec::new();
        if let Some(ca) = &scratch.tls_ca {
            let config = tls_client_config(ca);
            let mut servers = tls_servers().lock().unwrap();
            for addr in std::iter::once(http).chain(mllp_all.iter().map(|(a, _)| *a)) {
                servers.insert(addr, config.clone());
                tls_addrs.push(addr);
            }
        }
        Server { child: Some(child), http, mllp, mllp_all, tls_addrs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn stop(mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        child.wait().unwrap().code()
    }

    /// SIGKILL (a crash).
    pub fn kill(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A later server on the same port may be plaintext.
        if let Ok(mut servers) = tls_servers().lock() {
            for a in &self.tls_addrs {
                servers.remove(a);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A minimal blocking HTTP/1.1 client (one request per connection), enough
/// for tests and independent of the server's own stack.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON, or `null` when it is not JSON.
    pub fn json_or_null(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A byte stream to a test server: TCP, or TLS over it.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

type TlsServers = std::sync::Mutex<std::collections::HashMap<SocketAddr, std::sync::Arc<rustls::ClientConfig>>>;

/// Servers started over TLS ([`Scratch::tls`]), by address, with the client
/// configuration that trusts their CA.
fn tls_servers() -> &'static TlsServers {
    static SERVERS: std::sync::OnceLock<TlsServers> = std::sync::OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

fn tls_client_config(ca: &Path) -> std::sync::Arc<rustls::ClientConfig> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    std::sync::Arc::new(config)
}

/// Connects to a test server's HTTP or MLLP address: over TLS when the
/// server was started with it.
pub fn connect(addr: SocketAddr) -> std::io::Result<Box<dyn Stream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
    let config = tls_servers().lock().unwrap().get(&addr).cloned();
    Ok(match config {
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    })
}

pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut s = connect(addr).unwrap();
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_string()))).collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Response { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

/// A client bound to one partner's key.
pub struct Client {
    pub addr: SocketAddr,
    pub key: String,
}

impl Client {
    pub fn submit(&self, content_type: &str, body: &[u8], extra: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {}", self.key);
        let mut h = vec![("Authorization", auth.as_str()), ("Content-Type", content_type)];
        h.extend_from_slice(extra);
        request(self.addr, "POST", "/v1/transactions", &h, body)
    }
    pub fn get(&self, path: &str) -> Response {
        let auth = format!("Bearer {}", self.key);
        request(self.addr, "GET", path, &[("Authorization", auth.as_str())], b"")
    }
    pub fn post(&self, path: &str) -> Response {
        let auth = format!("Bearer {}", self.key);
        request(self.addr, "POST", path, &[("Authorization", auth.as_str())], b"")
    }
    /// Polls a transaction until it reaches a terminal status.
    pub fn wait_terminal(&self, id: &str) -> serde_json::Value {
        self.wait_terminal_for(id, Duration::from_secs(60))
    }

    /// [`Client::wait_terminal`] with a longer patience (large inputs on
    /// the AWS emulator, which handles transactional writes item by item).
    pub fn wait_terminal_for(&self, id: &str, patience: Duration) -> serde_json::Value {
        let deadline = Instant::now() + patience;
        loop {
            let r = self.get(&format!("/v1/transactions/{id}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let v = r.json();
            if ["accepted", "rejected", "dead_lettered"].contains(&v["status"].as_str().unwrap_or("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "transaction {id} stuck in {}", v["status"]);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    /// The kinds of a transaction's acks, sorted.
    pub fn ack_kinds(&self, id: &str) -> Vec<String> {
        let r = self.get(&format!("/v1/transactions/{id}/acks"));
        assert_eq!(r.status, 200);
        let mut kinds: Vec<String> =
            r.json().as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap().to_string()).collect();
        kinds.sort();
        kinds
    }
}

/// The shared public corpus (`../shared/corpus`).
pub fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

pub fn manifest() -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(corpus().join("manifest.json")).expect("the shared corpus");
    serde_json::from_str::<Vec<serde_json::Value>>(&text).unwrap()
}

/// MLLP framing.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = vec![0x0B];
    v.extend_from_slice(msg);
    v.extend_from_slice(&[0x1C, 0x0D]);
    v
}

/// Reads one MLLP frame's content.
pub fn read_frame<R: Read + ?Sized>(s: &mut R) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(0) | Err(_) => return None,
            Ok(_) => buf.push(byte[0]),
        }
        if buf.ends_with(&[0x1C, 0x0D]) {
            let start = buf.iter().position(|b| *b == 0x0B)?;
            return Some(buf[start + 1..buf.len() - 2].to_vec());
        }
    }
}

/// The value of an HL7 field (`MSA`, 1) in a message.
pub fn hl7_field(msg: &[u8], segment: &str, n: usize) -> Option<String> {
    let text = String::from_utf8_lossy(msg);
    let line = text.split(['\r', '\n']).find(|l| l.starts_with(segment))?;
    line.split('|').nth(n).map(str::to_string)
}

/// A keep-alive HTTP/1.1 connection (responses must carry Content-Length).
pub struct Conn {
    stream: std::io::BufReader<Box<dyn Stream>>,
    addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn { stream: std::io::BufReader::new(connect(addr)?), addr })
    }

    pub fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n", self.addr, body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let s = self.stream.get_mut();
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut status_line = String::new();
        if self.stream.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed"));
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("bad status line"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.stream.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_lowercase(), v.trim().to_string()));
            }
        }
        let len: usize =
            headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(Response { status, headers, body })
    }
}

/// Runs each named test (a `fn(Scratch)`) on the embedded backend
/// (`local::name`) and on the AWS backends against moto (`aws::name`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name(super::Scratch::new()) } )*
        }
        mod aws {
            $( #[test] fn $name() { super::$name(super::Scratch::aws()) } )*
        }
        /// The embedded backend with HTTP and MLLP over TLS.
        mod tls {
            $( #[test] fn $name() { super::$name(super::Scratch::tls()) } )*
        }
    };
}

/// Names, patient control numbers and member ids in an X12 file: none may
/// appear in anything exported (analytics files, spans).
pub fn phi_markers(x12: &str) -> std::collections::BTreeSet<String> {
    let analysis = clearway_formats::x12::analyze(x12.as_bytes(), &Default::default());
    let mut out = std::collections::BTreeSet::new();
    for d in analysis.documents() {
        if let clearway_formats::x12::Document::Enrollment(en) = d {
            for m in &en.members {
                out.extend(m.member_id.expose().clone());
                out.extend(m.subscriber_id.expose().clone());
                out.insert(m.person.last_name.expose().clone());
                out.extend(m.person.first_name.expose().clone());
            }
        }
        if let clearway_formats::x12::Document::Claim(c) = d {
            out.insert(c.patient_control_number.expose().clone());
            if let Some(m) = c.subscriber_member_id.expose() {
                out.insert(m.clone());
            }
            for p in [&c.patient, &c.subscriber] {
                out.insert(p.last_name.expose().clone());
                if let Some(f) = p.first_name.expose() {
                    out.insert(f.clone());
                }
            }
        }
    }
    out
}

/// Every event of the embedded audit log (`<data>/audit.db`), in order.
pub fn audit_events(scratch: &Scratch) -> Vec<serde_json::Value> {
    let db = rusqlite::Connection::open(scratch.data().join("audit.db")).unwrap();
    let mut stmt = db.prepare("SELECT event FROM leaves ORDER BY seq").unwrap();
    let rows = stmt.query_map([], |r| r.get::<_, Vec<u8>>(0)).unwrap();
    rows.map(|r| serde_json::from_slice(&r.unwrap()).unwrap()).collect()
}

/// One HTTP/1.1 request as a test's endpoint received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Reads the next request of a keep-alive connection (`None` once the
/// client closes it). Bodies come with a `Content-Length`.
pub fn read_request(reader: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize =
        headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.trim().parse().unwrap_or(0));
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Received { path, headers, body })
}
