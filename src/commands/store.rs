//! Configuration loading and opening the store, shared by the subcommands
//! that need them.

use crate::cli::StoreArgs;
use anyhow::Context;
use clearway_core::config::{self, Config};
use clearway_core::partners::{Partners, load_root_key};
use clearway_core::ports::Ports;
use clearway_core::sealed::{SealedState, SealedStore};
use std::collections::HashMap;
use std::sync::Arc;

/// Defaults < `--config` file < `CLEARWAY__*` environment < command-line
/// flags (applied by `flags` as environment entries). Every problem is
/// reported, one per line.
pub fn load_config(args: &StoreArgs, flags: impl FnOnce(&mut HashMap<String, String>)) -> anyhow::Result<Config> {
    let text = match &args.config {
        Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?),
        None => None,
    };
    let mut env: HashMap<String, String> = std::env::vars().collect();
    if let Some(d) = &args.data_dir {
        env.insert("CLEARWAY__SERVER__DATA_DIR".into(), d.display().to_string());
    }
    if let Some(b) = args.backend {
        env.insert("CLEARWAY__BACKEND__KIND".into(), b.name().into());
    }
    flags(&mut env);
    config::load(text.as_deref(), &env).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(|e| format!("  {e}")).collect();
        anyhow::anyhow!("invalid configuration:\n{}", lines.join("\n"))
    })
}

/// The backend a process runs on.
#[derive(Debug)]
pub enum Backend {
    Local(Box<clearway_local::Local>),
    Aws(Box<clearway_aws::Aws>),
}

/// The backend, its (sealed) ports and the partner registry over them.
#[derive(Debug)]
pub struct Store {
    pub backend: Backend,
    pub ports: Ports,
    /// The sealed state store itself, for key maintenance.
    pub records: Arc<SealedState>,
    pub partners: Arc<Partners>,
}

impl Store {
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let dir = &config.server.data_dir;
        // Whether the embedded store already holds data, before opening it
        // creates an empty one: such data needs its own root key, not a
        // new one.
        let existing_data = dir.join("clearway.db").exists();
        let (backend, ports) = match &config.backend {
            config::Backend::Local => {
                let local = clearway_local::Local::open(dir)
                    .map_err(|e| anyhow::anyhow!("{}", clearway_core::error::chain(&e)))
                    .with_context(|| format!("cannot open the store in {}", dir.display()))?;
                let ports = local.ports();
                (Backend::Local(Box::new(local)), ports)
            }
            config::Backend::Aws(names) => {
                let aws = clearway_aws::Aws::connect(names)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", clearway_core::error::chain(&e)))
                    .context("cannot connect to the AWS backend (run `clearway aws bootstrap` for development)")?;
                let ports = aws.ports();
                (Backend::Aws(Box::new(aws)), ports)
            }
        };
        // AWS processes share one root key through configuration
        // (`security.master_key`, from a secret); without it the root key
        // file, kept outside the data directory, is used.
        let (master, warning) =
            load_root_key(&config.security, dir, existing_data).context("cannot load the root key")?;
        if let Some(w) = warning {
            // On standard error for commands, in the log for the service.
            eprintln!("clearway: warning: {w}");
            tracing::warn!("{w}");
        }
        // Every state value is sealed before it reaches the backend: a
        // partner's under its keys, the rest under the state key.
        let kms: Option<Arc<dyn clearway_core::keys::KeyService>> = match &backend {
            Backend::Aws(aws) => Some(Arc::new(aws.kms.clone())),
            Backend::Local(_) => None,
        };
        let sealed = SealedStore::new(&master, ports, kms);
        Ok(Store { backend, ports: sealed.ports, records: sealed.records, partners: Arc::new(sealed.partners) })
    }
}

impl Store {
    /// Finishes what the backend still holds in memory: the AWS outbox
    /// sender's pointers (a short-lived command would otherwise leave them
    /// to the next sweep of a running service).
    pub async fn close(&self) {
        if let Backend::Aws(aws) = &self.backend {
            aws.journal.flush().await;
        }
    }
}

/// Turns a port error into a command error.
pub fn port(e: clearway_core::PortError) -> anyhow::Error {
    anyhow::anyhow!("{}", clearway_core::error::chain(&e))
}
