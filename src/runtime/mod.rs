//! Assembly: turns resolved settings into a running agent thread, and stops it.
//!
//! `pryx --serve` and the in-process agent of `pryx chat` both start here, so there is one
//! way to bring Pryx up: bind the port, start the supervisor thread, wait until it serves.

pub mod memory;
pub mod panics;
pub mod supervisor;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::datadir::{DataDir, ServerFile};
use crate::runtime::supervisor::{supervise, Launch};
use crate::server::Token;

/// An agent running on its own thread.
pub struct RunningAgent {
    pub address: SocketAddr,
    stop: CancellationToken,
    thread: JoinHandle<anyhow::Result<()>>,
    data: DataDir,
    announced: bool,
}

impl RunningAgent {
    /// The token that stops the agent gracefully when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Wait until the agent has stopped (after [`RunningAgent::stop_token`] fired).
    pub fn wait(self) -> anyhow::Result<()> {
        let result = self.thread.join().map_err(|_| anyhow!("the supervisor thread panicked"))?;
        if self.announced {
            self.data.remove_server_file();
        }
        result
    }

    /// Stop and wait.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait()
    }
}

/// Bind, start the supervisor thread and return once the agent serves. With `announce`,
/// print the `pryx listening on` line and write `server.json` so clients can find it.
/// `config_path` is the file `config` came from: `[mcp]` edits in it apply while running,
/// and `mcp.add`/`mcp.remove` write to it.
pub fn start(
    config: Config,
    config_path: Option<PathBuf>,
    data: DataDir,
    token: Token,
    announce: bool,
) -> anyhow::Result<RunningAgent> {
    crate::install_tls_provider();
    data.ensure()?;
    let bind = SocketAddr::new(config.server.bind, config.server.port);
    let listener = std::net::TcpListener::bind(bind).with_context(|| format!("cannot listen on {bind}"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let announce_data = data.clone();
    let on_ready = Box::new(move |address: SocketAddr| {
        if announce {
            let info = ServerFile { url: format!("http://{address}"), pid: std::process::id() };
            if let Err(e) = announce_data.write_server_file(&info) {
                tracing::warn!("{e:#}");
            }
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "pryx listening on http://{address}");
            let _ = out.flush();
        }
        let _ = ready_tx.send(());
    });
    let launch = Launch {
        config: Arc::new(config),
        config_path,
        data_dir: PathBuf::from(data.path()),
        token,
        listener,
        on_ready,
        pause: Default::default(),
    };
    let stop = CancellationToken::new();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name("pryx-supervisor".into())
        .spawn(move || supervise(launch, thread_stop))
        .context("cannot start the agent thread")?;
    let running = RunningAgent { address, stop, thread, data, announced: announce };
    match ready_rx.recv() {
        Ok(()) => Ok(running),
        // The thread ended before serving: report why.
        Err(_) => Err(running.wait().err().unwrap_or_else(|| anyhow!("the agent stopped before it was ready"))),
    }
}

/// Cancel `stop` on SIGINT, SIGTERM or SIGHUP; a second signal exits at once.
pub fn stop_on_signals(stop: CancellationToken) {
    on_signals(move || stop.cancel());
}

/// Call `first` on SIGINT, SIGTERM or SIGHUP (the terminal or the session went away); a
/// second signal exits at once.
pub fn on_signals(first: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new().name("pryx-signals".into()).spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async {
            wait_for_signal().await;
            tracing::info!("signal received; stopping (send it again to exit immediately)");
            first();
            wait_for_signal().await;
            tracing::warn!("second signal, exiting now");
            std::process::exit(130);
        });
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot watch for signals: {e}");
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (signal(SignalKind::terminate()), signal(SignalKind::hangup())) {
            (Ok(mut term), Ok(mut hangup)) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                    _ = hangup.recv() => {}
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
