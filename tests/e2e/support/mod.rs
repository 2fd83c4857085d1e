//! Test support: start the real `pryx` binary against the LLM stand-in and drive it with
//! the typed client.

#![allow(dead_code)]

pub mod browser;
pub mod control_plane;
pub mod desktop;
pub mod keyring;
pub mod mock_llm;
pub mod telegram;
pub mod virtual_screen;
pub mod whatsapp;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::ws_client::WsClient;
use pryx::client::{self, PryxApiClient};
use pryx_api::{TurnEvent, TurnEventEnvelope, TurnStarted};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use mock_llm::{MockLlm, Reply};

/// How long any single wait in a test may take before it fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A running `pryx --serve` process with its own data dir.
pub struct Pryx {
    child: Child,
    pub url: String,
    pub token: String,
    pub home: PathBuf,
    stderr: Arc<Mutex<String>>,
    stdout_extra: Arc<Mutex<Vec<String>>>,
}

impl Drop for Pryx {
    fn drop(&mut self) {
        let extra = self.stdout_extra.lock().unwrap().clone();
        if !extra.is_empty() && !std::thread::panicking() {
            panic!("pryx printed more than its one listening line on stdout: {extra:?}");
        }
    }
}

/// How to start Pryx in a test.
#[derive(Clone, Default)]
pub struct Options {
    /// LLM base URL (`PRYX_LLM_BASE_URL`); none means no provider env at all.
    pub llm_url: Option<String>,
    /// Extra lines for the config file.
    pub config: String,
    /// Extra environment.
    pub env: Vec<(String, String)>,
}

impl Options {
    pub fn with_llm(mock: &MockLlm) -> Options {
        Options { llm_url: Some(mock.base_url()), ..Options::default() }
    }
    pub fn config(mut self, toml: &str) -> Options {
        self.config.push_str(toml);
        self.config.push('\n');
        self
    }
    /// Secrets in `keyring`'s real Secret Service (what the API's settings write to).
    pub fn keychain(mut self, keyring: &keyring::KeyringSession) -> Options {
        self.env.extend(keyring.env());
        self.config("[secrets]\nbackend = \"keychain\"")
    }
}

pub fn pryx_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pryx")
}

impl Pryx {
    /// Start Pryx with a fresh home directory.
    pub async fn start(options: Options) -> Pryx {
        let home = tempfile::Builder::new().prefix("pryx-test-").tempdir().expect("tempdir").keep();
        Pryx::start_in(&home, options).await
    }

    /// Start Pryx on an existing home (data dir and config), e.g. after a kill.
    pub async fn start_in(home: &Path, options: Options) -> Pryx {
        let mut command = base_command(home);
        command.args(["--serve", "--port", "0"]);
        Pryx::launch(command, home, options).await
    }

