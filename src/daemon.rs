//! The daemon: wires the tasks together and owns their lifecycle.
//!
//! Data flows one way through bounded channels:
//! discover → (sweeps) → collect → (reports) → report, and
//! report → (inbound pushes) → provision → (acks) → report.
//! The config is shared through a `watch` channel: SIGHUP loads the file
//! again and, only if it is valid, publishes it to every task; a broken file
//! is refused with a logged error and the running config stays. SIGTERM and
//! SIGINT fire the one shutdown signal; tasks finish or persist their work
//! and the daemon exits 0 within [`SHUTDOWN_DEADLINE`]. SIGUSR1 asks for a
//! discovery sweep now.
//!
//! The runtime is tokio's current-thread scheduler: the agent's work is I/O
//! bound, and one thread keeps the resident set small on a router.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Config;
use crate::message::LinkState;
use crate::ops::{privileges, systemd};
use crate::report::status_file;
use crate::{collect, discover, identity, provision, report, shutdown};

/// How long tasks get to finish after SIGTERM before the daemon exits anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(4);

/// Starts the daemon with the config at `path`; returns when it has shut down.
pub fn run(path: PathBuf) -> anyhow::Result<()> {
    let config = provision::startup_config(&path)?;
    let dropped = privileges::drop_root(
        config.agent.user.as_deref(),
        config.agent.group.as_deref(),
        &config.storage.state_dir,
    )
    .map_err(anyhow::Error::msg)?;
    if let Some(to) = dropped {
        tracing::info!(to = %to, "dropped root");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(path, config))
}

async fn serve(path: PathBuf, config: Config) -> anyhow::Result<()> {
    let agent_id = identity::agent_id(config.agent.id.as_deref()).map_err(anyhow::Error::msg)?;
    let queue = report::open_queue(&config).map_err(anyhow::Error::msg)?;
    let state_dir = config.storage.state_dir.clone();
    if let Err(e) = status_file::write_pid_file(&state_dir) {
        tracing::warn!(error = %e, "cannot write the pid file; diag will not see the daemon");
    }
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut user1 = signal(SignalKind::user_defined1()).context("cannot watch SIGUSR1")?;
    let rediscover = Arc::new(tokio::sync::Notify::new());
    let reload = Arc::new(tokio::sync::Notify::new());

    let (config_tx, config_rx) = watch::channel(Arc::new(config));
    let (trigger, shutdown) = shutdown::channel();
    let (sweeps_tx, sweeps_rx) = mpsc::channel(4);
    let (reports_tx, reports_rx) = mpsc::channel(4096);
    let (inbound_tx, inbound_rx) = mpsc::channel(64);
    let (link_tx, link_rx) = watch::channel(LinkState::default());
    let (polling_tx, polling_rx) = mpsc::channel(16);

    let mut tasks = JoinSet::new();
    tasks.spawn(report::run(
        agent_id.clone(),
        config_rx.clone(),
        reports_rx,
        queue,
        report::Links {
            inbound: inbound_tx,
            state: link_tx,
        },
        shutdown.clone(),
    ));
    if let Some(notifier) = systemd::Notifier::from_env() {
        tasks.spawn(systemd::run(notifier, link_rx.clone(), shutdown.clone()));
    }
    tasks.spawn(provision::run(
        path.clone(),
        agent_id.clone(),
        provision::Wiring {
            config_tx,
            reports: reports_tx.clone(),
            inbound: inbound_rx,
            link: link_rx,
            polling: polling_tx,
            rediscover: Arc::clone(&rediscover),
            reload: Arc::clone(&reload),
        },
        shutdown.clone(),
    ));
    tasks.spawn(collect::run(
        config_rx.clone(),
        sweeps_rx,
        reports_tx,
        polling_rx,
        shutdown.clone(),
    ));
    tasks.spawn(discover::run(
        config_rx,
        sweeps_tx,
        Arc::clone(&rediscover),
        shutdown,
    ));
    tracing::info!(agent_id = %agent_id, config = %path.display(), version = env!("CARGO_PKG_VERSION"), "cpe-agent started");

    loop {
        tokio::select! {
            _ = hangup.recv() => reload.notify_one(),
            _ = user1.recv() => rediscover.notify_one(),
            _ = terminate.recv() => { tracing::info!("SIGTERM: shutting down"); break; }
            _ = interrupt.recv() => { tracing::info!("SIGINT: shutting down"); break; }
            Some(ended) = tasks.join_next() => {
                // A task only ends early on a bug; stop everything rather than run half an agent.
                tracing::error!(?ended, "a task ended unexpectedly; shutting down");
                break;
            }
        }
    }
    trigger.fire();
    let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("tasks did not finish within {SHUTDOWN_DEADLINE:?}; exiting anyway");
        tasks.abort_all();
    }
    status_file::remove_pid_file(&state_dir);
    tracing::info!("cpe-agent stopped");
    Ok(())
}
