//! `clearway validate`.

use crate::cli::{CodesetArgs, FormatArg};
use anyhow::Context;
use clearway_formats::detect::{Format, sniff};
use clearway_formats::report::X12Report;
use clearway_formats::x12::{AnalyzeOptions, analyze_into};
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::ExitCode;

pub fn run(file: &Path, format: FormatArg, json: bool, codesets: &CodesetArgs) -> anyhow::Result<ExitCode> {
    let mut input = super::open(file)?;
    let format = match format {
        FormatArg::X12 => Format::X12,
        FormatArg::Hl7 => Format::Hl7v2,
        FormatArg::Fhir => Format::Fhir,
        FormatArg::Ncpdp => Format::Ncpdp,
        FormatArg::Auto => {
            let head = input.fill_buf().context("cannot read input")?;
            sniff(head).context("cannot tell the format (not X12, HL7 v2, FHIR JSON or NCPDP D.0); use --format")?
        }
    };
    let stdout = std::io::stdout().lock();
    let out = std::io::BufWriter::new(stdout);
    let accepted = match format {
        Format::X12 => {
            // Claims are read for the claim edits (listed as `edit:` issues).
            let codes = super::codesets::load_files(codesets)?;
            let mut report = X12Report::new(out, json).with_edits(codes, time::OffsetDateTime::now_utc().date());
            let options = AnalyzeOptions::default();
            let totals = analyze_into(input, &options, &mut report);
            report.finish(totals.fatal.as_ref()).context("cannot write the report")?
        }
        Format::Hl7v2 | Format::Fhir | Format::Ncpdp => {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut input.take(super::MAX_ACK_INPUT_BYTES + 1), &mut bytes)
                .context("cannot read input")?;
            anyhow::ensure!(bytes.len() as u64 <= super::MAX_ACK_INPUT_BYTES, "input is too large");
            let (accepted, report) = match format {
                Format::Hl7v2 => clearway_formats::report::hl7_report(&bytes),
                Format::Ncpdp => clearway_formats::report::ncpdp_report(&bytes),
                _ => clearway_formats::report::fhir_report(&bytes),
            };
            let mut out = out;
            if json {
                serde_json::to_writer(&mut out, &report).context("cannot write the report")?;
                writeln!(out).context("cannot write the report")?;
            } else {
                let text = clearway_formats::report::text_report(format.as_str(), accepted, &report);
                out.write_all(text.as_bytes()).context("cannot write the report")?;
            }
            out.flush().context("cannot write the report")?;
            accepted
        }
    };
    std::io::stdout().flush().ok();
    Ok(if accepted { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
