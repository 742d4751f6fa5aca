//! `clearway keys`: API keys with roles (add, list, revoke; see
//! `clearway_core::access`), and the partners' key versions, rotation,
//! re-wrap, destruction and crypto-shredding (see `clearway_core::keys`).

use super::store::{Backend, Store, load_config, port};
use crate::cli::{KeysCommand, StoreArgs};
use anyhow::{Context, bail};
use clearway_core::PartnerId;
use clearway_core::keys::{self, Census};
use clearway_core::records::now_ms;
use std::io::Write;
use std::process::ExitCode;

/// How long a superseded version must have been inactive before it may be
/// destroyed: twice the time every process takes to see a rotation, so no
/// process is still sealing under it.
const SETTLE_MS: i64 = 2 * clearway_core::partners::CACHE_TTL.as_millis() as i64;

fn partner_id(s: &str) -> anyhow::Result<PartnerId> {
    PartnerId::new(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The partners a command covers: the one named, or every partner whose
/// keys are not shredded.
async fn partners(store: &Store, one: Option<&str>) -> anyhow::Result<Vec<PartnerId>> {
    if let Some(p) = one {
        let id = partner_id(p)?;
        store.partners.get(&id).await.map_err(port)?.with_context(|| format!("no partner {id}"))?;
        return Ok(vec![id]);
    }
    Ok(store
        .partners
        .list()
        .await
        .map_err(port)?
        .into_iter()
        .filter(|p| p.shredded_at.is_none())
        .map(|p| p.id)
        .collect())
}

pub fn run(args: &StoreArgs, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(args, |_| {})?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&config).await?;
        let code = command_in(&store, command).await;
        store.close().await;
        code
    })
}

