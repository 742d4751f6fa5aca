//! `clearway audit` and the audit events of admin commands (see
//! `clearway_core::audit` and `docs/specs/audit.md`).

use super::store::load_config;
use crate::cli::{
    AuditCommand, ConsoleUsersCommand, DestinationsCommand, DlqCommand, KeysCommand, PartnersCommand, StoreArgs,
};
use anyhow::Context;
use clearway_core::audit::{
    AuditActor, AuditEntity, AuditEvent, AuditSink, LogSigner, VerifierKey, load_or_create_signer, signer_from_text,
    verify_log,
};
use clearway_core::config::Config;
use clearway_local::{AuditFile, AuditService, SqliteAuditLog};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

/// The audit signing key: `security.audit_key` (from a secret store,
/// shared by every process of a deployment) or the key file.
fn signer(config: &Config) -> anyhow::Result<LogSigner> {
    match &config.security.audit_key {
        Some(text) => signer_from_text(text.expose()).context("security.audit_key"),
        None => load_or_create_signer(&config.security.audit_key_file)
            .with_context(|| format!("cannot load the audit key {}", config.security.audit_key_file.display())),
    }
}

/// A deployment's audit log: `audit.db` in the data directory (embedded
/// backend), or the audit table with its Object Lock checkpoint bucket
/// (AWS).
enum Log {
    Local(AuditService),
    Aws(clearway_aws::audit::AwsAuditService),
}

impl Log {
    fn sink(self) -> Arc<dyn AuditSink> {
        match self {
            Log::Local(s) => Arc::new(s),
            Log::Aws(s) => Arc::new(s),
        }
    }
}

/// The embedded audit log, `audit.db` in the data directory.
fn local(config: &Config, signer: Arc<LogSigner>) -> anyhow::Result<AuditService> {
    let log = SqliteAuditLog::open(&config.server.data_dir)
        .map_err(super::store::port)
        .context("cannot open the audit log")?;
    Ok(AuditService::new(log, signer))
}

/// Opens the audit log the configuration names (within `rt`: the AWS
/// log's writer runs on it).
fn open(config: &Config, rt: &tokio::runtime::Runtime) -> anyhow::Result<Log> {
    let signer = Arc::new(signer(config)?);
    match &config.backend {
        clearway_core::config::Backend::Local => Ok(Log::Local(local(config, signer)?)),
        clearway_core::config::Backend::Aws(names) => rt.block_on(async {
            let aws = clearway_aws::Aws::connect(names).await.map_err(super::store::port)?;
            Ok(Log::Aws(aws.audit(signer)))
        }),
    }
}

/// Appends an event durably, then signs a checkpoint that covers it (an
/// admin command's event is never left unanchored).
async fn record(audit: &dyn AuditSink, event: &AuditEvent) -> anyhow::Result<String> {
    audit.append(event).await.map_err(super::store::port).context("cannot record the audit event")?;
    audit.checkpoint().await.map_err(super::store::port).context("cannot checkpoint")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// Who runs a command on the host: the operating-system account.
fn host_actor() -> AuditActor {
    let principal =
        ["USER", "LOGNAME"].iter().find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty())).unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt as _;
            std::fs::metadata("/proc/self").map_or_else(|_| "host".into(), |m| format!("uid:{}", m.uid()))
        });
    AuditActor { principal, kind: "user".into(), role: "admin".into(), credential: None, auth: "host".into() }
}

/// The audit log the service writes requests and messages to: on the
/// embedded backend `audit.db` in the data directory, on AWS the audit
/// table (checkpoints also to the Object Lock bucket). `None` when request
/// auditing is off.
pub fn service(config: &Config, store: &super::store::Store) -> anyhow::Result<Option<Arc<dyn AuditSink>>> {
    if !config.security.audit_requests {
        tracing::warn!("security.audit_requests = false: requests are not audited");
        return Ok(None);
    }
    let signer = Arc::new(signer(config)?);
    Ok(Some(match &store.backend {
        // An accepted submission's event is staged in its own commit and
        // moved into audit.db soon after (clearway_local::AuditService).
        super::store::Backend::Local(l) => {
            Arc::new(local(config, signer)?.with_staging(store.ports.state.clone(), &l.db, &config.server.data_dir))
        }
        super::store::Backend::Aws(aws) => Arc::new(aws.audit(signer)),
    }))
}

/// What the console's "verify the whole log now" runs: `verify_log` over
/// the deployment's log with the log's own key (blocking; the console runs
/// it off the async threads). `None` when requests are not audited.
pub fn console_verifier(
    config: &Config,
    store: &super::store::Store,
) -> anyhow::Result<Option<clearway_console::LogVerifier>> {
    if !config.security.audit_requests {
        return Ok(None);
    }
    let key = signer(config)?.verifier();
    Ok(Some(match &store.backend {
        super::store::Backend::Local(_) => {
            let dir = config.server.data_dir.clone();
            Arc::new(move || {
                let file =
                    AuditFile::open(&dir).map_err(|e| format!("cannot read the audit log: {}", e.kind().as_str()))?;
                verify_log(&file, &key, &[]).map_err(|f| f.to_string())
            })
        }
        super::store::Backend::Aws(aws) => {
            let log = aws.audit_log();
            let rt = tokio::runtime::Handle::current();
            Arc::new(move || {
                let snapshot = rt
                    .block_on(log.snapshot())
                    .map_err(|e| format!("cannot read the audit log: {}", e.kind().as_str()))?;
                verify_log(&snapshot, &key, &[]).map_err(|f| f.to_string())
            })
        }
    }))
}

