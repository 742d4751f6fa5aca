//! `clearway serve`: intake (HTTP, MLLP), the fast path, workers and
//! webhook delivery, on the embedded or the AWS backend, with graceful
//! shutdown.
//!
//! Shutdown on SIGTERM or SIGINT: readiness fails and new submissions are
//! refused with `503`; the listeners stop accepting; requests and MLLP
//! messages in progress finish (each is answered only after it is durable);
//! workers finish the message they are on and give back the rest; then the
//! store is closed. A second signal exits at once — safe, since nothing is
//! acknowledged before it is durable, but in-flight work is then redone
//! after restart.

use super::store::{Backend, Store, load_config};
use crate::cli::{Role, ServeArgs};
use anyhow::Context;
use axum::serve::ListenerExt;
use clearway_core::codesets::CodeSetStore;
use clearway_ingest::Services;
use clearway_workers::Workers;
use clearway_workers::edits::SharedCodeSets;
use clearway_workers::webhooks::Webhooks;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often the blob sweeper and event pruner run.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600);
/// Orphaned blob files younger than this are left alone (a commit may be
/// about to reference them).
const BLOB_ORPHAN_MIN_AGE: Duration = Duration::from_secs(3600);
/// Published events kept for subscribers that poll the event log.
const EVENT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(&args.store, |env| {
        if let Some(l) = &args.listen {
            env.insert("CLEARWAY__SERVER__LISTEN".into(), l.clone());
        }
        if let Some(l) = &args.mllp_listen {
            env.insert("CLEARWAY__MLLP__LISTEN".into(), l.clone());
        }
        if let Some(p) = &args.mllp_partner {
            env.insert("CLEARWAY__MLLP__PARTNER".into(), p.clone());
        }
    })?;
    let _data_dir_lock = lock_data_dir(&config, args.role)?;
    config.server.lone_writer = _data_dir_lock.as_ref().is_some_and(|(_, exclusive)| *exclusive);
    let _telemetry = super::telemetry::init(args.log_format, &config.telemetry, args.role)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("clearway")
        .build()
        .context("cannot start the async runtime")?;
    let served = runtime.block_on(serve(Arc::new(config), args.role));
    // The runtime first (its tasks' spans end), then the span export is
    // flushed as `_telemetry` drops.
    drop(runtime);
    served
}

