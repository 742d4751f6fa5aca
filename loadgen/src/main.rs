//! `clearway-loadgen`: drives Clearway for the benchmarks in
//! `docs/BENCHMARKS.md` (run through `scripts/bench`).
//!
//! - `http`: POSTs small synthetic 837P interchanges (each with a fresh
//!   ISA13, so none is a duplicate) over keep-alive connections, either as
//!   fast as the server answers (closed loop) or at a fixed rate (open loop,
//!   latency measured from the *scheduled* send time, so a stalled server is
//!   not hidden by the generator waiting for it).
//! - `mllp`: ADT messages over MLLP connections, each waiting for its ACK.
//! - `e2e`: interchanges of several claims at a fixed claim rate while
//!   following the acknowledgement feed; reports accept → 999 and 277CA
//!   visible.
//! - `bare`: a hyper server answering `200 OK` to everything: the ceiling
//!   the intake is compared with.
//! - `fsync`: the latency of a 4 KiB write + fdatasync on a directory.
//!
//! Every mode prints one JSON object on standard output.

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Parser)]
#[command(name = "clearway-loadgen")]
struct Cli {
    /// Speak TLS to the target, trusting this CA (PEM); the server name
    /// checked is `localhost`.
    #[arg(long, global = true)]
    tls_ca: Option<std::path::PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

/// TLS settings of this run (`--tls-ca`), set once in `main`.
static TLS: std::sync::OnceLock<Option<Arc<tokio_rustls::rustls::ClientConfig>>> = std::sync::OnceLock::new();

fn tls_client_config(ca: &std::path::Path, resume: bool) -> anyhow::Result<tokio_rustls::rustls::ClientConfig> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("--tls-ca")? {
        roots.add(c.context("--tls-ca")?)?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
}

/// A byte stream to the target: TCP, or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

async fn open(addr: SocketAddr) -> anyhow::Result<Box<dyn Io>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    match TLS.get().cloned().flatten() {
        None => Ok(Box::new(stream)),
        Some(config) => {
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")?;
            Ok(Box::new(tokio_rustls::TlsConnector::from(config).connect(name, stream).await?))
        }
    }
}

