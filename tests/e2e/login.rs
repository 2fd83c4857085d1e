//! `pryx login github` through the control-plane Worker under workerd (Miniflare), in front
//! of a real device-flow authorization server (npm `oidc-provider`) standing in for GitHub;
//! then a chat answered through a GitHub Models stand-in with the token the login got, and
//! no key configured anywhere. The Worker must have been built (`./x worker`; `./x test`
//! does it before these tests).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use pryx::client::PryxApiClient;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Child;

use crate::support::control_plane::{
    answer_on_the_provider, control_plane, control_plane_with, introspect, NodeService,
};
use crate::support::keyring::KeyringSession;
use crate::support::{base_command, chat, MockLlm, Options, Pryx, Reply, PATIENCE};

fn cloud_config(worker: &NodeService, models: &MockLlm) -> String {
    format!(
        "[cloud]\nurl = \"{}\"\ngithub_models_url = \"{}\"\n",
        worker.info["url"].as_str().expect("url"),
        models.base_url()
    )
}

/// A running `pryx login github`, its output as it comes.
struct Login {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: String,
}

impl Login {
    async fn start(home: &Path, keyring: &KeyringSession, config: &str) -> Login {
        std::fs::write(home.join("config.toml"), format!("[secrets]\nbackend = \"keychain\"\n{config}"))
            .expect("config");
        let mut command = base_command(home);
        keyring.apply(&mut command);
        command.args(["login", "github"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.kill_on_drop(true).spawn().expect("pryx login");
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Login { child, lines, seen: String::new() }
    }

    /// Reads until the boxed code, which it returns without the spacing.
    async fn user_code(&mut self) -> String {
        loop {
            let line = tokio::time::timeout(PATIENCE, self.lines.next_line())
                .await
                .expect("no code printed in time")
                .expect("read")
                .unwrap_or_else(|| panic!("pryx login ended before printing a code:\n{}", self.seen));
            self.seen.push_str(&line);
            self.seen.push('\n');
            if let Some(inside) = line.trim().strip_prefix('│').and_then(|l| l.strip_suffix('│')) {
                return inside.chars().filter(|c| !c.is_whitespace()).collect();
            }
        }
    }

    /// Waits for the command to end: its exit code, stdout and stderr.
    async fn finish(mut self) -> (i32, String, String) {
        let status =
            tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("pryx login did not end").expect("wait");
        while let Ok(Some(line)) = self.lines.next_line().await {
            self.seen.push_str(&line);
            self.seen.push('\n');
        }
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr).await;
        }
        (status.code().unwrap_or(-1), self.seen, stderr)
    }
}

/// A home whose Pryx logged in to GitHub through the Worker (`client_id` at the
/// authorization server), and everything around it.
struct LoggedIn {
    keyring: KeyringSession,
    server: NodeService,
    _worker: NodeService,
    models: MockLlm,
    home: tempfile::TempDir,
    config: String,
    /// What `pryx login github` printed.
    stdout: String,
}

async fn log_in(client_id: &str, worker_settings: serde_json::Value) -> LoggedIn {
    let keyring = KeyringSession::start().await;
    let (server, worker) = control_plane_with(client_id, worker_settings).await;
    let models = MockLlm::start().await;
    let home = tempfile::tempdir().expect("home");
    let config = cloud_config(&worker, &models);
    let mut login = Login::start(home.path(), &keyring, &config).await;
    let code = login.user_code().await;
    assert!(code.len() >= 8, "a real code: {code:?}");
    answer_on_the_provider(&server, "approve", &code).await;
    let (exit, stdout, stderr) = login.finish().await;
    assert_eq!(exit, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    LoggedIn { keyring, server, _worker: worker, models, home, config, stdout }
}

#[tokio::test]
async fn a_github_login_through_the_worker_is_all_a_new_user_needs_to_chat() {
    let LoggedIn { keyring, server, models, home, config, stdout, .. } =
        log_in("pryx-github", serde_json::json!({})).await;
    assert!(
        stdout.contains(&format!("{}/device", server.info["issuer"].as_str().expect("issuer"))),
        "the link: {stdout}"
    );
    assert!(stdout.contains('█'), "a QR code of the link is drawn: {stdout}");
    assert!(stdout.contains("Logged in to GitHub"), "{stdout}");
    assert!(stdout.contains("GitHub Models"), "{stdout}");

    // The token is the authorization server's, for the Worker's client, in the keychain
    // where an independent client reads it.
    let token = keyring.lookup("auth/github").await.expect("auth/github in the keychain");
    let seen = introspect(&server, &token).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["client_id"], "pryx-github");
    let ingest = keyring.lookup("auth/ingest").await.expect("the ingest token");
    assert!(ingest.starts_with("Bearer pit1.pryx-"), "{ingest}");

    let doctor = base_command(home.path()).envs(keyring.env()).arg("doctor").output().await.expect("doctor");
    let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
    assert!(doctor.lines().any(|l| l.starts_with("login:") && l.contains("GitHub (through http://")), "{doctor}");
    assert!(doctor.lines().any(|l| l.starts_with("llm:") && l.contains("openai/gpt-4o-mini")), "{doctor}");

    // No key anywhere: the agent answers through GitHub Models with the login's token.
    let pryx = Pryx::start_in(home.path(), Options::default().keychain(&keyring).config(&config)).await;
    models.script([Reply::text(&["Hello ", "from GitHub Models"])]);
    let client = pryx.client().await;
    let (_, log) = chat(&client, "hi").await;
    assert_eq!(log.text(), "Hello from GitHub Models");
    assert_eq!(models.auth_headers().last().cloned().flatten(), Some(format!("Bearer {token}")));
    let info = client.system_info().await.expect("system.info");
    assert_eq!(info.provider.source, "github");

    // Logging out forgets it, and the agent no longer has a model.
    drop(client);
    pryx.terminate().await;
    let out = base_command(home.path()).envs(keyring.env()).arg("logout").output().await.expect("logout");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Logged out of GitHub"));
    assert_eq!(keyring.lookup("auth/github").await, None);
    assert_eq!(keyring.lookup("auth/ingest").await, None);
}

