//! The supervisor: runs the agent as an isolated tokio runtime on its own thread, and
//! restarts that runtime when a panic escapes it.
//!
//! The listening socket is bound once, before the first runtime, and each runtime
//! incarnation serves a clone of it, so the port never changes across restarts and clients
//! only need to reconnect. A panic that unwinds out of the runtime is recorded in the store
//! (message, backtrace, time); the runtime is dropped and a new one started after an
//! exponential back-off (capped, and reset after a healthy period). The process never dies
//! of it. Panics inside a single turn never get this far: the agent catches those itself.
//!
//! The same mechanism applies settings that shape the whole runtime (the workspace,
//! telemetry): `settings.set` writes the file and asks for a reload, and the next
//! incarnation starts, at once, from the file read again.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, AgentSetup, Faults, PauseSwitch};
use crate::channels::Channels;
use crate::config::Config;
use crate::runtime::panics;
use crate::server::rpc::RpcApi;
use crate::server::{self, Token};
use crate::store::Store;
use crate::telemetry::history::{Retention, SpanHistory};
use pryx_api::PryxApiServer;

/// First wait before restarting a crashed runtime.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A runtime that ran this long without crashing resets the back-off.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long running turns get to stop and be stored at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Everything prepared before the agent starts.
pub struct Launch {
    /// The config of the first incarnation (a reload reads the file again).
    pub config: Arc<Config>,
    /// The file the config came from; `[mcp]` changes in it are applied while running.
    pub config_path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub token: Token,
    /// Bound and non-blocking; shared by every runtime incarnation.
    pub listener: std::net::TcpListener,
    /// Called once, when the first incarnation is serving (prints the listening line).
    pub on_ready: Box<dyn Fn(std::net::SocketAddr) + Send + Sync>,
    /// The owner's pause, kept across incarnations.
    pub pause: PauseSwitch,
}

impl Launch {
    pub fn db_path(&self) -> PathBuf {
        self.data_dir.join("pryx.db")
    }
}

/// Run the agent until `stop` fires. Returns an error only for failures that restarting
/// cannot fix (the database cannot be opened, the socket is gone).
pub fn supervise(launch: Launch, stop: CancellationToken) -> anyhow::Result<()> {
    panics::install_hook();
    let mut restarts: u64 = 0;
    let mut backoff = Backoff::new();
    let mut config = launch.config.clone();
    let mut first = true;
    loop {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("pryx-agent")
            .build()
            .context("cannot start the agent runtime")?;
        let started = Instant::now();
        let incarnation = run_agent(&launch, &config, restarts, first, stop.clone());
        first = false;
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| runtime.block_on(incarnation)));
        runtime.shutdown_timeout(Duration::from_secs(1));
        match outcome {
            Ok(Ok(Ending::Reload)) => {
                match reread_config(&launch) {
                    Ok(reread) => config = Arc::new(reread),
                    Err(e) => tracing::error!("cannot read the config again; keeping the one in use: {e:#}"),
                }
                tracing::info!("starting the agent runtime with the new settings");
                continue;
            }
            Ok(result) => return result.map(|_| ()),
            Err(payload) => {
                let (message, backtrace) = panics::describe(payload);
                tracing::error!("the agent runtime panicked; restarting: {message}");
                if let Err(e) = record_runtime_crash(&launch, &message, &backtrace) {
                    tracing::error!("cannot record the crash: {e:#}");
                }
            }
        }
        restarts += 1;
        let wait = backoff.after_crash(started.elapsed());
        tracing::info!(restarts, "restarting the agent runtime in {wait:?}");
        if wait_or_stop(wait, &stop) {
            return Ok(());
        }
    }
}

/// How an incarnation ended without a panic.
enum Ending {
    Stopped,
    /// Settings changed: start again with the config file read again.
    Reload,
}

/// The config file as it is now, with the environment's overrides; the server settings
/// stay those of the socket already bound.
fn reread_config(launch: &Launch) -> anyhow::Result<Config> {
    let path = launch.config_path.as_deref().context("Pryx runs without a config file")?;
    let mut config = Config::load(path, true)?;
    config.apply_env(|name| std::env::var(name).ok())?;
    config.server = launch.config.server.clone();
    Ok(config)
}

/// Exponential back-off between restarts: doubles from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], and starts over after a runtime that stayed up [`HEALTHY_AFTER`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff { next: FIRST_BACKOFF }
    }

    /// How long to wait after a runtime that ran for `uptime` crashed.
    fn after_crash(&mut self, uptime: Duration) -> Duration {
        if uptime >= HEALTHY_AFTER {
            self.next = FIRST_BACKOFF;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }
}

/// Sleep for `duration` unless `stop` fires first (then answer true).
fn wait_or_stop(duration: Duration, stop: &CancellationToken) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if stop.is_cancelled() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20).min(deadline.saturating_duration_since(Instant::now())));
    }
    stop.is_cancelled()
}

fn record_runtime_crash(launch: &Launch, message: &str, backtrace: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let store = Store::open(&launch.db_path()).await?;
        store.record_crash("runtime", None, message, backtrace).await?;
        store.close().await;
        Ok(())
    })
}

