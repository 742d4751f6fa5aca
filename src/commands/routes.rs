//! `clearway routes test` and `clearway destinations`.

use super::store::{Store, load_config, port};
use crate::cli::{DestinationsCommand, RoutesCommand, StoreArgs};
use anyhow::Context;
use clearway_core::records::Format;
use clearway_core::systems;
use clearway_ingest::accept::{processed_resource, routing_facts};
use serde_json::json;
use std::io::Write;
use std::process::ExitCode;

/// Says which routes each message of a file would take and why.
pub fn test(store: &StoreArgs, command: RoutesCommand) -> anyhow::Result<ExitCode> {
    let RoutesCommand::Test { partner, json, file } = command;
    let config = load_config(store, |_| {})?;
    let body = super::read_all(&file)?;
    let format = match clearway_formats::detect::sniff(&body) {
        Some(clearway_formats::detect::Format::Hl7v2) => Format::Hl7,
        Some(clearway_formats::detect::Format::Fhir) => Format::Fhir,
        _ => anyhow::bail!("{}: not an HL7 v2 message or a FHIR resource", file.display()),
    };
    let messages = routing_facts(format, &body);
    anyhow::ensure!(!messages.is_empty(), "{}: no message could be read", file.display());
    let systems = &config.systems;
    let mut out = std::io::stdout().lock();
    let mut nowhere = false;
    let mut report = Vec::new();
    for m in &messages {
        let facts = m.facts(&partner);
        let selected = if m.accepted { systems.select(&facts) } else { vec![] };
        let goes: Vec<&str> = selected.iter().map(|s| s.destination).collect();
        let processed = format == Format::Fhir && processed_resource(&m.code);
        nowhere |= goes.is_empty() && !processed;
        let routes: Vec<_> = systems
            .explain(&facts)
            .into_iter()
            .map(|(r, why)| json!({ "route": r.name, "to": r.to, "takes": why.is_ok(), "why": why.err() }))
            .collect();
        if json {
            report.push(json!({
                "message": m.index + 1,
                "type": facts.label(),
                "controlId": m.control,
                "accepted": m.accepted,
                "destinations": goes,
                "routes": routes,
            }));
            continue;
        }
        writeln!(out, "message {} {} (control id {:?})", m.index + 1, facts.label(), m.control)?;
        if !m.accepted {
            writeln!(out, "  not routed: intake would answer it with errors (AE/AR); see `clearway validate`")?;
        }
        for (r, why) in systems.explain(&facts) {
            match why {
                Ok(()) => writeln!(out, "  route {}: takes it -> {}", r.name, r.to.join(", "))?,
                Err(why) => writeln!(out, "  route {}: no ({why})", r.name)?,
            }
        }
        if systems.routes.is_empty() {
            writeln!(out, "  no routes are configured ([[routes]])")?;
        }
        match (goes.is_empty(), processed) {
            (false, _) => writeln!(out, "  delivered to: {}", goes.join(", "))?,
            (true, true) => writeln!(out, "  delivered nowhere; Clearway processes {} itself", m.code)?,
            (true, false) if format == Format::Fhir => {
                writeln!(out, "  delivered nowhere: intake would refuse it (422, no destination takes {})", m.code)?
            }
            (true, false) => writeln!(out, "  delivered nowhere (intake still acknowledges it)")?,
        }
    }
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    }
    Ok(if nowhere { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn destinations(store: &StoreArgs, command: DestinationsCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(store, |_| {})?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&config).await?;
        let mut out = std::io::stdout().lock();
        let known =
            |name: &str| config.systems.destination(name).ok_or_else(|| anyhow::anyhow!("no destination named {name}"));
        match command {
            DestinationsCommand::List { json } => {
                let mut all = Vec::new();
                for d in &config.systems.destinations {
                    let depth = systems::depth(&store.ports, &d.name).await.map_err(port)?;
                    if !json {
                        let q = depth.clone().unwrap_or_default();
                        writeln!(
                            out,
                            "{}\t{}\twaiting {}\tdead {}\tdelivered {}\tbreaker {}\t{}",
                            d.name,
                            d.transport.kind(),
                            q.waiting,
                            q.dead,
                            q.delivered_total,
                            if q.breaker_open { "open" } else { "closed" },
                            q.last_error.unwrap_or_default()
                        )?;
                    }
                    all.push(json!({ "name": d.name, "kind": d.transport.kind(), "queue": depth }));
                }
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&all)?)?;
                }
            }
            DestinationsCommand::DeadLetters { name, limit } => {
                let d = known(&name)?;
                for (seq, e) in systems::dead_letters(&store.ports, &d.name, limit).await.map_err(port)? {
                    writeln!(
                        out,
                        "{seq}\t{}\t{}\t{}\t{} attempts\t{}",
                        e.transaction,
                        e.label,
                        e.control_id,
                        e.attempts,
                        e.reason.unwrap_or_default()
                    )?;
                }
            }
            DestinationsCommand::Replay { name, dry_run } => {
                let d = known(&name)?;
                let n = systems::replay(&store.ports, &d.name, dry_run).await.map_err(port)?;
                if dry_run {
                    writeln!(out, "{n} dead letters would go back to {}'s queue", d.name)?;
                } else {
                    writeln!(out, "{n} dead letters are back in {}'s queue", d.name)?;
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