/// The longest an event waits for a checkpoint.
pub const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// The most events that wait for a checkpoint.
pub const CHECKPOINT_EVENTS: u64 = 10_000;

/// Signs checkpoints until `shutdown` — at least every
/// [`CHECKPOINT_EVERY`] or [`CHECKPOINT_EVENTS`] events while events
/// arrive — then one last; reports the unanchored events
/// (`clearway_audit_unanchored_events`).
pub async fn run_checkpoints(
    sink: Arc<dyn AuditSink>,
    move_every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if sink.takes_staged() {
        tokio::spawn(move_staged(sink.clone(), move_every, shutdown.clone()));
    }
    let mut checkpointed = match sink.latest_checkpoint().await {
        Ok(Some(note)) => clearway_core::audit::note_size(&note).unwrap_or(0),
        _ => 0,
    };
    let mut last = tokio::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => false,
        };
        let size = match sink.size().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %clearway_core::error::chain(&e), "audit log size");
                if stopping {
                    return;
                }
                continue;
            }
        };
        metrics::gauge!("clearway_audit_unanchored_events").set(size.saturating_sub(checkpointed) as f64);
        let due = size > checkpointed
            && (stopping || size - checkpointed >= CHECKPOINT_EVENTS || last.elapsed() >= CHECKPOINT_EVERY);
        if due {
            match sink.checkpoint().await {
                Ok(note) => {
                    checkpointed = clearway_core::audit::note_size(&note).unwrap_or(size);
                    last = tokio::time::Instant::now();
                    metrics::gauge!("clearway_audit_unanchored_events").set(size.saturating_sub(checkpointed) as f64);
                }
                Err(e) => tracing::error!(error = %clearway_core::error::chain(&e), "audit checkpoint failed"),
            }
        }
        if stopping {
            return;
        }
    }
}

/// Moves events staged with intakes into the log every `every`
/// (`security.audit_move_every_ms`) until `shutdown` (the last checkpoint
/// moves the rest).
async fn move_staged(
    sink: Arc<dyn AuditSink>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    while super::tick(every, &shutdown).await {
        if let Err(e) = sink.move_staged().await {
            tracing::error!(error = %clearway_core::error::chain(&e), "moving staged audit events failed");
        }
    }
}

/// Runs an admin command and records exactly one audit event for it, with
/// its outcome. The audit log and key are opened first, so a command that
/// could not be audited does not run; one whose event then cannot be
/// recorded fails.
pub fn admin(
    args: &StoreArgs,
    code: &str,
    action: &str,
    tenant: Option<String>,
    run: impl FnOnce(&StoreArgs) -> anyhow::Result<ExitCode>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(args, |_| {})?;
    let rt = runtime()?;
    let audit = open(&config, &rt)?.sink();
    let result = run(args);
    let mut event = AuditEvent::new("admin", code, action, host_actor());
    let (outcome, status) = match &result {
        Ok(c) if *c == ExitCode::SUCCESS => ("success", "0"),
        Ok(_) => ("failure", "1"),
        Err(_) => ("failure", "error"),
    };
    event.outcome = outcome.into();
    event.status = Some(status.into());
    event.source = Some("cli".into());
    if let Some(t) = tenant {
        event.entity.push(AuditEntity { kind: "partner".into(), id: t.clone() });
        event.tenant = Some(t);
    }
    rt.block_on(record(audit.as_ref(), &event))?;
    result
}

/// The event code, action and tenant of a `partners` command.
pub fn partners_event(c: &PartnersCommand) -> (&'static str, &'static str, Option<String>) {
    match c {
        PartnersCommand::Add { id, .. } => ("partners.add", "C", Some(id.clone())),
        PartnersCommand::List { .. } => ("partners.list", "R", None),
        PartnersCommand::Revoke { id } => ("partners.revoke", "U", Some(id.clone())),
        PartnersCommand::BindCert { id, .. } => ("partners.bind-cert", "U", Some(id.clone())),
        PartnersCommand::UnbindCert { id, .. } => ("partners.unbind-cert", "U", Some(id.clone())),
        PartnersCommand::Webhook { id, .. } => ("partners.webhook", "U", Some(id.clone())),
    }
}

/// The event code, action and tenant of a `dlq` command (a replay changes
/// what the workers do; reads are events too).
pub fn dlq_event(c: &DlqCommand) -> (&'static str, &'static str, Option<String>) {
    match c {
        DlqCommand::List { partner, .. } => ("dlq.list", "R", partner.clone()),
        DlqCommand::Show { .. } => ("dlq.show", "R", None),
        DlqCommand::Replay { partner, dry_run: true, .. } => ("dlq.replay-dry-run", "R", partner.clone()),
        DlqCommand::Replay { partner, .. } => ("dlq.replay", "E", partner.clone()),
    }
}