/// The address a browser on this machine uses to reach `address` (a wildcard bind is
/// reached on loopback).
pub(crate) fn loopback_address(address: std::net::SocketAddr) -> std::net::SocketAddr {
    if address.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    }
}

/// One runtime incarnation: open the store, serve, and on `stop` shut down in order.
/// One incarnation; `first` is the process's first (it announces the address).
async fn run_agent(
    launch: &Launch,
    config: &Arc<Config>,
    restarts: u64,
    first: bool,
    stop: CancellationToken,
) -> anyhow::Result<Ending> {
    let store = Store::open(&launch.db_path())
        .await
        .with_context(|| format!("cannot open the database {}", launch.db_path().display()))?;
    let recovered = store.recover_interrupted().await?;
    if recovered > 0 {
        tracing::warn!(recovered, "turns left running by a previous run are marked interrupted");
    }
    let (runtime_panic_tx, mut runtime_panic_rx) = mpsc::unbounded_channel();
    let expired = crate::approvals::Broker::expire_leftovers(&store).await?;
    if expired > 0 {
        tracing::warn!(expired, "approvals left pending by a previous run are expired (denied)");
    }
    let spans = SpanHistory::open_beside(&launch.db_path()).await.context("cannot open the span history")?;
    let agent = Agent::assemble(AgentSetup {
        store: store.clone(),
        spans: spans.clone(),
        config: config.clone(),
        data_dir: launch.data_dir.clone(),
        runtime_restarts: restarts,
        faults: Faults::new(runtime_panic_tx),
        config_path: launch.config_path.clone(),
        pause: launch.pause.clone(),
    })?;

    let listener = tokio::net::TcpListener::from_std(launch.listener.try_clone()?)?;
    let address = listener.local_addr()?;
    agent.mcp().set_redirect_base(format!("http://{}", loopback_address(address)));
    let server_stop = CancellationToken::new();
    if let Err(e) = crate::telemetry::export::apply(&config.telemetry, config.cloud.url.as_deref(), agent.secrets()) {
        // At start, opted-in export that cannot work is an error to fix; later (a settings
        // reload, a restart after a crash) the export stays as it was.
        if first {
            return Err(anyhow::Error::new(e).context("cannot start the telemetry export"));
        }
        tracing::error!("telemetry export stays as it was: {e}");
    }
    let channels = Channels::start(agent.clone(), config.clone());
    let public_routes = crate::mcp::oauth::callback_router(Arc::downgrade(agent.mcp())).merge(channels.router());
    let mut server = tokio::spawn(server::serve(
        listener,
        launch.config.server.clone(),
        channels.public_hosts(),
        launch.token.clone(),
        RpcApi::new(agent.clone(), channels.clone()).into_rpc(),
        public_routes,
        server_stop.clone(),
    ));
    let spans_stop = CancellationToken::new();
    let retention = Retention { days: config.telemetry.retention_days, max_spans: config.telemetry.max_spans };
    let span_writer = tokio::spawn(crate::telemetry::writer::store_spans(spans.clone(), retention, spans_stop.clone()));
    tokio::spawn(agent.clone().keep_logins_fresh(server_stop.clone()));
    let tidy = super::memory::Tidy { agent: agent.clone(), store: store.clone(), spans: spans.clone() };
    tokio::spawn(tidy.run(server_stop.clone()));
    if first {
        (launch.on_ready)(address);
        // Say where secrets live once serving (probing a keychain must not delay that).
        let probe = agent.clone();
        tokio::spawn(async move { probe.announce_secrets_backend().await });
    } else {
        tracing::info!(%address, restarts, "agent runtime restarted");
    }

    let mut ending = Ending::Stopped;
    let server_result = tokio::select! {
        _ = stop.cancelled() => None,
        _ = agent.reload_requested() => {
            ending = Ending::Reload;
            // Let the answer to `settings.set` reach its client first.
            tokio::time::sleep(Duration::from_millis(200)).await;
            None
        }
        Some(()) = runtime_panic_rx.recv() => panic!("injected runtime panic (debug.fault)"),
        result = &mut server => Some(result),
    };
    tracing::info!("shutting down");
    server_stop.cancel();
    channels.shutdown().await;
    agent.shutdown(SHUTDOWN_GRACE).await;
    spans_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), span_writer).await;
    let server_result = match server_result {
        Some(r) => Some(r),
        None => tokio::time::timeout(Duration::from_secs(2), server).await.ok(),
    };
    spans.close().await;
    store.close().await;
    match server_result {
        Some(Ok(Err(e))) => Err(anyhow::Error::new(e).context("the server failed")),
        Some(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        _ => Ok(ending),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_to_a_cap_and_resets_after_a_healthy_run() {
        let mut backoff = Backoff::new();
        let quick = Duration::from_millis(10);
        let waits: Vec<Duration> = (0..10).map(|_| backoff.after_crash(quick)).collect();
        assert_eq!(waits[0], FIRST_BACKOFF);
        assert_eq!(waits[1], FIRST_BACKOFF * 2);
        assert_eq!(waits[2], FIRST_BACKOFF * 4);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        assert_eq!(backoff.after_crash(HEALTHY_AFTER), FIRST_BACKOFF, "a healthy run starts over");
        assert_eq!(backoff.after_crash(quick), FIRST_BACKOFF * 2);
    }
}