/// On the embedded backend, `serve` holds `<data dir>/serve.lock` while it
/// runs: exclusively when it runs every role, shared when intake and
/// workers run as separate processes. A `serve` of every role is then the
/// only process writing its acknowledgement feeds, and its feed readers
/// need no settle window (`clearway_core::feed`); a second `serve` on the
/// same directory would write entries those readers cannot see coming, so
/// it is refused. Returns the lock and whether it is exclusive.
fn lock_data_dir(config: &clearway_core::config::Config, role: Role) -> anyhow::Result<Option<(std::fs::File, bool)>> {
    if !matches!(config.backend, clearway_core::config::Backend::Local) {
        return Ok(None);
    }
    let dir = &config.server.data_dir;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    let path = dir.join("serve.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let exclusive = role == Role::All;
    let locked = if exclusive { file.try_lock() } else { file.try_lock_shared() };
    match locked {
        Ok(()) => Ok(Some((file, exclusive))),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `clearway serve` is using the data directory {}: one `serve` of every role per data directory, \
             or `serve --role intake` and `serve --role worker` side by side",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
    }
}

async fn serve(config: Arc<clearway_core::config::Config>, role: Role) -> anyhow::Result<ExitCode> {
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[0.0005, 0.001, 0.002, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    let store = Store::open(&config).await?;
    let feed = Arc::new(tokio::sync::Notify::new());
    // Workers answer no requests: nothing of theirs to audit.
    let audit = if role == Role::Worker { None } else { super::audit::service(&config, &store)? };
    let last_audit = audit.clone();
    let mut services = Services::new(store.ports.clone(), store.partners.clone(), config.clone(), feed.clone());
    if let Some(a) = &audit {
        services = services.with_audit(a.clone());
    }
    if role != Role::Worker {
        let dest = super::analytics::destination(&config.analytics, None)?;
        services = services.with_reports(Arc::new(clearway_analytics::report::Runner::new(dest)));
    }
    let svc = Arc::new(services);
    let render: clearway_ingest::http::MetricsRender = {
        let handle = prometheus.clone();
        let db = match &store.backend {
            Backend::Local(local) => Some(local.db.clone()),
            Backend::Aws(_) => None,
        };
        Arc::new(move || {
            if let Some(db) = &db {
                let (commits, jobs) = (db.stats.commits.load(Ordering::Relaxed), db.stats.jobs.load(Ordering::Relaxed));
                metrics::counter!("clearway_store_commits_total").absolute(commits);
                metrics::counter!("clearway_store_commit_jobs_total").absolute(jobs);
            }
            handle.render()
        })
    };

    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    if let Some(a) = audit {
        tasks.spawn(super::audit::run_checkpoints(a, config.security.audit_move_every, shutdown.clone()));
    }

    // TLS from the [tls] files (a bad file stops here, named); without it,
    // plaintext only on loopback unless the configuration says TLS ends
    // upstream.
    let modes: Vec<_> = std::iter::once(config.server.client_auth)
        .chain(config.mllp.all_listeners().iter().map(|l| l.client_auth))
        .flatten()
        .collect();
    let tls = clearway_ingest::tls::Tls::from_config(&config.tls, &modes).map_err(|e| anyhow::anyhow!("TLS: {e}"))?;
    // Every role: the payers' TLS files (intake calls payers in real time)
    // and OpenPGP keys.
    clearway_workers::payers::RoundTrip::check_keys(&config).map_err(|e| anyhow::anyhow!(e))?;
    clearway_workers::systems::check_destination_tls(&config).map_err(|e| anyhow::anyhow!(e))?;
    clearway_workers::webhooks::check_tls(&config).map_err(|e| anyhow::anyhow!(e))?;
    if tls.is_none() && !config.tls.allow_plaintext {
        let mut addrs = vec![config.server.listen];
        if role != Role::Worker {
            addrs.extend(config.mllp.all_listeners().iter().map(|l| l.listen));
        }
        if let Some(a) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            anyhow::bail!(
                "refusing to serve plaintext on {a}: set [tls] cert_file and key_file, or tls.allow_plaintext = true when TLS is terminated upstream (a load balancer)"
            );
        }
    }
    if let Some(tls) = tls.clone() {
        tasks.spawn(reload_on_hangup(tls, shutdown.clone()));
    }

    let http = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let http_addr = http.local_addr()?;
    let app = if role == Role::Worker {
        clearway_ingest::http::ops_router(svc.clone(), render)
    } else if config.server.console {
        let verifier = super::audit::console_verifier(&config, &store)?;
        let console = clearway_console::Console::with_verifier(svc.clone(), render.clone(), verifier);
        tasks.spawn(console.clone().run_replays(shutdown.clone().cancelled_owned()));
        clearway_ingest::http::app_with(svc.clone(), render, clearway_console::routes(console))
    } else {
        clearway_ingest::http::app(svc.clone(), render)
    };
    if let Some(tls) = tls.clone() {
        tasks.spawn(clearway_ingest::http::serve_tls(
            http,
            app,
            tls,
            config.server.client_auth,
            config.server.max_connections,
            store.partners.clone(),
            shutdown.clone(),
        ));
    } else {
        let stop = shutdown.clone();
        tasks.spawn(async move {
            // No Nagle delay: each answer leaves as soon as it is written.
            let http = http.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            let served = axum::serve(http, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "http server failed");
            }
        });
    }
    let backend = match &store.backend {
        Backend::Local(_) => format!("data in {}", config.server.data_dir.display()),
        Backend::Aws(_) => "backend aws".to_string(),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("clearway: http listening on {scheme}://{http_addr} (role {role:?}, {backend})");

    if role != Role::Worker {
        let listeners = config.mllp.all_listeners();
        if listeners.is_empty() {
            println!("clearway: mllp off (set mllp.partner or --mllp-partner to bind a listener)");
        }
        for l in listeners {
            let listener =
                TcpListener::bind(l.listen).await.with_context(|| format!("cannot listen on {} (MLLP)", l.listen))?;
            println!("clearway: mllp listening on {} for partner {}", listener.local_addr()?, l.partner);
            tasks.spawn(clearway_ingest::mllp::serve(
                svc.clone(),
                listener,
                l.partner,
                tls.clone(),
                l.client_auth,
                shutdown.clone(),
            ));
        }
    }
    if role != Role::Intake {
        // An 834 that changes a member drops the fast path's cached answers
        // about them (in this process; a split intake keeps its TTL).
        let fastpath = svc.fastpath.clone();
        // Claim edits judge with the code sets in force: read them before
        // the first claim, then look for new imports every
        // `edits.codeset_refresh_secs`.
        let codes = SharedCodeSets::default();
        let code_store = CodeSetStore::new(store.ports.blobs.clone(), store.ports.state.clone());
        codes.refresh(&code_store).await.context("cannot read the imported code sets")?;
        tasks.spawn({
            let task = codes.spawn_refresh(code_store, config.edits.codeset_refresh, shutdown.clone());
            async move {
                let _ = task.await;
            }
        });
        let workers = Workers::new(store.ports.clone(), store.partners.clone(), config.clone(), feed.clone(), codes)
            .with_pharmacy(svc.fastpath.clone())
            .on_coverage_changed(Arc::new(move |payer: &str, member: &str| fastpath.invalidate_member(payer, member)));
        clearway_workers::payers::RoundTrip::check_keys(&config).map_err(|e| anyhow::anyhow!(e))?;
        clearway_workers::systems::check_destination_tls(&config).map_err(|e| anyhow::anyhow!(e))?;
        clearway_workers::webhooks::check_tls(&config).map_err(|e| anyhow::anyhow!(e))?;
        let round_trip = workers.round_trip().spawn(shutdown.clone());
        tasks.spawn(async move {
            let _ = round_trip.await;
        });
        tasks.spawn({
            let stop = shutdown.clone();
            async move { workers.run(stop).await }
        });
        // One deliverer per subscribed system (`[destinations.NAME]`).
        let deliverers = clearway_workers::systems::Deliverers::new(
            store.ports.clone(),
            store.partners.clone(),
            config.clone(),
            svc.deliveries.clone(),
        )
        .spawn(shutdown.clone());
        tasks.spawn(async move { deliverers.wait().await });
        let hooks = Webhooks::new(
            store.ports.clone(),
            store.partners.clone(),
            config.server.feed_settle(),
            &config.webhooks_tls,
        );
        tasks.spawn(hooks.run(feed.clone(), shutdown.clone()));
        if let Some(every) = config.analytics.export_every {
            let dest = super::analytics::destination(&config.analytics, None)?;
            let reader = clearway_analytics::derive::Reader::new(
                store.ports.state.clone(),
                store.ports.blobs.clone(),
                store.partners.clone(),
            );
            let mut exporter = clearway_analytics::export::Exporter::new(reader, dest);
            exporter.retain_secs = config.analytics.retain.as_secs() as i64;
            exporter.tuva_daily = config.analytics.tuva_snapshots;
            tasks.spawn(super::analytics::scheduled(exporter, every, shutdown.clone()));
        }
        match &store.backend {
            Backend::Local(local) => {
                tasks.spawn(maintenance((**local).clone(), shutdown.clone()));
            }
            Backend::Aws(aws) => {
                tasks.spawn(outbox_sweeper(aws.journal.clone(), aws.outbox_sweep_after, shutdown.clone()));
            }
        }
    }
    tasks.close();
    println!("clearway: ready");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    wait_for_signal().await;
    tracing::info!("shutting down: refusing new work, finishing work in progress");
    svc.ready.store(false, Ordering::Relaxed);
    shutdown.cancel();
    // Work in progress is never cut off: past the grace period Clearway
    // says what it is still waiting for, and keeps waiting (a second
    // signal, or the orchestrator's kill, ends it; un-acked work then
    // returns by lease expiry).
    let grace = tokio::time::sleep(config.server.shutdown_grace);
    tokio::pin!(grace);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tasks.wait() => break,
            _ = &mut grace, if !warned => {
                warned = true;
                tracing::warn!(grace_secs = config.server.shutdown_grace.as_secs(), "shutdown grace period passed; still finishing work in progress");
            }
            _ = wait_for_signal() => {
                tracing::warn!("second signal: exiting now; unfinished work will be redelivered after restart");
                return Ok(ExitCode::from(130));
            }
        }
    }
    // Real-time exchanges' analytics events still queued.
    if tokio::time::timeout(Duration::from_secs(10), svc.realtime.flush()).await.is_err() {
        tracing::warn!("real-time events not all written at shutdown");
    }
    // Requests finished after the checkpointer's last: anchor their events.
    if let Some(a) = &last_audit {
        let anchored = a.latest_checkpoint().await.ok().flatten().and_then(|n| clearway_core::audit::note_size(&n));
        if a.size().await.is_ok_and(|size| Some(size) != anchored)
            && let Err(e) = a.checkpoint().await
        {
            tracing::error!(error = %clearway_core::error::chain(&e), "last audit checkpoint failed");
        }
    }
    // Pointers of the last commits still with the outbox sender go out
    // now rather than at the next process's sweep.
    if tokio::time::timeout(Duration::from_secs(30), store.close()).await.is_err() {
        tracing::warn!("outbox sender did not finish; the sweeper will send the rest");
    }
    drop(svc);
    drop(store);
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Reloads the TLS certificate, key, client CAs and CRLs on SIGHUP: new
/// handshakes get the new files, open connections keep theirs; a reload
/// that fails keeps the old configuration and says why.
async fn reload_on_hangup(tls: std::sync::Arc<clearway_ingest::tls::Tls>, shutdown: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = hup.recv() => {}
            }
            match tls.reload() {
                Ok(()) => tracing::info!("TLS configuration reloaded"),
                Err(e) => tracing::warn!(problem = %e, "TLS reload failed; still serving the previous configuration"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (tls, shutdown);
    }
}

