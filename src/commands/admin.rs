//! `clearway partners …` and `clearway dlq …`: operator commands over the
//! store. They open the same data directory as `serve` (SQLite allows a
//! second process), so they work while the service runs.

use super::store::{Store, load_config, port};
use crate::cli::{AwsCommand, CoverageCommand, DlqCommand, PartnersCommand, StoreArgs};
use anyhow::Context;
use clearway_core::records::DeadLetter;
use clearway_core::{PartnerId, TransactionId};
use std::io::Write;
use std::process::ExitCode;

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

/// The DER of the first certificate in a PEM text.
fn pem_certificate(pem: &str) -> Option<Vec<u8>> {
    use rustls_pki_types::pem::PemObject as _;
    rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).ok().map(|c| c.as_ref().to_vec())
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
        let store = Store::open(&config).await?;
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
            PartnersCommand::BindCert { id, cert, fingerprint } => {
                let id = partner_id(&id)?;
                let fingerprint = match (cert, fingerprint) {
                    (Some(path), _) => {
                        let pem = std::fs::read_to_string(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        let der = pem_certificate(&pem)
                            .ok_or_else(|| anyhow::anyhow!("{}: no PEM certificate in it", path.display()))?;
                        clearway_core::crypto::sha256_hex(&der)
                    }
                    (None, Some(f)) => f,
                    (None, None) => anyhow::bail!("give --cert FILE or --fingerprint SHA256"),
                };
                let fp = store.partners.bind_certificate(&id, &fingerprint).await.map_err(port)?;
                writeln!(out, "{fp}")?;
                eprintln!("clearway: certificate bound to {id}");
            }
            PartnersCommand::UnbindCert { id, fingerprint } => {
                let id = partner_id(&id)?;
                store.partners.unbind_certificate(&id, &fingerprint).await.map_err(port)?;
                eprintln!("clearway: certificate unbound from {id}");
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

pub fn dlq(store: &StoreArgs, command: DlqCommand) -> anyhow::Result<ExitCode> {
    // A blank payer (an unset variable) would select every dead letter.
    if let DlqCommand::List { payer: Some(p), .. } | DlqCommand::Replay { payer: Some(p), .. } = &command {
        anyhow::ensure!(!p.trim().is_empty(), "--payer: give a payer id");
    }
    let config = load_config(store, |_| {})?;
    runtime()?.block_on(async {
        let store = Store::open(&config).await?;
        let state = &store.ports.state;
        let mut out = std::io::stdout().lock();
        match command {
            DlqCommand::List { partner, payer, since, limit, json } => {
                let partner = partner.as_deref().map(partner_id).transpose()?;
                let since = since_ms(since.as_deref())?;
                let list = clearway_core::dlq::list(state, partner.as_ref(), payer.as_deref(), since, limit)
                    .await
                    .map_err(port)?;
                if json {
                    let items: Vec<_> = list.iter().map(DeadLetter::to_json).collect();
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
                        writeln!(out, "{}", serde_json::to_string_pretty(&d.to_json())?)?;
                        Ok(ExitCode::SUCCESS)
                    }
                    None => {
                        eprintln!("clearway: {id} is not dead-lettered");
                        Ok(ExitCode::from(1))
                    }
                }
            }
            DlqCommand::Replay { id, partner, payer, since, dry_run } => {
                let targets: Vec<TransactionId> = match id {
                    Some(id) => {
                        anyhow::ensure!(
                            partner.is_none() && payer.is_none() && since.is_none(),
                            "give an id or filters, not both"
                        );
                        vec![TransactionId::parse(&id).ok_or_else(|| anyhow::anyhow!("not a transaction id: {id}"))?]
                    }
                    None => {
                        let partner = partner.as_deref().map(partner_id).transpose()?;
                        let since = since_ms(since.as_deref())?;
                        clearway_core::dlq::list(state, partner.as_ref(), payer.as_deref(), since, usize::MAX)
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
                // Replayed pointers still with the AWS outbox sender go
                // out before the command exits.
                store.close().await;
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

/// `clearway coverage import FILE`: members from an 834 or a CSV into the
/// coverage store, as the async path stores an 834's. A running service's
/// cached answers for those members expire with the payer's cache TTL.
pub fn coverage(store: &StoreArgs, command: CoverageCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(store, |_| {})?;
    let CoverageCommand::Import { file } = command;
    let data = if file.as_os_str() == "-" {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut v).context("cannot read standard input")?;
        v
    } else {
        std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let enrollments = if data.trim_ascii_start().starts_with(b"ISA") {
        enrollments_of_834(&data)?
    } else {
        enrollments_of_csv(&data)?
    };
    runtime()?.block_on(async {
        let store = Store::open(&config).await?;
        let mut members = 0usize;
        for e in &enrollments {
            let payer = config.canonical_payer(e.payer_id.as_deref().unwrap_or("UNKNOWN")).to_string();
            let writes = clearway_workers::process::coverage_writes(e, &payer, None, &store.partners);
            members += writes.len();
            for chunk in writes.chunks(clearway_core::ports::MAX_WRITE_OPS) {
                store.ports.state.write(chunk.to_vec()).await.map_err(port)?;
            }
        }
        writeln!(std::io::stdout().lock(), "{members}")?;
        eprintln!("clearway: {members} member(s) imported into the coverage store");
        Ok(ExitCode::SUCCESS)
    })
}

fn enrollments_of_834(data: &[u8]) -> anyhow::Result<Vec<clearway_core::Enrollment>> {
    use clearway_formats::x12::{AnalyzeOptions, Document, analyze};
    let analysis = analyze(data, &AnalyzeOptions::default());
    if !analysis.accepted() {
        anyhow::bail!("the 834 is not valid (see `clearway validate`); nothing imported");
    }
    let out: Vec<clearway_core::Enrollment> = analysis
        .documents()
        .filter_map(|d| match d {
            Document::Enrollment(e) => Some((**e).clone()),
            _ => None,
        })
        .collect();
    if out.is_empty() {
        anyhow::bail!("no 834 enrollment found; nothing imported");
    }
    Ok(out)
}

fn enrollments_of_csv(data: &[u8]) -> anyhow::Result<Vec<clearway_core::Enrollment>> {
    use clearway_core::{Coverage, Enrollment, MaintenanceType, Member, Person, Sensitive, SourceFormat};
    const COLUMNS: [&str; 8] =
        ["payer_id", "member_id", "last_name", "first_name", "birth_date", "plan", "begin", "end"];
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(data);
    let header: Vec<String> =
        reader.headers().context("cannot read the CSV header")?.iter().map(str::to_string).collect();
    if header != COLUMNS {
        anyhow::bail!("the CSV header must be {}", COLUMNS.join(","));
    }
    let date = |s: &str, line: u64, col: &str| -> anyhow::Result<Option<time::Date>> {
        if s.is_empty() {
            return Ok(None);
        }
        time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
            .map(Some)
            .map_err(|_| anyhow::anyhow!("line {line}: {col} is not a YYYY-MM-DD date"))
    };
    let mut by_payer: std::collections::BTreeMap<String, Vec<Member>> = Default::default();
    let mut problems = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let line = n as u64 + 2;
        let row = match row {
            Ok(r) => r,
            Err(_) => {
                problems.push(format!("line {line}: not a CSV record of 8 fields"));
                continue;
            }
        };
        let f = |i: usize| row.get(i).unwrap_or("").to_string();
        let (payer, member) = (f(0), f(1));
        if payer.is_empty() || member.is_empty() {
            problems.push(format!("line {line}: payer_id and member_id are required"));
            continue;
        }
        let parsed = (date(&f(4), line, "birth_date"), date(&f(6), line, "begin"), date(&f(7), line, "end"));
        let (birth, begin, end) = match parsed {
            (Ok(b), Ok(s), Ok(e)) => (b, s, e),
            (b, s, e) => {
                for r in [b, s, e] {
                    if let Err(x) = r {
                        problems.push(x.to_string());
                    }
                }
                continue;
            }
        };
        let person = Person {
            last_name: Sensitive::new(f(2)),
            first_name: Sensitive::new(Some(f(3)).filter(|s| !s.is_empty())),
            middle_name: Sensitive::new(None),
            birth_date: Sensitive::new(birth),
            gender: None,
        };
        by_payer.entry(payer).or_default().push(Member {
            is_subscriber: true,
            relationship: Some("18".into()),
            maintenance: MaintenanceType::Addition,
            subscriber_id: Sensitive::new(Some(member.clone())),
            member_id: Sensitive::new(Some(member)),
            person,
            coverages: vec![Coverage {
                insurance_line: Some("HLT".into()),
                plan: Some(f(5)).filter(|s| !s.is_empty()),
                coverage_level: None,
                begin,
                end,
            }],
        });
    }
    if !problems.is_empty() {
        anyhow::bail!("nothing imported:\n  {}", problems.join("\n  "));
    }
    Ok(by_payer
        .into_iter()
        .map(|(payer, members)| Enrollment {
            source: SourceFormat::Csv,
            sponsor_id: None,
            payer_id: Some(payer),
            members,
        })
        .collect())
}

/// `clearway aws bootstrap`.
pub fn aws(store: &StoreArgs, command: AwsCommand) -> anyhow::Result<ExitCode> {
    let AwsCommand::Bootstrap = command;
    // The AWS names from configuration (their defaults when the backend
    // is still the embedded one).
    let config = load_config(store, |env| {
        env.entry("CLEARWAY__BACKEND__KIND".into()).or_insert_with(|| "aws".into());
    })?;
    let clearway_core::config::Backend::Aws(names) = &config.backend else {
        anyhow::bail!("backend.kind must be aws for `clearway aws bootstrap`");
    };
    let max_receives = config.workers.max_attempts + 2;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let sdk = clearway_aws::sdk_config().await;
        let r = clearway_aws::bootstrap::bootstrap(&sdk, names, max_receives).await.map_err(port)?;
        let out = serde_json::json!({
            "bucket": r.bucket,
            "queueUrl": r.queue_url,
            "deadLetterQueueUrl": r.dead_letter_queue_url,
            "topicArn": r.topic_arn,
            "table": r.table,
        });
        writeln!(std::io::stdout().lock(), "{out}")?;
        Ok(ExitCode::SUCCESS)
    })
}
