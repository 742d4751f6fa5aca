//! The key lifecycle over real processes and the real stores: objects
//! sealed under one version, `clearway keys rotate`, `rewrap` (killed with
//! SIGKILL at 20 points), `destroy` and `shred`; the root key kept out of
//! the data directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use bytes::Bytes;
use clearway_core::keys::{self, payload_aad};
use clearway_core::partners::Partners;
use clearway_core::{BlobKey, PartnerId, TransactionId};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{Client, Scratch, Server};

fn clearway(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    scratch.run(args)
}

/// `keys status --verify --json` for one partner: (objects, unreadable,
/// objects by version).
fn status(scratch: &Scratch, partner: &str) -> (u64, u64, serde_json::Value) {
    let out = clearway(scratch, &["keys", "status", "--partner", partner, "--verify", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("status: {}", String::from_utf8_lossy(&out.stderr)));
    let o = &v[0]["objects"];
    (o["objects"].as_u64().unwrap(), o["unreadable"].as_u64().unwrap(), o["byVersion"].clone())
}

const MARKER: &str = "PHI-MARKER-ZEBULON";

/// A partner's payload: the marker, the partner and a number; every 200th
/// one larger than the database keeps inline, so it lives in a file.
fn body(partner: &str, n: usize) -> Vec<u8> {
    let mut b = format!("{MARKER} {partner} {n:05} ").into_bytes();
    if n % 200 == 7 {
        b.resize(300 * 1024, b'x');
    }
    b
}

struct Objects {
    partners: Arc<Partners>,
    ports: clearway_core::ports::Ports,
    records: Arc<clearway_core::sealed::SealedState>,
}

impl Objects {
    async fn open(scratch: &Scratch) -> Objects {
        let sealed = scratch.sealed().await;
        Objects { partners: Arc::new(sealed.partners), ports: sealed.ports, records: sealed.records }
    }

    /// Seals and stores `count` payloads for `partner` the way intake does.
    async fn write(&self, partner: &str, from: usize, count: usize) {
        let p = PartnerId::new(partner).unwrap();
        // The partner's keys as a fresh process sees them (a rotation by
        // another process reaches cached ones within seconds).
        self.partners.keys().forget(&p);
        let mut tasks = tokio::task::JoinSet::new();
        for n in from..from + count {
            let (partners, blobs, p) = (self.partners.clone(), self.ports.blobs.clone(), p.clone());
            tasks.spawn(async move {
                let id = TransactionId::new();
                let key = BlobKey::for_transaction(&p, time::macros::date!(2026 - 12 - 06), &id);
                let sealed = partners.seal(&p, &body(p.as_str(), n), payload_aad(&id, &p).as_bytes()).await.unwrap();
                blobs.put(&key, Bytes::from(sealed)).await.unwrap();
            });
            if tasks.len() >= 32 {
                tasks.join_next().await;
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// Writes `count` state records of `partner`, each holding the marker:
    /// half in the partner's own partition of the transactions table, half
    /// claim index entries in partitions every partner shares (the writer
    /// names the owner).
    async fn write_records(&self, partner: &str, count: usize) {
        use clearway_core::ports::{Condition, WriteOp};
        let p = PartnerId::new(partner).unwrap();
        for n in 0..count {
            let value = serde_json::json!({ "partner": partner, "note": format!("{MARKER} {partner} record {n}") });
            self.ports
                .state
                .write(vec![WriteOp::Put {
                    key: record_key(partner, n),
                    value: Bytes::from(value.to_string()),
                    expires_at: None,
                    condition: Condition::None,
                    owner: (n % 2 == 1).then(|| p.clone()),
                }])
                .await
                .unwrap();
        }
    }

    /// How many of `partner`'s `count` records read back with the marker.
    async fn records_readable(&self, partner: &str, count: usize) -> usize {
        let mut readable = 0;
        for n in 0..count {
            if let Some(item) = self.ports.state.get(&record_key(partner, n)).await.unwrap() {
                assert!(item.value.windows(MARKER.len()).any(|w| w == MARKER.as_bytes()));
                readable += 1;
            }
        }
        readable
    }

    /// How many of `partner`'s objects open, of how many.
    async fn readable(&self, partner: &str) -> (u64, u64) {
        let p = PartnerId::new(partner).unwrap();
        let c = keys::census(self.partners.keys(), self.ports.blobs.as_ref(), &self.records, &p, true).await.unwrap();
        (c.objects - c.unreadable, c.objects)
    }
}

/// Where [`Objects::write_records`] puts record `n` of a partner.
fn record_key(partner: &str, n: usize) -> clearway_core::ports::Key {
    use clearway_core::ports::{Key, Table};
    if n.is_multiple_of(2) {
        Key::new(Table::Transactions, partner, format!("record-{n}"))
    } else {
        Key::new(Table::Claims, format!("pcn:shared-{}", n % 4), format!("{partner}-{n}"))
    }
}

/// State records each partner gets in the lifecycle.
const RECORDS: usize = 20;

async fn kms(scratch: &Scratch) -> clearway_aws::kms::KmsKeyService {
    let sdk = clearway_aws::local_server_config(&scratch.env_value("AWS_ENDPOINT_URL")).await;
    clearway_aws::kms::KmsKeyService::new(&sdk)
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Every file under `dir` that contains `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

/// Waits until a rotation is older than `keys destroy`'s settling time.
fn settle() {
    std::thread::sleep(clearway_core::partners::CACHE_TTL * 2 + Duration::from_millis(300));
}

#[test]
fn rotate_rewrap_destroy_with_kills_then_shred_one_partner() {
    lifecycle(&Scratch::new(), 1000, 20);
}

#[test]
fn the_lifecycle_on_the_aws_backend() {
    lifecycle(&Scratch::aws(), 40, 3);
}

/// `per_version` objects under version 1 (and [`RECORDS`] state records),
/// a rotation, as many under version 2; `kills` re-wraps killed at
/// pseudo-random points; a shred.
fn lifecycle(scratch: &Scratch, per_version: usize, kills: usize) {
    let records = RECORDS as u64;
    let total = 2 * per_version as u64 + records;
    let on_v1 = per_version as u64 + records;
    scratch.partner("alpha", false);
    scratch.partner("bravo", false);
    let rt = rt();
    let objects = rt.block_on(Objects::open(scratch));

    // 1,000 objects under version 1, rotate, 1,000 under version 2.
    assert!(scratch.run_ok(&["keys", "rotate", "--partner", "alpha"]).contains("active 1"));
    rt.block_on(objects.write("alpha", 0, per_version));
    rt.block_on(objects.write_records("alpha", RECORDS));
    assert!(scratch.run_ok(&["keys", "rotate", "--partner", "alpha"]).contains("active 2"));
    rt.block_on(objects.write("alpha", per_version, per_version));
    rt.block_on(objects.write("bravo", 0, 30));
    rt.block_on(objects.write_records("bravo", RECORDS));
    let (n, bad, by) = status(scratch, "alpha");
    assert_eq!((n, bad), (total, 0), "2,000/2,000 readable after a rotation");
    assert_eq!(by, serde_json::json!({ "1": on_v1, "2": per_version }));

    // Version 1 cannot go while objects name it; re-wrap moves them.
    settle();
    let refused = clearway(scratch, &["keys", "destroy", "--partner", "alpha", "--version", "1"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains(&format!("{on_v1} stored objects still name version 1")));
    let out = scratch.run_ok(&["keys", "rewrap", "--partner", "alpha", "--max-per-second", "0"]);
    assert!(out.contains(&format!("examined {total}\tre-wrapped {on_v1}\tfailed 0")), "{out}");
    let again = scratch.run_ok(&["keys", "rewrap", "--partner", "alpha", "--max-per-second", "0"]);
    assert!(again.contains("re-wrapped 0"), "re-wrap is idempotent: {again}");
    let out = scratch.run_ok(&["keys", "destroy", "--partner", "alpha"]);
    assert!(out.contains("version 0 destroyed") && out.contains("version 1 destroyed"), "{out}");
    let (n, bad, by) = status(scratch, "alpha");
    assert_eq!((n, bad), (total, 0), "2,000/2,000 readable with version 1 destroyed");
    assert_eq!(by, serde_json::json!({ "2": total }));

    // SIGKILL during re-wrap at 20 points, each after a new rotation, then
    // one run to the end: nothing unreadable.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut interrupted = 0;
    for _ in 0..kills {
        scratch.run_ok(&["keys", "rotate", "--partner", "alpha"]);
        let data = scratch.data().display().to_string();
        let mut child = scratch
            .command()
            .args(["keys", "rewrap", "--partner", "alpha", "--max-per-second", "0", "--data-dir", &data])
            .args(scratch.backend_args())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(30 + seed % 900));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let (n, bad, _) = status(scratch, "alpha");
        assert_eq!((n, bad), (total, 0), "no object unreadable after a kill");
    }
    eprintln!("{interrupted} of {kills} re-wraps killed before they finished");
    assert!(interrupted * 2 >= kills, "most kills land inside a re-wrap ({interrupted} of {kills})");
    let out = scratch.run_ok(&["keys", "rewrap", "--partner", "alpha", "--max-per-second", "0"]);
    assert!(out.contains("failed 0"), "{out}");
    settle();
    scratch.run_ok(&["keys", "destroy", "--partner", "alpha"]);
    let (n, bad, by) = status(scratch, "alpha");
    assert_eq!((n, bad), (total, 0), "2,000/2,000 readable after 20 kills and the old versions destroyed");
    assert_eq!(by.as_object().unwrap().len(), 1, "every object on the active version: {by}");
    assert_eq!(rt.block_on(objects.records_readable("alpha", RECORDS)), RECORDS, "every record reads back");

    // A's ciphertext pasted into B's record does not open.
    rt.block_on(async {
        let a = PartnerId::new("alpha").unwrap();
        let b = PartnerId::new("bravo").unwrap();
        let id = TransactionId::new();
        let sealed = objects.partners.seal(&a, b"pasted", payload_aad(&id, &a).as_bytes()).await.unwrap();
        assert!(objects.partners.open(&b, &sealed, payload_aad(&id, &b).as_bytes()).await.is_err());
        assert!(objects.partners.open(&b, &sealed, payload_aad(&id, &a).as_bytes()).await.is_err());
        assert_eq!(objects.partners.open(&a, &sealed, payload_aad(&id, &a).as_bytes()).await.unwrap(), b"pasted");
    });

    // Shred A: every A object fails, every B object opens, and no payload
    // marker is anywhere in the data directory.
    let refused = clearway(scratch, &["keys", "shred", "--partner", "alpha"]);
    assert!(!refused.status.success(), "shred needs its confirmation");
    assert_eq!(rt.block_on(objects.readable("alpha")), (total, total), "an unconfirmed shred destroys nothing");
    let out = scratch.run_ok(&["keys", "shred", "--partner", "alpha", "--confirm", "alpha"]);
    assert!(out.contains(&format!("unreadable {total}")), "{out}");
    std::thread::sleep(clearway_core::partners::CACHE_TTL);
    assert_eq!(rt.block_on(objects.readable("alpha")), (0, total), "100 % of A's objects fail to open");
    assert_eq!(rt.block_on(objects.readable("bravo")), (30 + records, 30 + records), "100 % of B's objects open");
    // A's records read as erased, B's, in the same claim partitions, read.
    objects.partners.keys().forget(&PartnerId::new("alpha").unwrap());
    assert_eq!(rt.block_on(objects.records_readable("alpha", RECORDS)), 0, "A's records are erased");
    assert_eq!(rt.block_on(objects.records_readable("bravo", RECORDS)), RECORDS, "B's records read");
    rt.block_on(async {
        let shared = objects.ports.state.query(clearway_core::ports::Table::Claims, "pcn:shared-1", None, 100);
        let names: Vec<String> = shared.await.unwrap().into_iter().map(|(sk, _)| sk).collect();
        assert!(!names.is_empty() && names.iter().all(|sk| sk.starts_with("bravo-")), "{names:?}");
    });
    let (_, bad, _) = status(scratch, "bravo");
    assert_eq!(bad, 0);
    match scratch.lane() {
        support::Lane::Local => {
            assert!(out.contains("log truncated"), "{out}");
            assert!(files_containing(&scratch.data(), MARKER.as_bytes()).is_empty(), "no plaintext marker on disk");
        }
        support::Lane::Aws => {
            let marker = MARKER.as_bytes();
            let hits =
                scratch.aws_raw_contents().into_iter().filter(|(_, b)| b.windows(marker.len()).any(|w| w == marker));
            assert_eq!(hits.count(), 0, "no plaintext marker in any object or item");
        }
    }
    let rotate = clearway(scratch, &["keys", "rotate", "--partner", "alpha"]);
    assert!(!rotate.status.success(), "a shredded partner gets no new keys");
    let listed = scratch.run_ok(&["partners", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let alpha = list.as_array().unwrap().iter().find(|p| p["id"] == "alpha").unwrap();
    assert_eq!(alpha["revoked"], true, "a shredded partner is revoked: {alpha}");
}

#[test]
fn a_partner_key_in_kms_wraps_its_versions_and_a_shred_schedules_its_deletion() {
    let scratch = Scratch::aws();
    scratch.partner("kilo", false);
    let rt = rt();
    let kms = rt.block_on(kms(&scratch));
    let key_id = rt.block_on(kms.create_key("partner kilo")).unwrap();
    // Operators name the key by its alias (Terraform's output); the
    // versions record the key's ARN, which deletion and decryption need.
    // (One alias per run: the AWS-protocol server outlives test runs.)
    let alias = format!("alias/clearway-test-kilo-{}", &key_id[..8]);
    rt.block_on(kms.create_alias(&alias, &key_id)).unwrap();
    let objects = rt.block_on(Objects::open(&scratch));
    rt.block_on(objects.write("kilo", 0, 5));
    let out = scratch.run_ok(&["keys", "rotate", "--partner", "kilo", "--kms-key-id", &alias]);
    assert!(out.contains("active 1"), "{out}");
    rt.block_on(objects.write("kilo", 5, 15));
    // Later rotations stay on the partner's KMS key.
    scratch.run_ok(&["keys", "rotate", "--partner", "kilo"]);
    let out = scratch.run_ok(&["keys", "status", "--partner", "kilo", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let versions = v[0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 3);
    assert!(versions[0].get("kmsKeyId").is_none(), "version 0 is the root key's");
    for v in &versions[1..] {
        let arn = v["kmsKeyId"].as_str().unwrap();
        assert!(arn.starts_with("arn:") && arn.ends_with(&key_id), "the key's ARN, not the alias: {arn}");
    }
    assert!(scratch.run_ok(&["keys", "rewrap", "--partner", "kilo"]).contains("re-wrapped 20"));
    settle();
    scratch.run_ok(&["keys", "destroy", "--partner", "kilo"]);
    let (n, bad, by) = status(&scratch, "kilo");
    assert_eq!((n, bad), (20, 0));
    assert_eq!(by, serde_json::json!({ "2": 20 }));

    // What the store keeps of version 2 is a KMS ciphertext bound to the
    // partner and version: the root key alone does not open it, nor does
    // KMS under another partner's name.
    rt.block_on(async {
        use clearway_core::keys::{KekRecord, KeyService};
        let p = PartnerId::new("kilo").unwrap();
        let item = objects.ports.state.get(&KekRecord::key(&p, 2)).await.unwrap().unwrap();
        let kek: KekRecord = serde_json::from_slice(&item.value).unwrap();
        assert!(kek.kms_key_id.as_deref().is_some_and(|k| k.ends_with(&key_id)));
        let wrapped = hex::decode(&kek.wrapped).unwrap();
        let (root, _) = clearway_core::partners::load_root_key(&scratch.security(), &scratch.data(), false).unwrap();
        assert!(root.open(&wrapped, b"kek|kilo|2").is_err());
        let ctx = |p: &str| [("clearway:partner", p.to_string()), ("clearway:kek-version", "2".to_string())];
        assert_eq!(kms.decrypt(&key_id, &wrapped, &ctx("kilo")).await.unwrap().len(), 32);
        assert!(kms.decrypt(&key_id, &wrapped, &ctx("lima")).await.is_err());
    });

    let out = scratch.run_ok(&[
        "keys",
        "shred",
        "--partner",
        "kilo",
        "--confirm",
        "kilo",
        "--schedule-kms-key-deletion-days",
        "7",
    ]);
    assert!(out.contains("unreadable 20") && out.contains("scheduled for deletion in 7 days"), "{out}");
    assert_eq!(rt.block_on(kms.key_state(&key_id)).unwrap(), "PendingDeletion");
}

#[test]
fn the_service_reads_across_a_rotation_and_a_shredded_partner_is_refused() {
    let scratch = Scratch::new();
    let key = scratch.partner("acme", false);
    let server = Server::start(&scratch, None, &[]);
    let c = Client { addr: server.http, key };
    let submit = |seed: u64| {
        let mut v = Vec::new();
        clearway_formats::x12::synth::write(&mut v, clearway_formats::x12::synth::Kind::Professional837, 1, seed)
            .unwrap();
        let r = c.submit("application/edi-x12", &v, &[]);
        assert_eq!(r.status, 202, "{}", r.text());
        r.json()["transactionId"].as_str().unwrap().to_string()
    };
    let first = submit(1);
    assert_eq!(c.wait_terminal(&first)["status"], "accepted");
    scratch.run_ok(&["keys", "rotate", "--partner", "acme"]);
    // The service sees the rotation within its cache's few seconds.
    std::thread::sleep(clearway_core::partners::CACHE_TTL + Duration::from_millis(500));
    let second = submit(2);
    assert_eq!(c.wait_terminal(&second)["status"], "accepted");
    let (n, bad, by) = status(&scratch, "acme");
    // Each transaction: its payload, the bodies of its 999 and 277CA, and
    // six state records (the transaction record, two acknowledgement
    // records and their feed entries, the claim index entry).
    assert_eq!((n, bad), (18, 0));
    assert_eq!(by, serde_json::json!({ "0": 9, "1": 9 }), "one transaction under each version");
    let out = scratch.run_ok(&["keys", "rewrap", "--partner", "acme"]);
    // An acknowledgement record rewritten with its body re-wrapped is
    // sealed under the active version by that write: 7 writes move 9.
    assert!(out.contains("examined 18\tre-wrapped 7\tfailed 0"), "{out}");
    assert_eq!(status(&scratch, "acme").2, serde_json::json!({ "1": 18 }));
    settle();
    scratch.run_ok(&["keys", "destroy", "--partner", "acme", "--version", "0"]);
    assert_eq!(c.get(&format!("/v1/transactions/{first}")).status, 200);
    // Its acknowledgements are sealed under its keys as well.
    let rt = rt();
    let objects = rt.block_on(Objects::open(&scratch));
    let acks = |objects: &Objects| {
        rt.block_on(async {
            let mut bodies = Vec::new();
            for tx in [&first, &second] {
                let page = objects.ports.state.query(clearway_core::ports::Table::Acks, tx, None, 100).await.unwrap();
                for (_, item) in page {
                    let ack: clearway_core::records::AckRecord = serde_json::from_slice(&item.value).unwrap();
                    assert!(ack.body.is_empty() && ack.body_sealed.is_some(), "the body is sealed in the record");
                    bodies.push(objects.partners.ack_body(objects.ports.blobs.as_ref(), &ack).await);
                }
            }
            bodies
        })
    };
    let before = acks(&objects);
    assert!(before.len() >= 4 && before.iter().all(|b| b.as_ref().is_ok_and(|t| t.starts_with("ISA"))), "{before:?}");
    let out = scratch.run_ok(&["keys", "shred", "--partner", "acme", "--confirm", "acme"]);
    // Every object is unreadable; the four acknowledgement bodies sealed
    // inside their (now erased) records are no longer counted apart.
    assert!(out.contains("objects 14\tv1: 14\tunreadable 14"), "{out}");
    objects.partners.keys().forget(&PartnerId::new("acme").unwrap());
    assert!(acks(&objects).is_empty(), "a shredded partner's acknowledgement records read as erased");
    let record = rt.block_on(objects.ports.state.get(&clearway_core::records::TransactionRecord::key(
        &PartnerId::new("acme").unwrap(),
        &TransactionId::parse(&first).unwrap(),
    )));
    assert!(record.unwrap().is_none(), "and so does its transaction record");
    // The partner is revoked with its keys.
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get("/v1/acks").status != 401 {
        assert!(Instant::now() < deadline, "a shredded partner's key still works");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(server);
}

#[test]
fn a_root_key_inside_the_data_directory_is_refused_unless_allowed() {
    let scratch = Scratch::new();
    scratch.partner("acme", false);
    // Where keys were kept before: inside the data directory.
    let root = scratch.security().root_key_file;
    std::fs::rename(&root, scratch.data().join("master.key")).unwrap();
    let out = clearway(&scratch, &["partners", "list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("inside the data directory") && err.contains("mv "), "{err}");
    let allowed = scratch
        .command()
        .env("CLEARWAY__SECURITY__ALLOW_ROOT_KEY_IN_DATA_DIR", "true")
        .args(["partners", "list", "--data-dir"])
        .arg(scratch.data())
        .output()
        .unwrap();
    assert!(allowed.status.success(), "{}", String::from_utf8_lossy(&allowed.stderr));
    assert!(String::from_utf8_lossy(&allowed.stdout).contains("acme"), "the data opens with the moved key");
    assert!(String::from_utf8_lossy(&allowed.stderr).contains("for development only"), "and a warning is printed");
    // A root key file configured inside the data directory is a
    // configuration error.
    let inside = scratch.data().join("root.key").display().to_string();
    let out = scratch
        .command()
        .env("CLEARWAY__SECURITY__ROOT_KEY_FILE", &inside)
        .args(["partners", "list", "--data-dir"])
        .arg(scratch.data())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("security.root_key_file"));
    // With the key moved back out, the copy inside is refused while it
    // is there (same key), and a different key there is named as such.
    let root = scratch.security().root_key_file;
    std::fs::copy(scratch.data().join("master.key"), &root).unwrap();
    let out = clearway(&scratch, &["partners", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("a copy of the root key"), "{out:?}");
    std::fs::write(scratch.data().join("master.key"), "ab".repeat(32)).unwrap();
    let out = clearway(&scratch, &["partners", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("different root keys"), "{out:?}");
    std::fs::remove_file(scratch.data().join("master.key")).unwrap();
    assert!(scratch.run_ok(&["partners", "list"]).contains("acme"));
    // A lost key file is not silently replaced while data exists.
    std::fs::remove_file(&root).unwrap();
    let out = clearway(&scratch, &["partners", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds data"), "{out:?}");
    assert!(!root.exists(), "no new key was made");
}