/// Removes orphaned blob files and prunes old events.
async fn maintenance(local: clearway_local::Local, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(MAINTENANCE_INTERVAL) => {}
        }
        match local.blobs.sweep(BLOB_ORPHAN_MIN_AGE).await {
            Ok(n) if n > 0 => tracing::info!(removed = n, "removed orphaned blob files"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %clearway_core::error::chain(&e), "blob sweep failed"),
        }
        if let Err(e) = local.notifier.prune(EVENT_RETENTION_MS).await {
            tracing::warn!(error = %clearway_core::error::chain(&e), "event prune failed");
        }
    }
}

/// Sends the pointers of intake commits that stopped between their state
/// write and their send (the outbox pattern's other half), every half
/// threshold. Several processes may sweep at once: a pointer sent twice is
/// harmless, workers being idempotent.
async fn outbox_sweeper(journal: clearway_core::outbox::OutboxJournal, after: Duration, shutdown: CancellationToken) {
    let every = (after / 2).max(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match journal.sweep(after.as_millis() as i64).await {
            Ok(n) if n > 0 => {
                metrics::counter!("clearway_outbox_resent_total").increment(n as u64);
                tracing::info!(resent = n, "outbox sweeper sent pointers of interrupted commits");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %clearway_core::error::chain(&e), "outbox sweep failed"),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
