//! TLS on the HTTP API and MLLP, checked from independent TLS stacks:
//! `curl` and `openssl s_client` (OpenSSL) and Python's `ssl`
//! (`scripts/tls_client.py`). Certificates are made by `openssl` per test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{Scratch, Server, frame};

/// A test CA and server certificates it signs.
struct Pki {
    dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        args.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Clearway Test CA"]);
        openssl(&dir, &args);
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Writes `<name>.pem` and `<name>.key`, serial `serial`.
    fn server(&self, name: &str, serial: u32) {
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let mut args = vec!["req"];
        args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]);
        args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
        openssl(&self.dir, &args);
        let serial = serial.to_string();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "ext",
            ],
        );
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A client certificate `<name>.pem` / `<name>.key` issued by this CA
    /// through `openssl ca` (which keeps the index a CRL is made from),
    /// valid from `start` to `end` (`YYYYMMDDHHMMSSZ`).
    fn client(&self, name: &str, start: &str, end: &str) {
        if !self.dir.join("ca.cnf").exists() {
            std::fs::write(
                self.dir.join("ca.cnf"),
                "[ca]\ndefault_ca = ca_default\n[ca_default]\ndir = .\ndatabase = index.txt\nnew_certs_dir = .\ncertificate = ca.pem\nprivate_key = ca.key\nserial = serial\ncrlnumber = crlnumber\ndefault_md = sha256\ndefault_crl_days = 2\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n",
            )
            .unwrap();
            std::fs::write(self.dir.join("index.txt"), "").unwrap();
            std::fs::write(self.dir.join("serial"), "5000\n").unwrap();
            std::fs::write(self.dir.join("crlnumber"), "01\n").unwrap();
            std::fs::write(self.dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        }
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        let subject = format!("/CN={name}");
        let mut args = vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        args.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&self.dir, &args);
        openssl(
            &self.dir,
            &[
                "ca",
                "-config",
                "ca.cnf",
                "-batch",
                "-notext",
                "-in",
                &csr,
                "-out",
                &pem,
                "-startdate",
                start,
                "-enddate",
                end,
                "-extfile",
                "client.ext",
            ],
        );
    }

    /// Revokes `<name>.pem` and writes `crl.pem`.
    fn revoke(&self, name: &str) {
        let pem = format!("{name}.pem");
        openssl(&self.dir, &["ca", "-config", "ca.cnf", "-batch", "-revoke", &pem]);
        openssl(&self.dir, &["ca", "-config", "ca.cnf", "-batch", "-gencrl", "-out", "crl.pem"]);
    }
}

fn tls_config(pki: &Pki, extra: &str) -> String {
    format!(
        "[tls]\ncert_file = {:?}\nkey_file = {:?}\n{extra}",
        pki.path("live.pem").display().to_string(),
        pki.path("live.key").display().to_string()
    )
}

fn client(mode: &str, addr: &str, ca: &Path, extra: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    let out = Command::new("python3").arg(script).args([mode, addr]).arg(ca).args(extra).output().unwrap();
    assert!(out.status.success(), "tls_client {mode}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn curl(args: &[&str]) -> (String, bool) {
    let out = Command::new("curl").args(["-s", "--max-time", "10"]).args(args).output().unwrap();
    (String::from_utf8_lossy(&out.stdout).to_string(), out.status.success())
}

fn adt(control: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|NORTH|CLEARWAY|HUB|20240101120000||ADT^A01^ADT_A01|{control}|P|2.5.1\r\
         EVN|A01|20240101120000\r\
         PID|1||12345^^^NORTH^MR||SAMPLE^PAT||19800101|F\r\
         PV1|1|I\r"
    )
}

fn start(extra: &str) -> (Scratch, Pki, Server, String) {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 0x1001);
    scratch.write_config(&tls_config(&pki, extra));
    let key = scratch.partner("lab", false);
    let server = Server::start(&scratch, Some("lab"), &[]);
    (scratch, pki, server, key)
}

