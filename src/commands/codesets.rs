//! `clearway codesets …` (import and list dated code sets) and `clearway
//! edits list` (the claim-edit catalog).

use super::store::{Store, load_config, port};
use crate::cli::{CodesetArgs, CodesetsCommand, EditsCommand, StoreArgs};
use anyhow::Context;
use bytes::Bytes;
use clearway_core::codesets::{CodeSetStore, Imported};
use clearway_formats::edits::CATALOG;
use clearway_formats::edits::codesets::{CodeSets, CodeSystem, ReadError, Release, read_release};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Largest code-set file read (a full ICD-10-CM order file is about 14 MB).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(buf.len() as u64 <= MAX_FILE_BYTES, "{} is larger than {MAX_FILE_BYTES} bytes", path.display());
    Ok(buf)
}

/// Files that were read but refused (bad rows, unknown system or date):
/// every problem was printed; nothing is imported.
#[derive(Debug, thiserror::Error)]
#[error("{failed} of {files} files refused; nothing was imported")]
pub struct Refused {
    failed: usize,
    files: usize,
}

/// Reads official files into releases; every file is read and every
/// problem printed before giving up.
pub fn read_releases(
    files: &[impl AsRef<Path>],
    system: Option<&str>,
    effective: Option<&str>,
) -> anyhow::Result<Vec<Release>> {
    let system = system
        .map(|s| {
            CodeSystem::parse(s).with_context(|| format!("--system must be icd10cm, icd10pcs, hcpcs or pos, not {s}"))
        })
        .transpose()?;
    let effective = effective
        .map(|s| {
            time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .with_context(|| format!("--effective must be YYYY-MM-DD, not {s}"))
        })
        .transpose()?;
    let mut releases = Vec::new();
    let mut failed = 0;
    for f in files {
        let path = f.as_ref();
        let name = path.to_string_lossy();
        let result = read_file(path).and_then(|bytes| {
            read_release(&name, &bytes, system, effective).map_err(|e| match e {
                ReadError::File(m) => anyhow::anyhow!("{m}"),
                ReadError::Rows { rows, count } => {
                    let mut m = format!("{count} bad rows:");
                    for r in &rows {
                        m.push_str(&format!("\n  {r}"));
                    }
                    if count > rows.len() {
                        m.push_str(&format!("\n  … and {} more", count - rows.len()));
                    }
                    anyhow::anyhow!(m)
                }
            })
        });
        match result {
            Ok(r) => releases.push(r),
            Err(e) => {
                failed += 1;
                eprintln!("clearway: {}: {e:#}", path.display());
            }
        }
    }
    if failed > 0 {
        return Err(Refused { failed, files: files.len() }.into());
    }
    Ok(releases)
}

/// The code sets for `validate` and `ack`.
pub fn load_files(args: &CodesetArgs) -> anyhow::Result<CodeSets> {
    Ok(CodeSets::new(&read_releases(&args.files, None, None)?))
}

pub fn run(store: &StoreArgs, command: CodesetsCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(store, |_| {})?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(async {
        let store = Store::open(&config).await?;
        let codes = CodeSetStore::new(store.ports.blobs.clone(), store.ports.state.clone());
        let mut out = std::io::stdout().lock();
        match command {
            CodesetsCommand::Import { system, effective, files } => {
                let releases = match read_releases(&files, system.as_deref(), effective.as_deref()) {
                    Ok(r) => r,
                    Err(e) if e.is::<Refused>() => {
                        eprintln!("clearway: {e}");
                        store.close().await;
                        return Ok(ExitCode::from(1));
                    }
                    Err(e) => return Err(e),
                };
                let now = clearway_core::records::timestamp(time::OffsetDateTime::now_utc());
                for r in &releases {
                    let billable = r.codes.iter().filter(|c| c.billable).count();
                    let what = codes
                        .import(
                            r.system.as_str(),
                            &r.effective.to_string(),
                            &r.label,
                            r.codes.len(),
                            Bytes::from(r.encode()),
                            &now,
                        )
                        .await
                        .map_err(port)?;
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{} codes ({} billable)\t{}",
                        r.system.as_str(),
                        r.effective,
                        r.label,
                        r.codes.len(),
                        billable,
                        match what {
                            Imported::New => "imported",
                            Imported::Unchanged => "already imported",
                        }
                    )?;
                }
            }
            CodesetsCommand::List { json } => {
                let list = codes.list().await.map_err(port)?;
                if json {
                    writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
                } else {
                    for r in list {
                        writeln!(
                            out,
                            "{}\t{}\t{}\t{} codes\t{}",
                            r.system, r.effective, r.label, r.codes, r.imported_at
                        )?;
                    }
                }
            }
        }
        store.close().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

pub fn edits(command: EditsCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        EditsCommand::List { json: true } => writeln!(out, "{}", serde_json::to_string_pretty(CATALOG)?)?,
        EditsCommand::List { json: false } => {
            writeln!(out, "id\tsnip\tseverity\tstc\tlevel\tsource")?;
            for e in CATALOG {
                writeln!(out, "{}\t{}\t{}\t{}\t{:?}\t{}", e.id, e.snip, e.severity.as_str(), e.stc, e.level, e.source)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
