//! The `clearway` command: parses arguments and hands each subcommand to its
//! module. Exit codes: 0 success (or accepted), 1 rejected, 2 usage or I/O
//! error.

mod cli;
mod commands;

use clap::Parser;
use std::process::ExitCode;

// The pipeline allocates many small, short-lived values (claims, segments,
// messages); mimalloc handles that pattern markedly faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("clearway: {e:#}");
            ExitCode::from(2)
        }
    }
}
