//! Command-line interface definition.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "clearway", version, about = "Healthcare transaction ingestion: X12 005010, HL7 v2, FHIR R4")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a file (SNIP 1-2 for X12): exit 0 accepted, 1 rejected, 2 usage or I/O error.
    Validate {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long, value_enum, default_value_t = FormatArg::Auto)]
        format: FormatArg,
        /// Input file, or - for standard input.
        file: PathBuf,
    },
    /// Print the acknowledgement for a file.
    Ack {
        #[arg(long, value_enum)]
        kind: AckKind,
        /// Timestamp to stamp the acknowledgement with (RFC 3339, UTC); default now.
        #[arg(long)]
        time: Option<String>,
        /// Input file, or - for standard input.
        file: PathBuf,
    },
    /// Print deterministic synthetic transactions with fake PHI.
    Gen {
        #[arg(value_enum)]
        kind: GenKind,
        /// Claims, requests, members or messages in the interchange.
        #[arg(long, default_value_t = 10)]
        count: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Auto,
    X12,
    Hl7,
    Fhir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AckKind {
    Ta1,
    #[value(name = "999")]
    Ack999,
    #[value(name = "277ca")]
    Ack277ca,
    Hl7,
    Fhir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenKind {
    #[value(name = "837p")]
    P837,
    #[value(name = "837i")]
    I837,
    #[value(name = "270")]
    E270,
    #[value(name = "276")]
    S276,
    #[value(name = "834")]
    E834,
    #[value(name = "hl7-adt")]
    Hl7Adt,
}