#[derive(Debug, Subcommand)]
enum Mode {
    /// HTTP intake load.
    Http {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value = "")]
        key: String,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Requests per second (open loop); omit for as fast as possible.
        #[arg(long)]
        rate: Option<f64>,
        /// Claims per interchange.
        #[arg(long, default_value_t = 1)]
        claims: usize,
        /// First ISA13 to use (runs against one store must not overlap).
        #[arg(long, default_value_t = 1)]
        first_control: u64,
        /// The route to POST to.
        #[arg(long, default_value = "/v1/transactions")]
        path: String,
        /// Send these bodies (every file in the directory, in name order,
        /// round robin) instead of generated 837Ps.
        #[arg(long)]
        bodies: Option<std::path::PathBuf>,
        /// With `--bodies`: give every request fresh control fields (ISA13,
        /// GS06, ST02, BHT03, TRN02, the times and the trailers), as a
        /// front desk asking again does; the rest stays as in the file.
        #[arg(long)]
        fresh_controls: bool,
        /// Send NCPDP D.0 B1 claims (each with a fresh prescription number)
        /// instead of 837Ps (use with `--path /v1/pharmacy`).
        #[arg(long)]
        ncpdp: bool,
    },
    /// MLLP load.
    Mllp {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long, default_value_t = 1)]
        first_control: u64,
        /// Stop after this many messages in all (before the duration ends).
        #[arg(long)]
        count: Option<u64>,
    },
    /// TLS handshakes per second against a TLS listener (`--tls-ca`): each
    /// connection opened, handshaken, used for one `GET /healthz` and
    /// closed, in a loop; full handshakes, or resumptions of the sessions
    /// earlier handshakes made.
    Handshakes {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        #[arg(long)]
        resume: bool,
    },
    /// Opens `count` TCP connections to `addr` and sends nothing (clients
    /// that never start or finish a TLS handshake); prints how many the
    /// server had closed after `hold_secs`.
    Idle {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 15)]
        hold_secs: u64,
    },
    /// A receiving system for routed messages: an MLLP server answering
    /// each message AA (after `delay_ms`), checking that each sender's
    /// messages (MSH-3) arrive in order (MSH-10 `LG<n>` growing). Prints
    /// its address, then a JSON report once `expect` distinct messages
    /// arrived: the rate from the first to the last.
    MllpPeer {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 0)]
        delay_ms: u64,
        #[arg(long)]
        expect: u64,
    },
    /// Accept → acknowledgements visible, at a fixed claim rate.
    E2e {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        key: String,
        #[arg(long, default_value_t = 5000.0)]
        claims_per_sec: f64,
        #[arg(long, default_value_t = 10)]
        claims: usize,
        #[arg(long, default_value_t = 16)]
        connections: usize,
        #[arg(long, default_value_t = 20)]
        duration_secs: u64,
        #[arg(long, default_value_t = 1)]
        first_control: u64,
    },
    /// A PBM answering every D.0 request at once: each transaction paid.
    Pbm {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// A bare hyper server answering 200 OK.
    Bare {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
    },
    /// fdatasync latency of 4 KiB writes in a directory.
    Fsync {
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, default_value_t = 500)]
        count: usize,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _ = TLS.set(cli.tls_ca.as_deref().map(|ca| tls_client_config(ca, true).map(Arc::new)).transpose()?);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let out = rt.block_on(async {
        match cli.mode {
            Mode::Http {
                addr,
                key,
                connections,
                duration_secs,
                rate,
                claims,
                first_control,
                path,
                bodies,
                fresh_controls,
                ncpdp,
            } => {
                let t = match bodies {
                    Some(dir) => Template::files(&dir, fresh_controls)?,
                    None if ncpdp => Template::ncpdp()?,
                    None => Template::x12(claims)?,
                };
                let load = Load { path, template: Arc::new(t) };
                http(addr, key, connections, Duration::from_secs(duration_secs), rate, load, first_control).await
            }
            Mode::Mllp { addr, connections, duration_secs, first_control, count } => {
                mllp(addr, connections, Duration::from_secs(duration_secs), first_control, count).await
            }
            Mode::Handshakes { addr, connections, duration_secs, resume } => {
                let ca = cli.tls_ca.as_deref().context("handshakes: --tls-ca is required")?;
                handshakes(
                    addr,
                    Arc::new(tls_client_config(ca, resume)?),
                    connections,
                    Duration::from_secs(duration_secs),
                    resume,
                )
                .await
            }
            Mode::Idle { addr, count, hold_secs } => idle(addr, count, Duration::from_secs(hold_secs)).await,
            Mode::MllpPeer { listen, delay_ms, expect } => {
                mllp_peer(listen, Duration::from_millis(delay_ms), expect).await
            }
            Mode::E2e { addr, key, claims_per_sec, claims, connections, duration_secs, first_control } => {
                let t = Template::x12(claims)?;
                e2e(
                    addr,
                    key,
                    claims_per_sec,
                    Arc::new(t),
                    connections,
                    Duration::from_secs(duration_secs),
                    first_control,
                )
                .await
            }
            Mode::Bare { listen } => bare(listen).await,
            Mode::Pbm { listen } => pbm(listen).await,
            Mode::Fsync { dir, count } => fsync(&dir, count),
        }
    })?;
    println!("{out}");
    Ok(())
}

// ------------------------------------------------------------ payloads --

/// A synthetic 837P whose ISA13/IEA02 are patched per request, or a set
/// of fixed bodies sent round robin.
struct Template {
    body: Vec<u8>,
    isa13: std::ops::Range<usize>,
    iea02: std::ops::Range<usize>,
    claims: usize,
    fixed: Vec<Bytes>,
    /// Per fixed body, where its control fields are (when they are made
    /// fresh per request).
    controls: Vec<Vec<(std::ops::Range<usize>, Control)>>,
    /// Where a D.0 template's prescription number is (12 digits).
    rx: Option<std::ops::Range<usize>>,
}

/// What a control field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// A number (ISA13, GS06, ST02, BHT03, TRN02 and the trailers').
    Number,
    /// HHMM.
    Time,
}

/// The control fields of an X12 interchange: (segment id, element,
/// what it holds).
const CONTROL_FIELDS: &[(&[u8], usize, Control)] = &[
    (b"GS", 5, Control::Time),
    (b"GS", 6, Control::Number),
    (b"ST", 2, Control::Number),
    (b"BHT", 3, Control::Number),
    (b"BHT", 5, Control::Time),
    (b"TRN", 2, Control::Number),
    (b"SE", 2, Control::Number),
    (b"GE", 2, Control::Number),
    (b"IEA", 2, Control::Number),
];