#[test]
fn https_and_mllp_over_tls_end_to_end() {
    let (_scratch, pki, server, key) = start("");
    let ca = pki.ca().display().to_string();
    let base = format!("https://localhost:{}", server.http.port());
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let (body, ok) = curl(&["--cacert", &ca, "--resolve", &resolve, &format!("{base}/healthz")]);
    assert!(ok && body == "ok", "{body}");
    // Intake over HTTPS: 202 with the transaction.
    let auth = format!("Authorization: Bearer {key}");
    let msg = adt("TLS-1");
    let (body, ok) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-H",
        &auth,
        "-H",
        "Content-Type: application/hl7-v2",
        "--data-binary",
        &msg,
        &format!("{base}/v1/transactions"),
    ]);
    assert!(ok && body.contains("\"status\":\"ACCEPTED\""), "{body}");
    // MLLP over TLS with Python's ssl: the ACK after the durable write.
    let file = pki.path("adt.hl7");
    std::fs::write(&file, adt("TLS-2")).unwrap();
    let mllp = server.mllp.unwrap().to_string();
    assert_eq!(client("mllp", &mllp, &pki.ca(), &[file.to_str().unwrap()]), "AA");
    // TLS 1.3 is what a modern client gets.
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &server.http.to_string(), "-CAfile", &ca])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("TLSv1.3"), "{text}");
}

#[test]
fn old_protocols_and_plaintext_are_refused() {
    let (_scratch, _pki, server, _key) = start("");
    for (addr, what) in [(server.http, "http"), (server.mllp.unwrap(), "mllp")] {
        for version in ["-tls1", "-tls1_1"] {
            // SECLEVEL=0 lets OpenSSL offer the old version, so the refusal
            // is the server's.
            let out = Command::new("openssl")
                .args(["s_client", "-connect", &addr.to_string(), version, "-cipher", "DEFAULT@SECLEVEL=0"])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("Cipher is (NONE)"), "{what} {version}: {text}");
            assert!(text.contains("alert"), "{what} {version}: the server answered with an alert: {text}");
        }
        // The control: the same client settings with TLS 1.2 get through, so
        // the refusals above are the versions'; and a suite without forward
        // secrecy or AEAD is refused over 1.2.
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(["s_client", "-connect", &addr.to_string()])
                .args(args)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let ok = run(&["-tls1_2", "-cipher", "DEFAULT@SECLEVEL=0"]);
        assert!(ok.contains("Protocol  : TLSv1.2") && !ok.contains("Cipher is (NONE)"), "{what}: {ok}");
        let weak = run(&["-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"]);
        assert!(weak.contains("Cipher is (NONE)"), "{what}: a static-RSA CBC suite: {weak}");
    }
    // Plaintext HTTP to the TLS port: no HTTP answer, the connection closes.
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/"), "{}", String::from_utf8_lossy(&got));
    // Plaintext MLLP to the TLS listener: no ACK.
    let mut s = TcpStream::connect(server.mllp.unwrap()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(adt("PLAIN-1").as_bytes())).unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(!got.windows(3).any(|w| w == b"MSA"), "{}", String::from_utf8_lossy(&got));
}