    /// Start `command` (a [`base_command`] with its mode's flags) in `home` and wait for
    /// its listening line.
    pub async fn launch(mut command: Command, home: &Path, options: Options) -> Pryx {
        // The tests' own HTTPS-capable clients need the provider the binary installs.
        pryx::install_tls_provider();
        let config_path = home.join("config.toml");
        std::fs::write(&config_path, &options.config).expect("write config");
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        if let Some(url) = &options.llm_url {
            command
                .env("PRYX_LLM_BASE_URL", url)
                .env("PRYX_LLM_MODEL", mock_llm::MODEL)
                .env("PRYX_LLM_API_KEY", "test-key-123");
        }
        for (k, v) in &options.env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn pryx");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let mut out_lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(PATIENCE, out_lines.next_line())
            .await
            .expect("pryx did not print its listening line in time")
            .expect("read stdout");
        let Some(line) = first else {
            panic!("pryx exited before listening; stderr:\n{}", stderr.lock().unwrap());
        };
        let url = line
            .strip_prefix("pryx listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        // Anything printed after the listening line would break the port-discovery contract;
        // it is collected here and checked when the test is done with the process.
        let stdout_extra = Arc::new(Mutex::new(Vec::new()));
        let extra_sink = stdout_extra.clone();
        tokio::spawn(async move {
            while let Ok(Some(extra)) = out_lines.next_line().await {
                extra_sink.lock().unwrap().push(extra);
            }
        });
        let token = std::fs::read_to_string(home.join("data").join("token")).expect("token file").trim().to_owned();
        Pryx { child, url, token, home: home.to_owned(), stderr, stdout_extra }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.home.join("data")
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub async fn client(&self) -> WsClient {
        client::connect(&self.url, &self.token).await.expect("connect to pryx")
    }

    /// A client, retrying while the agent restarts.
    pub async fn reconnect(&self) -> WsClient {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(c) = client::connect(&self.url, &self.token).await {
                if c.system_info().await.is_ok() {
                    return c;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "pryx did not come back; stderr:\n{}", self.stderr());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGTERM and wait; returns the exit code.
    pub async fn terminate(self) -> i32 {
        self.signal_and_wait(libc::SIGTERM).await
    }

    /// SIGINT (Ctrl-C) and wait; returns the exit code.
    pub async fn interrupt(self) -> i32 {
        self.signal_and_wait(libc::SIGINT).await
    }

    pub async fn signal_and_wait(mut self, signal: i32) -> i32 {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid(), signal) };
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("pryx did not exit").expect("wait");
        status.code().unwrap_or(-1)
    }

    /// SIGKILL and wait.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }

    /// Wait for the process to end by itself; its exit code.
    pub async fn exited(mut self, within: Duration) -> i32 {
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("pryx did not exit within {within:?}; stderr:\n{}", self.stderr()))
            .expect("wait");
        status.code().unwrap_or(-1)
    }
}

/// A `pryx` command isolated in `home` (data dir, config dir, no stray provider settings).
pub fn base_command(home: &Path) -> Command {
    let mut command = Command::new(pryx_bin());
    with_test_setup(&mut command, home);
    command
}

/// The data dir, config and environment of a test's Pryx, on `command` (`pryx`, or a
/// wrapper that runs it with the arguments that follow).
pub fn with_test_setup(command: &mut Command, home: &Path) {
    command
        .arg("--data-dir")
        .arg(home.join("data"))
        .arg("--config")
        .arg(home.join("config.toml"))
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("PRYX_FAULT_INJECTION", "1")
        .env("RUST_LOG", "info")
        .env_remove("PRYX_LLM_BASE_URL")
        .env_remove("PRYX_LLM_MODEL")
        .env_remove("PRYX_LLM_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("PRYX_TOKEN")
        .env_remove("CREDENTIALS_DIRECTORY")
        // Only the desktop tests get a display (their own Xvfb).
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
}

/// Wait for the next approval request on an approvals subscription.
pub async fn next_approval(
    subscription: &mut jsonrpsee::core::client::Subscription<pryx_api::Approval>,
) -> pryx_api::Approval {
    loop {
        let approval = tokio::time::timeout(PATIENCE, subscription.next()).await.unwrap().unwrap().unwrap();
        if approval.status == pryx_api::ApprovalStatus::Pending {
            return approval;
        }
    }
}

/// Everything a finished turn produced.
#[derive(Debug, Default)]
pub struct TurnLog {
    pub events: Vec<TurnEventEnvelope>,
}

impl TurnLog {
    pub fn text(&self) -> String {
        self.events
            .iter()
            .filter_map(|e| match &e.event {
                TurnEvent::Delta { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    pub fn last(&self) -> &TurnEvent {
        &self.events.last().expect("no events").event
    }
}

/// Follow a turn until its terminal event.
pub async fn follow(client: &WsClient, turn_id: &str) -> TurnLog {
    let mut subscription = client.turn_subscribe(turn_id.to_owned()).await.expect("subscribe");
    let mut log = TurnLog::default();
    loop {
        let next = tokio::time::timeout(PATIENCE, subscription.next()).await.expect("turn took too long");
        let envelope = next.expect("subscription ended early").expect("bad event");
        let terminal = envelope.event.is_terminal();
        log.events.push(envelope);
        if terminal {
            return log;
        }
    }
}

/// Create a session, send `text`, follow the turn.
pub async fn chat(client: &WsClient, text: &str) -> (TurnStarted, TurnLog) {
    let session = client.session_create(None).await.expect("create session");
    let started = client.message_send(session.id, text.to_owned()).await.expect("send");
    let log = follow(client, &started.turn_id).await;
    (started, log)
}

/// Poll `check` until it is true.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Where `./x setup for-tests` installed the real peers (npm and PyPI packages).
pub fn peers() -> PathBuf {
    let dir = std::env::var_os("PRYX_TEST_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/pryx-peers"));
    assert!(
        dir.join("node_modules/@modelcontextprotocol/server-everything").exists(),
        "the test peers are missing from {}: run `./x setup for-tests`",
        dir.display()
    );
    dir
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every file under `dir` that contains `needle`.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
        } else if std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes())) {
            found.push(path);
        }
    }
    found
}