/// Where the control fields of `body` are.
fn control_fields(body: &[u8]) -> anyhow::Result<Vec<(std::ops::Range<usize>, Control)>> {
    if body.len() < 106 || !body.starts_with(b"ISA") {
        bail!("not an X12 interchange");
    }
    let (elem, term) = (body[3], body[105]);
    let mut out = vec![(90..99, Control::Number), (77..81, Control::Time)];
    let mut start = 106;
    for seg in body[106..].split(|b| *b == term) {
        let lead = seg.len() - seg.trim_ascii_start().len();
        let mut at = start + lead;
        let mut fields = seg[lead..].split(|b| *b == elem);
        let id = fields.next().unwrap_or_default();
        at += id.len() + 1;
        for (i, f) in fields.enumerate() {
            if let Some((_, _, kind)) = CONTROL_FIELDS.iter().find(|(s, n, _)| *s == id && *n == i + 1)
                && (*kind == Control::Number || f.len() == 4)
                && !f.is_empty()
            {
                out.push((at..at + f.len(), *kind));
            }
            at += f.len() + 1;
        }
        start += seg.len() + 1;
    }
    Ok(out)
}

/// What the HTTP load sends, and where.
struct Load {
    path: String,
    template: Arc<Template>,
}

impl Template {
    fn files(dir: &std::path::Path, fresh_controls: bool) -> anyhow::Result<Self> {
        let mut names: Vec<std::path::PathBuf> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
        names.sort();
        let fixed: Vec<Bytes> =
            names.iter().map(std::fs::read).collect::<Result<Vec<_>, _>>()?.into_iter().map(Bytes::from).collect();
        if fixed.is_empty() {
            bail!("no bodies in {}", dir.display());
        }
        let controls = if fresh_controls {
            fixed.iter().map(|b| control_fields(b)).collect::<anyhow::Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        Ok(Template { body: Vec::new(), isa13: 0..0, iea02: 0..0, claims: 0, fixed, controls, rx: None })
    }

    fn x12(claims: usize) -> anyhow::Result<Self> {
        let mut body = Vec::new();
        clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Professional837, claims, 7)?;
        // ISA is fixed width: ISA13 is bytes 90..99.
        let isa13 = 90..99;
        let iea = body.windows(4).rposition(|w| w == b"IEA*").context("IEA")?;
        let start = iea + 4 + body[iea + 4..].iter().position(|b| *b == b'*').context("IEA01")? + 1;
        let iea02 = start..start + 9;
        if body[isa13.clone()] != body[iea02.clone()] {
            bail!("template envelope not as expected");
        }
        Ok(Template { body, isa13, iea02, claims, fixed: Vec::new(), controls: Vec::new(), rx: None })
    }

    /// A synthetic D.0 B1 whose prescription number is made fresh per
    /// request (so that none is a duplicate).
    fn ncpdp() -> anyhow::Result<Self> {
        use clearway_formats::ncpdp::synth;
        let body = synth::request(&synth::Request::b1("610020", "BENCH", "100000000000"));
        let at = body.windows(14).position(|w| w == b"D2100000000000").context("D2")? + 2;
        Ok(Template {
            body,
            isa13: 0..0,
            iea02: 0..0,
            claims: 1,
            fixed: Vec::new(),
            controls: Vec::new(),
            rx: Some(at..at + 12),
        })
    }

    fn with_control(&self, n: u64) -> Bytes {
        if !self.fixed.is_empty() {
            let i = (n as usize) % self.fixed.len();
            let Some(fields) = self.controls.get(i) else { return self.fixed[i].clone() };
            // Numbers of the field's width without a leading zero; a
            // header and its trailer get the same one.
            let mut b = self.fixed[i].to_vec();
            for (r, kind) in fields {
                let v = match kind {
                    Control::Number => {
                        let w = r.len().min(18) as u32;
                        let low = 10u64.pow(w - 1);
                        low + n % (9 * low)
                    }
                    Control::Time => (n / 60) % 24 * 100 + n % 60,
                };
                // Written in place, right-aligned and zero-padded to the
                // field's width (as `{:0w$}` would).
                let mut rest = v;
                for at in r.clone().rev() {
                    b[at] = b'0' + (rest % 10) as u8;
                    rest /= 10;
                }
            }
            return Bytes::from(b);
        }
        let mut b = self.body.clone();
        if let Some(rx) = &self.rx {
            b[rx.clone()].copy_from_slice(format!("{}", 100_000_000_000 + n % 800_000_000_000).as_bytes());
            return Bytes::from(b);
        }
        let digits = format!("{:09}", n % 1_000_000_000);
        b[self.isa13.clone()].copy_from_slice(digits.as_bytes());
        b[self.iea02.clone()].copy_from_slice(digits.as_bytes());
        Bytes::from(b)
    }
}

