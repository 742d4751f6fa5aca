//! Subcommands.

mod ack;
mod admin;
mod analytics;
mod audit;
mod codesets;
mod console;
mod generate;
mod keys;
mod routes;
mod serve;
mod store;
mod telemetry;
mod validate;

use crate::cli::{Cli, Command};
use anyhow::Context;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::ExitCode;

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate { json, format, codesets, file } => validate::run(&file, format, json, &codesets),
        Command::Ack { kind, time, codesets, file } => ack::run(&file, kind, time.as_deref(), &codesets),
        Command::Codesets { store, command } => {
            let (code, action) = match &command {
                crate::cli::CodesetsCommand::Import { .. } => ("codesets.import", "C"),
                crate::cli::CodesetsCommand::List { .. } => ("codesets.list", "R"),
            };
            audit::admin(&store, code, action, None, |store| codesets::run(store, command))
        }
        Command::Edits { command } => codesets::edits(command),
        Command::Gen { kind, count, seed } => generate::run(kind, count, seed),
        Command::Serve(args) => serve::run(args),
        Command::Partners { store, command } => {
            let (code, action, tenant) = audit::partners_event(&command);
            audit::admin(&store, code, action, tenant, |store| admin::partners(store, command))
        }
        Command::Dlq { store, command } => {
            let (code, action, tenant) = audit::dlq_event(&command);
            audit::admin(&store, code, action, tenant, |store| admin::dlq(store, command))
        }
        Command::Coverage { store, command } => {
            audit::admin(&store, "coverage.import", "C", None, |store| admin::coverage(store, command))
        }
        Command::Keys { store, command } => {
            let (code, action, tenant) = audit::keys_event(&command);
            audit::admin(&store, code, action, tenant, |store| keys::run(store, command))
        }
        Command::ConsoleUsers { store, command } => {
            let (code, action) = audit::console_users_event(&command);
            audit::admin(&store, code, action, None, |store| console::run(store, command))
        }
        Command::Audit { store, command } => audit::run(&store, command),
        Command::Routes { store, command } => routes::test(&store, command),
        Command::Destinations { store, command } => {
            let (code, action) = audit::destinations_event(&command);
            audit::admin(&store, code, action, None, |store| routes::destinations(store, command))
        }
        Command::Aws { store, command } => admin::aws(&store, command),
        Command::Export { store, to, from, tuva_snapshot, json } => {
            audit::admin(&store, "analytics.export", "E", None, |store| {
                analytics::export(store, &to, from.as_deref(), tuva_snapshot, json)
            })
        }
        Command::Report { store, name, from, to, partner, payer, format, source } => {
            let args = analytics::ReportArgs { name, from, to, partner, payer, format, source };
            audit::admin(&store, "analytics.report", "R", None, |store| analytics::report(store, args))
        }
    }
}

/// Opens a file, or standard input for `-`.
pub fn open(path: &Path) -> anyhow::Result<Box<dyn BufRead>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufReader::with_capacity(1 << 16, std::io::stdin())));
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok(Box::new(BufReader::with_capacity(1 << 16, f)))
}

/// Largest input `clearway ack` reads into memory.
pub const MAX_ACK_INPUT_BYTES: u64 = 512 * 1024 * 1024;

/// Reads a whole (bounded) input.
pub fn read_all(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    open(path)?
        .take(MAX_ACK_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(buf.len() as u64 <= MAX_ACK_INPUT_BYTES, "input is larger than {MAX_ACK_INPUT_BYTES} bytes");
    Ok(buf)
}

/// Waits `every`; false once `shutdown` is cancelled (a periodic task's
/// wait: a run in progress finishes, none starts after shutdown).
pub async fn tick(every: std::time::Duration, shutdown: &tokio_util::sync::CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(every) => true,
    }
}
