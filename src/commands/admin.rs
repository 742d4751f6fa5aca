//! `clearway partners …` and `clearway dlq …`: operator commands over the
//! store. They open the same data directory as `serve` (SQLite allows a
//! second process), so they work while the service runs.

use super::store::{Store, load_config, port};
use crate::cli::{DlqCommand, PartnersCommand, StoreArgs};
use anyhow::Context;
use clearway_core::records::DeadLetter;
use clearway_core::{PartnerId, TransactionId};
use std::io::Write;
use std::process::ExitCode;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

fn partner_id(s: &str) -> anyhow::Result<PartnerId> {
    PartnerId::new(s).map_err(|e| anyhow::anyhow!("invalid partner id {s:?}: {e}"))
}

fn since_ms(s: Option<&str>) -> anyhow::Result<Option<i64>> {
    s.map(|s| {
        clearway_ingest::http::parse_since(s).ok_or_else(|| anyhow::anyhow!("--since: not an RFC 3339 time: {s}"))
    })
    .transpose()
}

pub fn partners(store: &StoreArgs, command: PartnersCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(store, |_| {})?;
    runtime()?.block_on(async {
        let store = Store::open(&config)?;
        let mut out = std::io::stdout().lock();
        match command {
            PartnersCommand::Add { id, name, operator } => {
                let id = partner_id(&id)?;
                let key = store.partners.add(&id, name.as_deref(), operator).await.map_err(port)?;
                writeln!(out, "{}", key.expose())?;
                eprintln!("clearway: partner {id} added; the API key above is shown only once");
            }
            PartnersCommand::List { json } => {
                let list = store.partners.list().await.map_err(port)?;
                if json {
                    let items: Vec<serde_json::Value> = list
                        .iter()
                        .map(|p| {
                            serde_json::json!({
                                "id": p.id, "name": p.name, "operator": p.operator, "revoked": p.revoked,
                                "createdAt": p.created_at, "webhookUrl": p.webhook_url,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
                } else {
                    for p in list {
                        let mut flags = Vec::new();
                        if p.operator {
                            flags.push("operator");
                        }
                        if p.revoked {
                            flags.push("revoked");
                        }
                        if p.webhook_url.is_some() {
                            flags.push("webhook");
                        }
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{}",
                            p.id,
                            p.name.as_deref().unwrap_or("-"),
                            p.created_at,
                            if flags.is_empty() { "-".to_string() } else { flags.join(",") }
                        )?;
                    }
                }
            }
            PartnersCommand::Revoke { id } => {
                let id = partner_id(&id)?;
                store.partners.revoke(&id).await.map_err(port)?;
                eprintln!("clearway: partner {id} revoked");
            }
            PartnersCommand::Webhook { id, url } => {
                let id = partner_id(&id)?;
                let secret = store.partners.set_webhook(&id, &url, None).await.map_err(port)?;
                writeln!(out, "{}", secret.expose())?;
                eprintln!("clearway: webhook set for {id}; the signing secret above is shown only once");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn dead_letter_json(d: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "transactionId": d.transaction, "partner": d.partner, "reason": d.reason,
        "attempts": d.attempts, "deadLetteredAt": d.dead_lettered_at,
    })
}

pub fn dlq(store: &StoreArgs, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(store, |_| {})?;
    runtime()?.block_on(async {
        let store = Store::open(&config)?;
        let state = &store.ports.state;
        let mut out = std::io::stdout().lock();
        match command {
            DlqCommand::List { partner, since, limit, json } => {
                let partner = partner.as_deref().map(partner_id).transpose()?;
                let list = clearway_core::dlq::list(state, partner.as_ref(), since_ms(since.as_deref())?, limit)
                    .await
                    .map_err(port)?;
                if json {
                    let items: Vec<_> = list.iter().map(dead_letter_json).collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&items)?)?;
                } else {
                    for d in list {
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{} attempts\t{}",
                            d.transaction, d.partner, d.dead_lettered_at, d.attempts, d.reason
                        )?;
                    }
                }
                Ok(ExitCode::SUCCESS)
            }
            DlqCommand::Show { id } => {
                let tx = TransactionId::parse(&id).ok_or_else(|| anyhow::anyhow!("not a transaction id: {id}"))?;
                match clearway_core::dlq::get(state, &tx).await.map_err(port)? {
                    Some(d) => {
                        writeln!(out, "{}", serde_json::to_string_pretty(&dead_letter_json(&d))?)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        eprintln!("clearway: {id} is not dead-lettered");
                        Ok(ExitCode::from(1))
                    }
                }
            }
            DlqCommand::Replay { id, partner, since, dry_run } => {
                let targets: Vec<TransactionId> = match id {
                    Some(id) => {
                        anyhow::ensure!(partner.is_none() && since.is_none(), "give an id or filters, not both");
                        vec![TransactionId::parse(&id).ok_or_else(|| anyhow::anyhow!("not a transaction id: {id}"))?]
                    }
                    None => {
                        let partner = partner.as_deref().map(partner_id).transpose()?;
                        clearway_core::dlq::list(state, partner.as_ref(), since_ms(since.as_deref())?, usize::MAX)
                            .await
                            .map_err(port)?
                            .into_iter()
                            .map(|d| d.transaction)
                            .collect()
                    }
                };
                let mut failed = 0;
                for tx in &targets {
                    match clearway_core::dlq::replay(&store.ports, tx, dry_run).await {
                        Ok(d) => writeln!(
                            out,
                            "{}\t{}\t{}",
                            d.transaction,
                            d.partner,
                            if dry_run { "would replay" } else { "replayed" }
                        )?,
                        Err(e) => {
                            failed += 1;
                            eprintln!("clearway: {tx}: {}", clearway_core::error::chain(&e));
                        }
                    }
                }
                eprintln!(
                    "clearway: {} of {} dead letters {}",
                    targets.len() - failed,
                    targets.len(),
                    if dry_run { "would be replayed" } else { "replayed" }
                );
                Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
            }
        }
    })
}