// ---------------------------------------------------------------- http --

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = open(addr).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// The headers every request of a run carries, made once (the load
/// generator shares the two cores with the server it measures).
#[derive(Clone)]
struct Headers {
    host: hyper::header::HeaderValue,
    authorization: hyper::header::HeaderValue,
}

impl Headers {
    fn new(addr: SocketAddr, key: &str) -> anyhow::Result<Self> {
        Ok(Headers {
            host: hyper::header::HeaderValue::from_str(&addr.to_string())?,
            authorization: hyper::header::HeaderValue::from_str(&format!("Bearer {key}"))?,
        })
    }
}

/// One POST; returns the status and body.
async fn post(sender: &mut Sender, headers: &Headers, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
    post_to(sender, "/v1/transactions", headers, body).await
}

/// One POST to `path`; returns the status and body.
async fn post_to(sender: &mut Sender, path: &str, headers: &Headers, body: Bytes) -> anyhow::Result<(u16, Bytes)> {
    sender.ready().await?;
    let req = Request::post(path)
        .header(hyper::header::HOST, headers.host.clone())
        .header(hyper::header::AUTHORIZATION, headers.authorization.clone())
        .header(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(if path == "/v1/pharmacy" {
                "application/vnd.ncpdp.d0"
            } else {
                "application/edi-x12"
            }),
        )
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[derive(Default)]
struct Tally {
    statuses: HashMap<u16, u64>,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    json!({ "p50_ms": ms(0.5), "p90_ms": ms(0.9), "p99_ms": ms(0.99), "p999_ms": ms(0.999), "max_ms": h.max() as f64 / 1000.0 })
}

async fn http(
    addr: SocketAddr,
    key: String,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    load: Load,
    first_control: u64,
) -> anyhow::Result<serde_json::Value> {
    let template = load.template;
    let path = Arc::new(load.path);
    let headers = Headers::new(addr, &key)?;
    let counter = Arc::new(AtomicU64::new(first_control));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (headers, counter, template, path) = (headers.clone(), counter.clone(), template.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let mut tally = Tally::default();
            let Ok(mut sender) = connect(addr).await else {
                tally.errors += 1;
                return (h, tally);
            };
            // Open loop: this connection's share of the rate, staggered.
            let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
            let mut next =
                Instant::now() + interval.map_or(Duration::ZERO, |i| i.mul_f64(c as f64 / connections as f64));
            loop {
                if interval.is_some() {
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    }
                    if next >= deadline {
                        break;
                    }
                } else if Instant::now() >= deadline {
                    break;
                }
                let scheduled = if interval.is_some() { next } else { Instant::now() };
                let body = template.with_control(counter.fetch_add(1, Ordering::Relaxed));
                match post_to(&mut sender, &path, &headers, body).await {
                    Ok((status, _)) => {
                        *tally.statuses.entry(status).or_default() += 1;
                        let _ = h.record(scheduled.elapsed().as_micros().max(1) as u64);
                    }
                    Err(_) => {
                        tally.errors += 1;
                        match connect(addr).await {
                            Ok(s) => sender = s,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
                if let Some(i) = interval {
                    next += i;
                }
            }
            (h, tally)
        }));
    }
    let mut all = histogram();
    let mut statuses: HashMap<u16, u64> = HashMap::new();
    let mut errors = 0;
    for t in tasks {
        let (h, tally) = t.await?;
        all.add(&h)?;
        for (s, n) in tally.statuses {
            *statuses.entry(s).or_default() += n;
        }
        errors += tally.errors;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = statuses.get(&202).copied().unwrap_or(0) + statuses.get(&200).copied().unwrap_or(0);
    Ok(json!({
        "mode": "http",
        "connections": connections,
        "offered_per_sec": rate,
        "claims_per_request": template.claims,
        "seconds": elapsed,
        "requests": all.len(),
        "ok": ok,
        "ok_per_sec": ok as f64 / elapsed,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "errors": errors,
        "latency": latency_json(&all),
        "next_control": counter.load(Ordering::Relaxed),
    }))
}

// ---------------------------------------------------------------- mllp --

/// An ADT^A01 framed for MLLP; MSH-3 names the sending connection.
fn adt(control: u64, connection: usize) -> Vec<u8> {
    let msg = format!(
        "MSH|^~\\&|LOADGEN{connection}|BENCH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|LG{control}|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||{control}^^^BENCH^MR||DOE^JANE||19800101|F\r\
         PV1|1|I\r"
    );
    let mut f = Vec::with_capacity(msg.len() + 3);
    f.push(0x0B);
    f.extend_from_slice(msg.as_bytes());
    f.extend_from_slice(&[0x1C, 0x0D]);
    f
}

async fn mllp(
    addr: SocketAddr,
    connections: usize,
    duration: Duration,
    first_control: u64,
    count: Option<u64>,
) -> anyhow::Result<serde_json::Value> {
    let counter = Arc::new(AtomicU64::new(first_control));
    let last = count.map_or(u64::MAX, |n| first_control + n);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for connection in 0..connections {
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut h = histogram();
            let (mut acks, mut errors, mut non_aa) = (0u64, 0u64, 0u64);
            let Ok(mut s) = open(addr).await else { return (h, acks, non_aa, 1) };
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            'outer: while Instant::now() < deadline {
                let t = Instant::now();
                let control = counter.fetch_add(1, Ordering::Relaxed);
                if control >= last {
                    break;
                }
                if s.write_all(&adt(control, connection)).await.is_err() {
                    errors += 1;
                    break;
                }
                buf.clear();
                loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => {
                            errors += 1;
                            break 'outer;
                        }
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.ends_with(&[0x1C, 0x0D]) {
                        break;
                    }
                }
                let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                acks += 1;
                if !buf.windows(6).any(|w| w == b"MSA|AA" || w == b"MSA|CA") {
                    non_aa += 1;
                }
            }
            (h, acks, non_aa, errors)
        }));
    }
    let mut all = histogram();
    let (mut acks, mut non_aa, mut errors) = (0, 0, 0);
    for t in tasks {
        let (h, a, n, e) = t.await?;
        all.add(&h)?;
        acks += a;
        non_aa += n;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "mllp", "connections": connections, "seconds": elapsed, "acks": acks,
        "acks_per_sec": acks as f64 / elapsed, "not_aa": non_aa, "errors": errors, "latency": latency_json(&all),
        "next_control": counter.load(Ordering::Relaxed),
    }))
}

