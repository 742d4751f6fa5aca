//! `clearway console-users`: the operator console's accounts (see
//! `clearway_console::accounts`).

use super::store::{Store, load_config, port};
use crate::cli::{ConsoleUsersCommand, StoreArgs};
use anyhow::Context;
use clearway_console::accounts::{Accounts, Grants};
use std::io::{Read, Write};
use std::process::ExitCode;

pub fn run(args: &StoreArgs, command: ConsoleUsersCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(args, |_| {})?;
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    rt.block_on(async {
        let store = Store::open(&config).await?;
        let code = command_in(&Accounts::new(store.ports.state.clone()), command).await;
        store.close().await;
        code
    })
}

async fn command_in(accounts: &Accounts, command: ConsoleUsersCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        ConsoleUsersCommand::Add { name, role, phi_view, break_glass } => {
            let role = clearway_core::access::Role::parse(&role)
                .with_context(|| format!("--role is operator, auditor or admin, not {role}"))?;
            let password = accounts.add(&name, role, Grants { phi_view, break_glass }).await.map_err(port)?;
            eprintln!("console account {name} ({role}): its password is shown once, keep it secret");
            writeln!(out, "{}", password.expose())?;
        }
        ConsoleUsersCommand::List { json } => {
            let list = accounts.list().await.map_err(port)?;
            for a in &list {
                if json {
                    continue;
                }
                let mut flags = vec![if a.disabled { "disabled" } else { "enabled" }];
                if a.phi_view {
                    flags.push("phi_view");
                }
                if a.break_glass {
                    flags.push("break_glass");
                }
                writeln!(out, "{}\t{}\t{}\t{}", a.name, a.role, a.created_at, flags.join(","))?;
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            }
        }
        ConsoleUsersCommand::Password { name } => {
            let mut password = String::new();
            std::io::stdin().take(4096).read_to_string(&mut password).context("reading the password")?;
            let password = password.trim_end_matches(['\r', '\n']);
            accounts.set_password(&name, password).await.map_err(port)?;
            eprintln!("console account {name}: password set");
        }
        ConsoleUsersCommand::Disable { name } => {
            accounts.disable(&name).await.map_err(port)?;
            eprintln!("console account {name}: disabled; its sessions end at their next request");
        }
    }
    Ok(ExitCode::SUCCESS)
}