async fn command_in(store: &Store, command: KeysCommand) -> anyhow::Result<ExitCode> {
    let ring = store.partners.keys();
    let blobs = store.ports.blobs.as_ref();
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Add { role, principal, phi_view, break_glass, label } => {
            let role = clearway_core::access::Role::parse(&role)
                .with_context(|| format!("--role is submitter, operator, auditor or admin, not {role}"))?;
            let grants = clearway_core::partners::NewCredential { phi_view, break_glass, label };
            let (id, key) = store.partners.add_key(&partner_id(&principal)?, role, grants).await.map_err(port)?;
            eprintln!("key {id} ({role}) for {principal}: shown once, keep it secret");
            writeln!(out, "{}", key.expose())?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::List { json } => {
            let keys = store.partners.list_keys().await.map_err(port)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&keys)?)?;
            } else {
                for k in keys {
                    let mut flags = vec![];
                    if k.revoked {
                        flags.push("revoked");
                    }
                    if k.phi_view {
                        flags.push("phi_view");
                    }
                    if k.break_glass {
                        flags.push("break_glass");
                    }
                    let label = k.label.as_deref().unwrap_or("");
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{label}",
                        k.id,
                        k.principal,
                        k.role,
                        k.created_at,
                        flags.join(",")
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke { id } => {
            let k = store.partners.revoke_key(&id).await.map_err(port)?;
            writeln!(out, "revoked {} ({}, {})", k.id, k.principal, k.role)?;
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Status { partner, verify, json } => {
            let mut all = Vec::new();
            let mut unreadable = 0;
            for id in partners(store, partner.as_deref()).await? {
                let versions = ring.versions(&id).await.map_err(port)?;
                let census = keys::census(ring, blobs, &store.records, &id, verify).await.map_err(port)?;
                unreadable += census.unreadable;
                if !json {
                    let active = versions.iter().find(|v| v.active).map_or("none".into(), |v| v.version.to_string());
                    writeln!(out, "{id}\tactive {active}\t{}", describe(&census))?;
                }
                all.push(serde_json::json!({ "partner": id, "versions": versions, "objects": census }));
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
            }
            Ok(if unreadable == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        KeysCommand::Rotate { partner, kms_key_id } => {
            for id in partners(store, partner.as_deref()).await? {
                let v = ring.rotate(&id, kms_key_id.as_deref()).await.map_err(port)?;
                tracing::info!(partner = %id, version = v, "key version rotated");
                writeln!(out, "{id}\tactive {v}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rewrap { partner, max_per_second } => {
            let mut failed = 0;
            for id in partners(store, partner.as_deref()).await? {
                let r = keys::rewrap(ring, blobs, &store.records, &id, max_per_second)
                    .await
                    .map_err(port)
                    .with_context(|| format!("re-wrap of {id} stopped; run it again to resume"))?;
                failed += r.failed;
                tracing::info!(partner = %id, version = r.target_version, rewrapped = r.rewrapped, "keys re-wrapped");
                writeln!(
                    out,
                    "{id}\tonto {}\texamined {}\tre-wrapped {}\tfailed {}{}",
                    r.target_version,
                    r.examined,
                    r.rewrapped,
                    r.failed,
                    if r.resumed { "\tresumed" } else { "" }
                )?;
            }
            Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        KeysCommand::Destroy { partner, version } => {
            let id = partner_id(&partner)?;
            let versions = ring.versions(&id).await.map_err(port)?;
            let Some(active) = versions.iter().find(|v| v.active) else { bail!("{id} has no keys") };
            if version == Some(active.version) {
                bail!("version {} is {id}'s active version: rotate first", active.version);
            }
            if let Some(v) = version
                && !versions.iter().any(|x| x.version == v)
            {
                bail!("{id} has no version {v}");
            }
            if let Some(t) = keys::rewrap_in_progress(store.ports.state.as_ref(), &id).await.map_err(port)?
                && t != active.version
            {
                bail!(
                    "a re-wrap onto version {t} is running or was interrupted: run `clearway keys rewrap --partner {id}` \
                     to the end first"
                );
            }
            if active.created_ms.is_some_and(|c| now_ms() - c < SETTLE_MS) {
                bail!(
                    "version {} became active less than {} s ago: processes may still seal under older versions; \
                     re-wrap again and retry",
                    active.version,
                    SETTLE_MS / 1000
                );
            }
            let census = keys::census(ring, blobs, &store.records, &id, false).await.map_err(port)?;
            let candidates: Vec<u32> = match version {
                Some(v) => vec![v],
                None => versions.iter().filter(|v| !v.active).map(|v| v.version).collect(),
            };
            let mut destroyed = 0;
            for v in candidates {
                let using = census.by_version.get(&v).copied().unwrap_or(0);
                if using > 0 {
                    let msg = format!(
                        "{using} stored objects still name version {v}: run `clearway keys rewrap --partner {id}`"
                    );
                    if version.is_some() {
                        bail!(msg);
                    }
                    writeln!(out, "{id}\tversion {v} kept: {msg}")?;
                    continue;
                }
                ring.destroy(&id, v).await.map_err(port)?;
                tracing::info!(partner = %id, version = v, "key version destroyed");
                writeln!(out, "{id}\tversion {v} destroyed")?;
                destroyed += 1;
            }
            if destroyed == 0 && version.is_none() {
                writeln!(out, "{id}\tnothing to destroy")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Shred { partner, confirm, schedule_kms_key_deletion_days } => {
            let id = partner_id(&partner)?;
            if confirm.as_deref() != Some(id.as_str()) {
                bail!(
                    "shredding destroys every key of {id}: its payloads and acknowledgements can never be read \
                     again. Repeat the partner id with --confirm {id}"
                );
            }
            // The KMS keys (ARNs) that wrap the partner's versions, before
            // the versions are gone.
            let kms_keys = ring.kms_keys(&id).await.map_err(port)?;
            if schedule_kms_key_deletion_days.is_some() && kms_keys.is_empty() {
                bail!("{id} has no key version wrapped by a KMS key of its own");
            }
            // Acknowledgements stored before they were sealed under the
            // partner's keys are sealed first, so none stays readable.
            keys::seal_unsealed(ring, &store.records, &id).await.map_err(port)?;
            ring.shred(&id).await.map_err(port)?;
            for key in &kms_keys {
                if let Some(days) = schedule_kms_key_deletion_days {
                    ring.schedule_kms_deletion(key, days).await.map_err(port)?;
                    writeln!(out, "{id}\tKMS key {key} scheduled for deletion in {days} days")?;
                } else {
                    writeln!(
                        out,
                        "{id}\tKMS key {key} kept: delete it (Terraform: remove {id} from partner_kms_keys) \
                         to make the erasure reach backups"
                    )?;
                }
            }
            tracing::warn!(partner = %id, "partner keys shredded");
            let log = match &store.backend {
                Backend::Local(local) => {
                    if local.db.purge_deleted().await.map_err(port)? {
                        "the database was compacted and its log truncated"
                    } else {
                        "the database was compacted; its log still holds old pages until the service stops"
                    }
                }
                Backend::Aws(_) => "DynamoDB backups still hold the wrapped keys until they expire",
            };
            let census = keys::census(ring, blobs, &store.records, &id, true).await.map_err(port)?;
            writeln!(out, "{id}\tshredded\t{}\t{log}", describe(&census))?;
            if census.unreadable != census.objects || census.unsealed > 0 {
                bail!(
                    "{} objects of {id} still open and {} acknowledgements are not sealed",
                    census.objects - census.unreadable,
                    census.unsealed
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn describe(c: &Census) -> String {
    let versions: Vec<String> = c.by_version.iter().map(|(v, n)| format!("v{v}: {n}")).collect();
    let mut s =
        format!("objects {}\t{}", c.objects, if versions.is_empty() { "-".into() } else { versions.join(", ") });
    if c.unsealed > 0 {
        s.push_str(&format!("\tunsealed acknowledgements {}", c.unsealed));
    }
    if c.verified {
        s.push_str(&format!("\tunreadable {}", c.unreadable));
    }
    s
}