/// See [`Mode::Idle`].
async fn idle(addr: SocketAddr, count: usize, hold: Duration) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..count {
        tasks.push(tokio::spawn(async move {
            let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return (false, None) };
            let mut buf = [0u8; 64];
            // Closed by the server (EOF or reset) before `hold` runs out?
            match tokio::time::timeout(hold, s.read(&mut buf)).await {
                Ok(_) => (true, Some(started.elapsed())),
                Err(_) => (true, None),
            }
        }));
    }
    let (mut opened, mut closed, mut latest) = (0, 0, Duration::ZERO);
    for t in tasks {
        let (o, c) = t.await?;
        opened += usize::from(o);
        if let Some(at) = c {
            closed += 1;
            latest = latest.max(at);
        }
    }
    Ok(json!({
        "mode": "idle", "opened": opened, "closed_by_server": closed,
        "last_closed_after_secs": latest.as_secs_f64(), "held_secs": hold.as_secs(),
    }))
}

/// See [`Mode::Handshakes`].
async fn handshakes(
    addr: SocketAddr,
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    connections: usize,
    duration: Duration,
    resume: bool,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let (mut done, mut resumed, mut errors) = (0u64, 0u64, 0u64);
            let connector = tokio_rustls::TlsConnector::from(config);
            while Instant::now() < deadline {
                let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
                    errors += 1;
                    continue;
                };
                let Ok(name) = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost") else { break };
                match connector.connect(name, tcp).await {
                    Ok(mut s) => {
                        // One request, read to its end: TLS 1.3 session
                        // tickets arrive after the handshake, so a client
                        // that hung up at once would never resume.
                        let _ =
                            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await;
                        let mut sink = Vec::new();
                        let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut sink)).await;
                        done += 1;
                        if matches!(s.get_ref().1.handshake_kind(), Some(tokio_rustls::rustls::HandshakeKind::Resumed))
                        {
                            resumed += 1;
                        }
                        let _ = s.shutdown().await;
                    }
                    Err(_) => errors += 1,
                }
            }
            (done, resumed, errors)
        }));
    }
    let (mut done, mut resumed, mut errors) = (0, 0, 0);
    for t in tasks {
        let (d, r, e) = t.await?;
        done += d;
        resumed += r;
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(json!({
        "mode": "handshakes", "resume": resume, "connections": connections, "seconds": secs,
        "handshakes": done, "resumed": resumed, "errors": errors, "per_sec": done as f64 / secs,
    }))
}