#[tokio::test]
async fn a_denied_or_expired_code_ends_the_login_with_words() {
    let keyring = KeyringSession::start().await;
    let models = MockLlm::start().await;

    let (server, worker) = control_plane("pryx-github").await;
    let home = tempfile::tempdir().expect("home");
    let mut login = Login::start(home.path(), &keyring, &cloud_config(&worker, &models)).await;
    let code = login.user_code().await;
    answer_on_the_provider(&server, "deny", &code).await;
    let (exit, _, stderr) = login.finish().await;
    assert_eq!(exit, 1);
    assert!(stderr.contains("the login was denied on GitHub"), "{stderr}");
    assert_eq!(keyring.lookup("auth/github").await, None);

    // `pryx-short` codes expire after two seconds; nobody enters this one.
    let (_server, worker) = control_plane("pryx-short").await;
    let home = tempfile::tempdir().expect("home");
    let mut login = Login::start(home.path(), &keyring, &cloud_config(&worker, &models)).await;
    login.user_code().await;
    let (exit, stdout, stderr) = tokio::time::timeout(Duration::from_secs(20), login.finish()).await.expect("ends");
    assert_eq!(exit, 1, "{stdout}");
    assert!(stderr.contains("the code expired"), "{stderr}");
    assert!(stderr.contains("pryx login github"), "it says what to do: {stderr}");
}

/// A token about to expire is refreshed through the Worker before it does, and the fresh one
/// replaces it in the keychain, where MCP servers read it (`secret:auth/github`).
#[tokio::test]
async fn a_token_about_to_expire_is_refreshed_in_the_keychain() {
    // `pryx-expiring` access tokens live a minute, inside Pryx's five-minute margin.
    let LoggedIn { keyring, server, home, config, .. } = log_in("pryx-expiring", serde_json::json!({})).await;
    let first = keyring.lookup("auth/github").await.expect("the first token");
    let first_ingest = keyring.lookup("auth/ingest").await.expect("the first ingest token");

    let pryx = Pryx::start_in(home.path(), Options::default().keychain(&keyring).config(&config)).await;
    crate::support::eventually("the token to be refreshed", || async {
        keyring.lookup("auth/github").await.is_some_and(|now| now != first)
    })
    .await;
    let fresh = keyring.lookup("auth/github").await.expect("the fresh token");
    let seen = introspect(&server, &fresh).await;
    assert_eq!((seen["active"].as_bool(), seen["client_id"].as_str()), (Some(true), Some("pryx-expiring")), "{seen}");
    let ingest = keyring.lookup("auth/ingest").await.expect("an ingest token");
    assert!(ingest.starts_with("Bearer pit1.pryx-"), "{ingest}");
    assert_eq!(
        ingest.split('.').nth(1),
        first_ingest.split('.').nth(1),
        "the refresh carries the same install id, and the Worker mints its ingest token again"
    );
    crate::support::eventually("the refresh in the log", || async {
        pryx.stderr().contains("refreshed the login's access token")
    })
    .await;
}

/// `[telemetry.otlp] via_cloud = true`: Pryx's spans go through the Worker with the login's
/// ingest token and reach the operator's backend with the personal data gone.
#[tokio::test]
async fn telemetry_through_the_control_plane_arrives_scrubbed() {
    let receiver = crate::telemetry::Receiver::start().await;
    let backend = format!("http://127.0.0.1:{}/v1/traces", receiver.port);
    let LoggedIn { keyring, models, home, config, .. } = log_in(
        "pryx-github",
        serde_json::json!({ "OTLP_FORWARD_URL": backend, "OTLP_FORWARD_AUTH": "Bearer backend-key-7" }),
    )
    .await;

    // Content capture on, so the spans carry the conversation: the Worker must take it out.
    let telemetry = "[telemetry]\ncapture_content = true\n[telemetry.otlp]\nvia_cloud = true\n";
    let pryx =
        Pryx::start_in(home.path(), Options::default().keychain(&keyring).config(&config).config(telemetry)).await;
    models.script([Reply::text(&["Your server 203.0.113.5 is up."])]);
    let client = pryx.client().await;
    chat(&client, "mail alice.smith@example.com, or call +44 20 7946 0958").await;
    crate::support::eventually("spans at the backend", || async { receiver.spans().len() >= 2 }).await;

    let raw = std::fs::read_to_string(&receiver.out).expect("received");
    for personal in ["alice.smith@example.com", "7946 0958", "203.0.113.5"] {
        assert!(!raw.contains(personal), "{personal} reached the backend");
    }
    assert!(raw.contains("redaction."), "the redactions are counted");
    assert!(receiver.authorizations().iter().all(|a| a.as_deref() == Some("Bearer backend-key-7")));
    let export = client.system_info().await.expect("info").export.expect("export on");
    assert!(export.exported >= 2 && export.failed == 0, "{export:?}");
}
