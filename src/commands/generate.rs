//! `clearway gen`.

use crate::cli::GenKind;
use anyhow::Context;
use clearway_formats::x12::synth::{self, Kind};
use std::io::Write;
use std::process::ExitCode;

pub fn run(kind: GenKind, count: usize, seed: u64) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout);
    let x12 = match kind {
        GenKind::P837 => Kind::Professional837,
        GenKind::I837 => Kind::Institutional837,
        GenKind::E270 => Kind::Eligibility270,
        GenKind::S276 => Kind::Status276,
        GenKind::E834 => Kind::Enrollment834,
        GenKind::B1 => {
            // Synthetic, valid D.0 B1s for BIN 610020 (no real PHI): one
            // transmission per line, prescription numbers from the seed.
            use clearway_formats::ncpdp::synth::{Request, request};
            for n in 0..count as u64 {
                let rx = (seed % 1000) * 1_000_000 + n + 1;
                let mut r = Request::b1("610020", "CLEARWAY", &rx.to_string());
                let today = time::OffsetDateTime::now_utc().date();
                r.date_of_service = format!("{:04}{:02}{:02}", today.year(), u8::from(today.month()), today.day());
                out.write_all(&request(&r)).context("cannot write output")?;
                out.write_all(b"\n").context("cannot write output")?;
            }
            out.flush().context("cannot write output")?;
            return Ok(ExitCode::SUCCESS);
        }
        GenKind::Hl7Adt => {
            clearway_formats::hl7::write_adt(&mut out, count, seed).context("cannot write output")?;
            out.flush().context("cannot write output")?;
            return Ok(ExitCode::SUCCESS);
        }
    };
    synth::write(&mut out, x12, count, seed).context("cannot write output")?;
    out.flush().context("cannot write output")?;
    Ok(ExitCode::SUCCESS)
}