/// The event code and action of a `destinations` command.
pub fn destinations_event(c: &DestinationsCommand) -> (&'static str, &'static str) {
    match c {
        DestinationsCommand::List { .. } => ("destinations.list", "R"),
        DestinationsCommand::DeadLetters { .. } => ("destinations.dead-letters", "R"),
        DestinationsCommand::Replay { dry_run: true, .. } => ("destinations.replay-dry-run", "R"),
        DestinationsCommand::Replay { .. } => ("destinations.replay", "E"),
    }
}

/// The event code, action and tenant of a `keys` command.
pub fn console_users_event(c: &ConsoleUsersCommand) -> (&'static str, &'static str) {
    match c {
        ConsoleUsersCommand::Add { .. } => ("console_users.add", "C"),
        ConsoleUsersCommand::List { .. } => ("console_users.list", "R"),
        ConsoleUsersCommand::Password { .. } => ("console_users.password", "U"),
        ConsoleUsersCommand::Disable { .. } => ("console_users.disable", "U"),
    }
}

pub fn keys_event(c: &KeysCommand) -> (&'static str, &'static str, Option<String>) {
    match c {
        KeysCommand::Add { principal, .. } => ("keys.add", "C", Some(principal.clone())),
        KeysCommand::List { .. } => ("keys.list", "R", None),
        KeysCommand::Revoke { .. } => ("keys.revoke", "U", None),
        KeysCommand::Status { partner, .. } => ("keys.status", "R", partner.clone()),
        KeysCommand::Rotate { partner, .. } => ("keys.rotate", "U", partner.clone()),
        KeysCommand::Rewrap { partner, .. } => ("keys.rewrap", "U", partner.clone()),
        KeysCommand::Destroy { partner, .. } => ("keys.destroy", "D", Some(partner.clone())),
        KeysCommand::Shred { partner, .. } => ("keys.shred", "D", Some(partner.clone())),
    }
}

/// Checkpoint notes from a file: each a body, a blank line and its
/// signature lines, notes separated by blank lines.
fn notes_in(text: &str) -> Vec<String> {
    let chunks: Vec<&str> = text.split("\n\n").map(str::trim).filter(|c| !c.is_empty()).collect();
    chunks.chunks(2).filter(|p| p.len() == 2).map(|p| format!("{}\n\n{}\n", p[0], p[1])).collect()
}

pub fn run(args: &StoreArgs, command: AuditCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(args, |_| {})?;
    let mut out = std::io::stdout().lock();
    match command {
        AuditCommand::Key => {
            writeln!(out, "{}", signer(&config)?.verifier())?;
        }
        AuditCommand::Checkpoint => {
            let rt = runtime()?;
            let sink = open(&config, &rt)?.sink();
            let note = rt.block_on(sink.checkpoint()).map_err(super::store::port)?;
            write!(out, "{note}")?;
        }
        AuditCommand::Verify { checkpoint, key, json } => {
            let key = match key {
                Some(k) => VerifierKey::parse(&k).context("--key")?,
                None => signer(&config).context("give --key to check a copy")?.verifier(),
            };
            let mut outside = Vec::new();
            for file in &checkpoint {
                let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
                let notes = notes_in(&text);
                anyhow::ensure!(!notes.is_empty(), "{}: no checkpoint in it", file.display());
                outside.extend(notes);
            }
            let verdict = match &config.backend {
                clearway_core::config::Backend::Local => {
                    verify_log(&AuditFile::open(&config.server.data_dir).map_err(super::store::port)?, &key, &outside)
                }
                clearway_core::config::Backend::Aws(names) => {
                    let rt = runtime()?;
                    let snapshot = rt
                        .block_on(async {
                            let aws = clearway_aws::Aws::connect(names).await?;
                            aws.audit_log().snapshot().await
                        })
                        .map_err(super::store::port)?;
                    verify_log(&snapshot, &key, &outside)
                }
            };
            match verdict {
                Ok(report) => {
                    if json {
                        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
                    } else {
                        writeln!(
                            out,
                            "verified\tevents {}\tcheckpoints {}\tcheckpointed {}\tunanchored {}\troot {}",
                            report.size, report.checkpoints, report.checkpointed, report.unanchored, report.root
                        )?;
                    }
                }
                Err(finding) => {
                    writeln!(out, "NOT VERIFIED\t{finding}")?;
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoints_file_splits_into_its_notes() {
        let a = "log\n1\nAAAA\n\n\u{2014} log abc\n";
        let b = "log\n2\nBBBB\n\n\u{2014} log def\n\u{2014} witness ghi\n";
        let file = format!("{a}\n{b}\n");
        assert_eq!(notes_in(&file), vec![a.to_string(), b.to_string()]);
        assert_eq!(notes_in(a), vec![a.to_string()]);
        assert!(notes_in("").is_empty());
    }
}