/// See [`Mode::MllpPeer`].
async fn mllp_peer(listen: SocketAddr, delay: Duration, expect: u64) -> anyhow::Result<serde_json::Value> {
    #[derive(Default)]
    struct Seen {
        last: HashMap<String, u64>,
        all: std::collections::HashSet<(String, u64)>,
        distinct: u64,
        received: u64,
        repeats: u64,
        out_of_order: u64,
        first: Option<Instant>,
        last_at: Option<Instant>,
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("peer listening on {}", listener.local_addr()?);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let done = Arc::new(tokio::sync::Notify::new());
    let accept = {
        let (seen, done) = (seen.clone(), done.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { continue };
                let _ = s.set_nodelay(true);
                let (seen, done) = (seen.clone(), done.clone());
                tokio::spawn(async move {
                    let mut buf: Vec<u8> = Vec::with_capacity(8192);
                    let mut chunk = [0u8; 8192];
                    loop {
                        let Some(end) = buf.windows(2).position(|w| w == [0x1C, 0x0D]) else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let frame: Vec<u8> = buf.drain(..end + 2).collect();
                        let msg = String::from_utf8_lossy(&frame[1..frame.len() - 2]).to_string();
                        let msh: Vec<&str> = msg.split('\r').next().unwrap_or("").split('|').collect();
                        let (app, control) = (msh.get(2).copied().unwrap_or(""), msh.get(9).copied().unwrap_or(""));
                        let n: u64 = control.trim_start_matches("LG").parse().unwrap_or(0);
                        {
                            let mut st = seen.lock().unwrap_or_else(|p| p.into_inner());
                            let now = Instant::now();
                            st.first.get_or_insert(now);
                            st.last_at = Some(now);
                            st.received += 1;
                            let prev = st.last.get(app).copied();
                            if !st.all.insert((app.to_string(), n)) {
                                st.repeats += 1;
                            } else {
                                st.distinct += 1;
                                // Distinct but below what this sender already
                                // delivered: out of order.
                                if prev.is_some_and(|p| n < p) {
                                    st.out_of_order += 1;
                                }
                                st.last.insert(app.to_string(), prev.unwrap_or(0).max(n));
                            }
                            if st.distinct >= expect {
                                done.notify_one();
                            }
                        }
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let ack = format!(
                            "\x0bMSH|^~\\&|PEER|BENCH|{app}|BENCH|20240101120000||ACK^A01^ACK|A{control}|P|2.5.1\rMSA|AA|{control}\r\x1c\r"
                        );
                        if s.write_all(ack.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
    };
    done.notified().await;
    accept.abort();
    let st = seen.lock().unwrap_or_else(|p| p.into_inner());
    let secs = match (st.first, st.last_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(json!({
        "mode": "mllp-peer", "delay_ms": delay.as_millis() as u64, "distinct": st.distinct, "received": st.received,
        "repeats": st.repeats, "out_of_order": st.out_of_order, "senders": st.last.len(), "seconds": secs,
        "per_sec": if secs > 0.0 { st.distinct as f64 / secs } else { 0.0 },
    }))
}

// ----------------------------------------------------------------- e2e --

async fn e2e(
    addr: SocketAddr,
    key: String,
    claims_per_sec: f64,
    template: Arc<Template>,
    connections: usize,
    duration: Duration,
    first_control: u64,
) -> anyhow::Result<serde_json::Value> {
    // Submission time of each transaction, and the acks seen for it.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let rate = claims_per_sec / template.claims as f64;
    let stop = Arc::new(tokio::sync::Notify::new());
    let follower = {
        let (sent, key, stop) = (sent.clone(), key.clone(), stop.clone());
        tokio::spawn(async move { follow(addr, key, sent, stop).await })
    };
    let headers = Headers::new(addr, &key)?;
    let counter = Arc::new(AtomicU64::new(first_control));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let (headers, counter, template, sent) = (headers.clone(), counter.clone(), template.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0u64;
            let Ok(mut sender) = connect(addr).await else { return refused + 1 };
            let interval = Duration::from_secs_f64(connections as f64 / rate);
            let mut next = Instant::now() + interval.mul_f64(c as f64 / connections as f64);
            while next < deadline {
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                }
                let scheduled = next;
                let body = template.with_control(counter.fetch_add(1, Ordering::Relaxed));
                match post(&mut sender, &headers, body).await {
                    Ok((202, b)) => {
                        if let Some(id) = serde_json::from_slice::<serde_json::Value>(&b)
                            .ok()
                            .and_then(|v| v["transactionId"].as_str().map(str::to_string))
                            && let Ok(mut m) = sent.lock()
                        {
                            m.insert(id, scheduled);
                        }
                    }
                    _ => refused += 1,
                }
                next += interval;
            }
            refused
        }));
    }
    let mut refused = 0;
    for t in tasks {
        refused += t.await?;
    }
    let submitted = sent.lock().map(|m| m.len()).unwrap_or(0);
    // Give the tail time to finish, then stop following.
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.notify_one();
    let (h999, h277, complete) = follower.await??;
    let elapsed = duration.as_secs_f64();
    Ok(json!({
        "mode": "e2e",
        "claims_per_interchange": template.claims,
        "offered_claims_per_sec": claims_per_sec,
        "seconds": elapsed,
        "transactions": submitted,
        "claims": submitted * template.claims,
        "refused": refused,
        "completed": complete,
        "accept_to_999": latency_json(&h999),
        "accept_to_277ca": latency_json(&h277),
    }))
}

type Follow = (Histogram<u64>, Histogram<u64>, u64);

/// Most acks kept while their submission's `202` has not been read.
const MAX_EARLY_ACKS: usize = 100_000;

/// Long-polls the partner's ack feed, timing each 999 and 277CA from its
/// transaction's scheduled submission.
async fn follow(
    addr: SocketAddr,
    key: String,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
    stop: Arc<tokio::sync::Notify>,
) -> anyhow::Result<Follow> {
    let (mut h999, mut h277) = (histogram(), histogram());
    let mut done: HashMap<String, u8> = HashMap::new();
    let mut complete = 0u64;
    // Acks seen before their submission's 202 was read here (the feed can
    // be that quick): timed once the submission is known.
    let mut early: Vec<(String, String, Instant)> = Vec::new();
    let mut sender = connect(addr).await?;
    let mut after = String::new();
    let stopped = stop.notified();
    tokio::pin!(stopped);
    loop {
        let path = if after.is_empty() {
            "/v1/acks?wait=1&limit=1000".to_string()
        } else {
            format!("/v1/acks?after={after}&wait=1&limit=1000")
        };
        let req = Request::get(path)
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(Bytes::new()))?;
        let resp = tokio::select! {
            _ = &mut stopped => None,
            r = async { sender.ready().await?; sender.send_request(req).await } => Some(r?),
        };
        let last = resp.is_none();
        let v: serde_json::Value = match resp {
            Some(resp) => serde_json::from_slice(&resp.into_body().collect().await?.to_bytes())?,
            // Stopped: a last pass over the acks seen early.
            None => serde_json::Value::Null,
        };
        let now = Instant::now();
        let seen = v["acks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a["transactionId"].as_str()?.to_string(), a["kind"].as_str()?.to_string(), now)));
        let mut pending: Vec<_> = std::mem::take(&mut early);
        pending.extend(seen);
        for (tx, kind, at_seen) in pending {
            let Some(at) = sent.lock().ok().and_then(|m| m.get(&tx).copied()) else {
                // Bounded: acks of transactions this run never sent are
                // not kept for ever.
                if early.len() < MAX_EARLY_ACKS {
                    early.push((tx, kind, at_seen));
                }
                continue;
            };
            let micros = at_seen.duration_since(at).as_micros().max(1) as u64;
            let bits = done.entry(tx).or_default();
            match kind.as_str() {
                "999" if *bits & 1 == 0 => {
                    *bits |= 1;
                    let _ = h999.record(micros);
                }
                "277ca" if *bits & 2 == 0 => {
                    *bits |= 2;
                    let _ = h277.record(micros);
                }
                _ => continue,
            }
            if *bits == 3 {
                complete += 1;
            }
        }
        if let Some(n) = v["next"].as_str() {
            after = n.to_string();
        }
        if last {
            break;
        }
    }
    Ok((h999, h277, complete))
}

// ---------------------------------------------------------------- bare --

async fn bare(listen: SocketAddr) -> anyhow::Result<serde_json::Value> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("bare listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                // Read the body, as the real server must.
                let _ = req.into_body().collect().await;
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"OK"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// A PBM that answers every D.0 request at once, each transaction paid
/// (the switch-path benchmark's upstream).
async fn pbm(listen: SocketAddr) -> anyhow::Result<serde_json::Value> {
    use clearway_formats::ncpdp::{self, answer};
    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("pbm listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let out = match ncpdp::read(&body, &ncpdp::Limits::default()) {
                    Ok(t) => {
                        let paid = answer::Outcome {
                            authorization: Some("BENCH".into()),
                            ..answer::Outcome::with_status(answer::status::PAID)
                        };
                        answer::respond(&t, &vec![paid; t.groups().min(4)]).to_bytes()
                    }
                    Err(_) => answer::reject_transmission(None, &body, &["R8"]).to_bytes(),
                };
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(out))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

// --------------------------------------------------------------- fsync --

fn fsync(dir: &std::path::Path, count: usize) -> anyhow::Result<serde_json::Value> {
    use std::io::Write;
    let path = dir.join("fsync-probe.tmp");
    let mut f = std::fs::OpenOptions::new().create(true).write(true).truncate(true).open(&path)?;
    let block = vec![0x5Au8; 4096];
    let mut h = histogram();
    for _ in 0..count {
        let t = Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        let _ = h.record(t.elapsed().as_micros().max(1) as u64);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(json!({ "mode": "fsync", "writes": count, "latency": latency_json(&h) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fresh control fields are written in place as the old `format!`
    /// wrote them: numbers of the field's width without a leading zero,
    /// times as HHMM, headers and trailers alike, the rest untouched.
    #[test]
    fn fresh_controls_are_numbers_of_their_width() {
        let mut body = Vec::new();
        clearway_formats::x12::synth::write(&mut body, clearway_formats::x12::synth::Kind::Eligibility270, 1, 7)
            .unwrap();
        let fields = control_fields(&body).unwrap();
        let t = Template {
            body: Vec::new(),
            isa13: 0..0,
            iea02: 0..0,
            claims: 0,
            fixed: vec![Bytes::from(body.clone())],
            controls: vec![fields.clone()],
            rx: None,
        };
        for n in [0u64, 7, 59, 61, 1439, 123_456_789, u64::MAX / 3] {
            let out = t.with_control(n);
            if n == 0 {
                // A D.0 template: a fresh, valid prescription number.
                let d0 = Template::ncpdp().unwrap();
                let a = clearway_formats::ncpdp::read(&d0.with_control(5), &Default::default()).unwrap();
                let b = clearway_formats::ncpdp::read(&d0.with_control(6), &Default::default()).unwrap();
                assert!(clearway_formats::ncpdp::validate::validate(&a).is_empty());
                let rx = |t: &clearway_formats::ncpdp::Transmission| {
                    t.segment("07", 1).unwrap().get("D2").unwrap().to_string()
                };
                assert_ne!(rx(&a), rx(&b));
            }
            let mut expected = body.clone();
            for (r, kind) in &fields {
                let v = match kind {
                    Control::Number => {
                        let w = r.len().min(18) as u32;
                        let low = 10u64.pow(w - 1);
                        format!("{:0w$}", low + n % (9 * low), w = r.len())
                    }
                    Control::Time => format!("{:02}{:02}", (n / 60) % 24, n % 60),
                };
                expected[r.clone()].copy_from_slice(v.as_bytes());
            }
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(&expected), "n = {n}");
        }
        assert!(fields.len() >= 10, "ISA13/IEA02, GS06/GE02, ST02/SE02, BHT03, TRN02 and the times");
    }
}