#[test]
fn a_client_that_never_finishes_its_handshake_is_disconnected() {
    let (_scratch, pki, server, _key) = start("handshake_timeout_ms = 500\n");
    let started = Instant::now();
    let mut idle = TcpStream::connect(server.http).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed, not answered");
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(5), "{took:?}");
    // Counted by reason (/metrics is behind TLS too).
    let ca = pki.ca().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let url = format!("https://localhost:{}/metrics", server.http.port());
    let (metrics, ok) = curl(&["--cacert", &ca, "--resolve", &resolve, &url]);
    assert!(ok, "{metrics}");
    assert!(metrics.contains("clearway_tls_handshake_failures_total{reason=\"timeout\"} 1"), "{metrics}");
    // The served certificate's end of validity (2 days from now).
    let at: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("clearway_tls_certificate_expires_at_seconds "))
        .expect("the expiry gauge")
        .parse()
        .unwrap();
    let left = at - time::OffsetDateTime::now_utc().unix_timestamp() as f64;
    assert!((86_400.0..3.0 * 86_400.0).contains(&left), "{left}");
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections_and_a_bad_reload_keeps_the_old() {
    let (scratch, pki, server, _key) = start("");
    let addr = server.http.to_string();
    assert_eq!(client("serial", &addr, &pki.ca(), &[]), "1001");
    // A connection open across the reload keeps working.
    let go = scratch.root.path().join("go");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    let mut open = Command::new("python3")
        .arg(&script)
        .args(["keepalive", &addr])
        .arg(pki.ca())
        .arg(&go)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut out = std::io::BufReader::new(open.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut out, &mut first).unwrap();
    assert!(first.starts_with("first 200 1001"), "{first}");

    // New files, then SIGHUP: new handshakes get the new certificate
    // within a second.
    pki.server("next", 0x2002);
    std::fs::copy(pki.path("next.pem"), pki.path("live.pem")).unwrap();
    std::fs::copy(pki.path("next.key"), pki.path("live.key")).unwrap();
    let pid = server_pid(&scratch);
    let sent = Instant::now();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    loop {
        if client("serial", &addr, &pki.ca(), &[]) == "2002" {
            break;
        }
        // Within a second when idle; the bound allows for a busy CI machine.
        assert!(sent.elapsed() < Duration::from_secs(5), "the new certificate was not served within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&go, "").unwrap();
    let mut second = String::new();
    std::io::BufRead::read_line(&mut out, &mut second).unwrap();
    assert!(second.starts_with("second 200 1001"), "the old connection kept its session: {second}");
    let _ = open.wait();

    // A broken key: the reload fails, says why, and the old configuration stays.
    std::fs::write(pki.path("live.key"), "not a key").unwrap();
    Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scratch.logs().contains("TLS reload failed") {
        assert!(Instant::now() < deadline, "{}", scratch.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(scratch.logs().contains("live.key: no private key in it"), "{}", scratch.logs());
    assert_eq!(client("serial", &addr, &pki.ca(), &[]), "2002");
}

/// The pid of the `clearway serve` the scratch runs (its data directory is
/// on its command line).
fn server_pid(scratch: &Scratch) -> String {
    let data = scratch.data().display().to_string();
    let out = Command::new("pgrep").args(["-f", &format!("serve .*{data}")]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
    pids[0].to_string()
}

#[test]
fn start_up_names_a_bad_file_and_refuses_plaintext_off_loopback() {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 1);
    pki.server("other", 2);
    let run = |config: &str, listen: &str| {
        std::fs::write(scratch.config(), config).unwrap();
        let mut child = scratch
            .command()
            .args(["serve", "--listen", listen, "--mllp-listen", "127.0.0.1:0", "--data-dir"])
            .arg(scratch.data())
            .arg("--config")
            .arg(scratch.config())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // It either stops at once with a message or starts (and is stopped).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                return (status.success(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return (true, String::new());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let missing = format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", pki.path("nope.pem"), pki.path("live.key"));
    let (ok, err) = run(&missing, "127.0.0.1:0");
    assert!(!ok && err.contains("nope.pem: no such file"), "{err}");
    let mismatched = format!("[tls]\ncert_file = {:?}\nkey_file = {:?}\n", pki.path("live.pem"), pki.path("other.key"));
    let (ok, err) = run(&mismatched, "127.0.0.1:0");
    assert!(!ok && err.contains("other.key: this key does not match the certificate"), "{err}");
    let (ok, err) = run("", "0.0.0.0:0");
    assert!(!ok && err.contains("refusing to serve plaintext on 0.0.0.0"), "{err}");
    // Said explicitly (TLS ends at a load balancer): it starts.
    let (ok, err) = run("[tls]\nallow_plaintext = true\n", "0.0.0.0:0");
    assert!(ok, "{err}");
}

#[test]
fn mutual_tls_refuses_no_certificate_another_ca_a_revoked_and_an_expired_one() {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 0x1001);
    let valid = ("20200101000000Z", "20991231000000Z");
    pki.client("good", valid.0, valid.1);
    pki.client("revoked", valid.0, valid.1);
    pki.client("expired", "20200101000000Z", "20200102000000Z");
    pki.revoke("revoked");
    // Another CA, with a client certificate of its own.
    let other = Pki::new(&scratch.root.path().join("other"));
    other.client("stranger", valid.0, valid.1);
    scratch.write_config(&tls_config(
        &pki,
        &format!(
            "client_ca_file = {:?}\ncrl_files = [{:?}]\nclient_auth = \"required\"\n",
            pki.ca().display().to_string(),
            pki.path("crl.pem").display().to_string()
        ),
    ));
    scratch.partner("lab", false);
    let server = Server::start(&scratch, Some("lab"), &[]);
    let ca = pki.ca().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let url = format!("https://localhost:{}/healthz", server.http.port());
    let with = |p: &Pki, name: &str| {
        let (cert, key) = (p.path(&format!("{name}.pem")), p.path(&format!("{name}.key")));
        curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &url,
        ])
    };
    assert_eq!(with(&pki, "good"), ("ok".to_string(), true), "a certificate of the configured CA");
    assert!(!curl(&["--cacert", &ca, "--resolve", &resolve, &url]).1, "no certificate");
    assert!(!with(&other, "stranger").1, "another CA's certificate");
    assert!(!with(&pki, "revoked").1, "a revoked certificate (CRL)");
    assert!(!with(&pki, "expired").1, "an expired certificate");
    let (metrics, ok) = {
        let (cert, key) = (pki.path("good.pem"), pki.path("good.key"));
        let url = format!("https://localhost:{}/metrics", server.http.port());
        curl(&[
            "--cacert",
            &ca,
            "--resolve",
            &resolve,
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            &url,
        ])
    };
    assert!(ok);
    assert!(metrics.contains("clearway_tls_handshake_failures_total{reason=\"no-client-certificate\"}"), "{metrics}");
    assert!(metrics.contains("clearway_tls_handshake_failures_total{reason=\"bad-client-certificate\"}"), "{metrics}");
}

#[test]
fn partners_bound_to_certificates_need_them_and_mllp_knows_partners_by_theirs() {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 0x1001);
    let valid = ("20200101000000Z", "20991231000000Z");
    for name in ["alice", "alice2", "bob"] {
        pki.client(name, valid.0, valid.1);
    }
    scratch.write_config(&tls_config(
        &pki,
        &format!("client_ca_file = {:?}\nclient_auth = \"optional\"\n", pki.ca().display().to_string()),
    ));
    scratch.partner("lab", false);
    let a_key = scratch.partner("acme", false);
    let b_key = scratch.partner("beta", false);
    let bind = |args: &[&str]| {
        let out =
            scratch.command().args(["partners"]).args(args).arg("--data-dir").arg(scratch.data()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let alice = pki.path("alice.pem");
    let fp = bind(&["bind-cert", "--id", "acme", "--cert", alice.to_str().unwrap()]);
    // The same fingerprint as OpenSSL computes.
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&alice)
        .output()
        .unwrap();
    let openssl_fp =
        String::from_utf8_lossy(&out.stdout).trim().rsplit('=').next().unwrap().replace(':', "").to_lowercase();
    assert_eq!(fp, openssl_fp);
    let server = Server::start(&scratch, Some("lab"), &[]);
    let ca = pki.ca().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let url = format!("https://localhost:{}/v1/acks", server.http.port());
    let get = |key: &str, cert: Option<&str>| {
        let auth = format!("Authorization: Bearer {key}");
        let mut args = vec!["-o".to_string(), "/dev/null".into(), "-w".into(), "%{http_code}".into()];
        args.extend(["--cacert".into(), ca.clone(), "--resolve".into(), resolve.clone(), "-H".into(), auth]);
        if let Some(c) = cert {
            args.extend(["--cert".into(), pki.path(&format!("{c}.pem")).display().to_string()]);
            args.extend(["--key".into(), pki.path(&format!("{c}.key")).display().to_string()]);
        }
        args.push(url.clone());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&refs).0
    };
    assert_eq!(get(&a_key, Some("alice")), "200", "its key with its certificate");
    assert_eq!(get(&a_key, None), "401", "its key alone");
    assert_eq!(get(&a_key, Some("bob")), "401", "its key with a certificate not bound to it");
    assert_eq!(get(&b_key, Some("alice")), "401", "another partner's key with its certificate");
    assert_eq!(get(&b_key, None), "200", "a partner bound to no certificate: its key");

    // Rotation: a second slot, then the old one removed.
    bind(&["bind-cert", "--id", "acme", "--cert", pki.path("alice2.pem").to_str().unwrap()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&a_key, Some("alice2")) != "200" {
        assert!(Instant::now() < deadline, "the new certificate is taken within seconds");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&a_key, Some("alice")), "200", "both while both are bound");
    bind(&["unbind-cert", "--id", "acme", "--fingerprint", &fp]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(&a_key, Some("alice")) != "401" {
        assert!(Instant::now() < deadline, "the old certificate is refused within seconds");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&a_key, Some("alice2")), "200");

    // MLLP over TLS: alice2's connection is acme's, whatever the listener's
    // partner; its acknowledgement shows up in acme's feed.
    let file = pki.path("adt.hl7");
    std::fs::write(&file, adt("MTLS-1")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["mllp", &server.mllp.unwrap().to_string()])
        .arg(pki.ca())
        .arg(&file)
        .env("TLS_CLIENT_CERT", pki.path("alice2.pem"))
        .env("TLS_CLIENT_KEY", pki.path("alice2.key"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "AA", "{}", String::from_utf8_lossy(&out.stderr));
    // A certificate of the CA bound to no partner (now alice's, unbound):
    // refused, not taken as the listener's partner.
    let out = Command::new("python3")
        .arg(&script)
        .args(["mllp", &server.mllp.unwrap().to_string()])
        .arg(pki.ca())
        .arg(&file)
        .env("TLS_CLIENT_CERT", pki.path("alice.pem"))
        .env("TLS_CLIENT_KEY", pki.path("alice.key"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "closed without an ACK: {}", String::from_utf8_lossy(&out.stdout));
    let auth = format!("Authorization: Bearer {a_key}");
    let (cert, key) = (pki.path("alice2.pem"), pki.path("alice2.key"));
    let feed = format!("{url}?wait=20");
    let (body, ok) = curl(&[
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-H",
        &auth,
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        &feed,
    ]);
    assert!(ok && body.contains("\"kind\":\"hl7\""), "the message is acme's: {body}");
}

#[test]
fn a_payer_over_https_with_its_own_ca_and_our_client_certificate() {
    use clearway_formats::ncpdp::{self, answer, synth};
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("pbm", 0x3003);
    let valid = ("20200101000000Z", "20991231000000Z");
    pki.client("switch", valid.0, valid.1);
    // The PBM (Python, ssl): HTTPS with a client certificate required.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pbm_simulator.py");
    let mut pbm = Command::new("python3")
        .arg(script)
        .arg("--tls")
        .args([pki.path("pbm.pem"), pki.path("pbm.key"), pki.ca()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(pbm.stdout.take().unwrap()), &mut line).unwrap();
    let port = line.trim().rsplit(':').next().unwrap().to_string();
    let url = format!("https://localhost:{port}/d0");
    let p = |f: &str| pki.path(f).display().to_string();
    scratch.write_config(&format!(
        r#"
[fastpath]
timeout_ms = 3000

[payers.PBM1]
connector = "http"
connector_url = "{url}"
tls_ca_file = "{ca}"
tls_client_cert_file = "{cert}"
tls_client_key_file = "{key}"

[payers.PBM2]
connector = "http"
connector_url = "{url}"
tls_ca_file = "{ca}"

[payers.PBM3]
connector = "http"
connector_url = "{url}"

[pharmacy]
routes = [
  {{ bin = "610020", pcn = "WITHCERT", payer = "PBM1" }},
  {{ bin = "610020", pcn = "NOCERT", payer = "PBM2" }},
  {{ bin = "610020", pcn = "WEBPKI", payer = "PBM3" }},
]
"#,
        ca = p("ca.pem"),
        cert = p("switch.pem"),
        key = p("switch.key"),
    ));
    let key = scratch.partner("pharmacy1", false);
    let server = Server::start(&scratch, None, &[]);
    let auth = format!("Bearer {key}");
    let send = |pcn: &str, rx: &str| {
        let mut r = synth::Request::b1("610020", pcn, rx);
        let today = time::OffsetDateTime::now_utc().date();
        r.date_of_service = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
        let resp = support::request(
            server.http,
            "POST",
            "/v1/pharmacy",
            &[("Authorization", auth.as_str()), ("Content-Type", "application/vnd.ncpdp.d0")],
            &synth::request(&r),
        );
        assert_eq!(resp.status, 200, "{}", resp.text());
        let t = ncpdp::read(&resp.body, &ncpdp::Limits::default()).unwrap();
        let (_, o) = answer::outcomes(&t).unwrap();
        (o[0].status.clone(), o[0].rejects.clone())
    };
    assert_eq!(send("WITHCERT", "9100001"), ("P".to_string(), vec![]), "our CA and our client certificate: paid");
    // Without our certificate the PBM refuses the handshake; with the web
    // PKI roots we do not trust the PBM's: both are the payer failing (92).
    assert_eq!(send("NOCERT", "9100002"), ("R".to_string(), vec!["92".to_string()]));
    assert_eq!(send("WEBPKI", "9100003"), ("R".to_string(), vec!["92".to_string()]));
    let _ = pbm.kill();
    let _ = pbm.wait();
    drop(server);

    // A payer TLS file that cannot be used stops serve, naming it.
    std::fs::write(pki.path("ca.pem"), "not a certificate").unwrap();
    let out = scratch
        .command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(scratch.data())
        .arg("--config")
        .arg(scratch.config())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("payers.PBM1") && err.contains("ca.pem"), "{err}");
}

#[test]
fn each_listener_asks_for_client_certificates_its_own_way() {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 0x1001);
    pki.client("lab-cert", "20200101000000Z", "20991231000000Z");
    // HTTP without client certificates, the main MLLP listener requiring
    // them, a second MLLP listener where they are optional.
    let config = format!(
        "{}\n[server]\nclient_auth = \"none\"\n\n[mllp]\nclient_auth = \"required\"\n\n[[mllp.listeners]]\nlisten = \"127.0.0.1:0\"\npartner = \"clinic\"\nclient_auth = \"optional\"\n",
        tls_config(&pki, &format!("client_ca_file = {:?}\n", pki.ca().display().to_string()))
    );
    scratch.write_config(&config);
    scratch.partner("lab", false);
    scratch.partner("clinic", false);
    let out = scratch
        .command()
        .args(["partners", "bind-cert", "--id", "lab", "--cert"])
        .arg(pki.path("lab-cert.pem"))
        .arg("--data-dir")
        .arg(scratch.data())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = Server::start(&scratch, Some("lab"), &[]);
    let ca = pki.ca().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let url = format!("https://localhost:{}/healthz", server.http.port());
    assert_eq!(curl(&["--cacert", &ca, "--resolve", &resolve, &url]), ("ok".to_string(), true), "HTTP asks for none");

    let file = pki.path("adt.hl7");
    std::fs::write(&file, adt("PERLISTENER-1")).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    let mllp = |addr: std::net::SocketAddr, cert: Option<&str>| {
        let mut cmd = Command::new("python3");
        cmd.arg(&script).args(["mllp", &addr.to_string()]).arg(pki.ca()).arg(&file);
        if let Some(name) = cert {
            cmd.env("TLS_CLIENT_CERT", pki.path(&format!("{name}.pem")));
            cmd.env("TLS_CLIENT_KEY", pki.path(&format!("{name}.key")));
        }
        let out = cmd.output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let main = server.mllp_all.iter().find(|(_, p)| p == "lab").unwrap().0;
    let clinic = server.mllp_all.iter().find(|(_, p)| p == "clinic").unwrap().0;
    assert!(!mllp(main, None).0, "the main listener requires a certificate");
    // Refused by the handshake itself, not later by the partner check.
    let metrics = curl(&["--cacert", &ca, "--resolve", &resolve, &url.replace("/healthz", "/metrics")]).0;
    assert!(metrics.contains("clearway_tls_handshake_failures_total{reason=\"no-client-certificate\"}"), "{metrics}");
    assert_eq!(mllp(main, Some("lab-cert")), (true, "AA".to_string()), "and takes one bound to its partner");
    assert_eq!(mllp(clinic, None), (true, "AA".to_string()), "the second listener takes a client without one");
}

#[test]
fn a_long_lived_mllp_connection_closes_once_its_certificate_is_unbound() {
    let scratch = Scratch::new();
    let pki = Pki::new(scratch.root.path());
    pki.server("live", 0x1001);
    pki.client("alice", "20200101000000Z", "20991231000000Z");
    pki.client("bob", "20200101000000Z", "20991231000000Z");
    scratch.write_config(&tls_config(
        &pki,
        &format!("client_ca_file = {:?}\nclient_auth = \"optional\"\n", pki.ca().display().to_string()),
    ));
    scratch.partner("lab", false);
    scratch.partner("acme", false);
    scratch.partner("beta", false);
    let partners = |args: &[&str]| {
        let out =
            scratch.command().args(["partners"]).args(args).arg("--data-dir").arg(scratch.data()).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let fp = partners(&["bind-cert", "--id", "acme", "--cert", pki.path("alice.pem").to_str().unwrap()]);
    partners(&["bind-cert", "--id", "beta", "--cert", pki.path("bob.pem").to_str().unwrap()]);
    let server = Server::start(&scratch, Some("lab"), &[]);
    let wait = pki.path("go");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    // Two long-lived connections: alice's (acme) and, as the control,
    // bob's (beta), which stays bound.
    let open = |who: &str, control: &str| {
        let file = pki.path(&format!("{who}.hl7"));
        std::fs::write(&file, adt(control)).unwrap();
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["mllp-twice", &server.mllp.unwrap().to_string()])
            .arg(pki.ca())
            .arg(&file)
            .arg(&wait)
            .env("TLS_CLIENT_CERT", pki.path(&format!("{who}.pem")))
            .env("TLS_CLIENT_KEY", pki.path(&format!("{who}.key")))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        (child, lines)
    };
    let (mut alice, mut alice_out) = open("alice", "LONG-A");
    let (mut bob, mut bob_out) = open("bob", "LONG-B");
    assert_eq!(alice_out.next().unwrap().unwrap(), "first AA", "acme's certificate is taken");
    assert_eq!(bob_out.next().unwrap().unwrap(), "first AA", "beta's certificate is taken");
    partners(&["unbind-cert", "--id", "acme", "--fingerprint", &fp]);
    // The connection's partner is looked up again once its last check is
    // older than the partner cache's lifetime.
    std::thread::sleep(clearway_core::partners::CACHE_TTL + Duration::from_millis(500));
    std::fs::write(&wait, "").unwrap();
    assert_eq!(alice_out.next().unwrap().unwrap(), "second closed", "the unbound certificate's connection is closed");
    assert_eq!(bob_out.next().unwrap().unwrap(), "second AA", "a connection still bound goes on");
    alice.wait().unwrap();
    bob.wait().unwrap();
}

#[test]
fn https_connections_over_the_cap_are_closed_at_once() {
    let (_scratch, pki, server, _key) = start("\n[server]\nmax_connections = 2\n");
    let ca = pki.ca().display().to_string();
    let resolve = format!("localhost:{}:127.0.0.1", server.http.port());
    let url = format!("https://localhost:{}/healthz", server.http.port());
    let wait = pki.path("release");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tls_client.py");
    // Two keep-alive connections hold both places.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["keepalive", &server.http.to_string()])
            .arg(pki.ca())
            .arg(&wait)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        assert!(lines.next().unwrap().unwrap().starts_with("first 200"));
        held.push((child, lines));
    }
    assert!(!curl(&["--cacert", &ca, "--resolve", &resolve, &url]).1, "a third connection is closed");
    std::fs::write(&wait, "").unwrap();
    for (mut child, mut lines) in held {
        assert!(lines.next().unwrap().unwrap().starts_with("second 200"), "the held connections go on");
        child.wait().unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !curl(&["--cacert", &ca, "--resolve", &resolve, &url]).1 {
        assert!(Instant::now() < deadline, "a place is free again once they close");
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = curl(&["--cacert", &ca, "--resolve", &resolve, &url.replace("/healthz", "/metrics")]).0;
    assert!(metrics.contains("clearway_http_connections_refused_total"), "{metrics}");
}
