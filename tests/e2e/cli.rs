//! The command line: help, version, config, bare `pryx`, and `pryx chat`.

use std::process::Output;

use crate::support::{base_command, pryx_bin, MockLlm, Options, Pryx};

async fn run(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = base_command(home);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().await.expect("run pryx")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn home() -> std::path::PathBuf {
    let home = tempfile::tempdir().unwrap().keep();
    std::fs::write(home.join("config.toml"), "").unwrap();
    home
}

#[tokio::test]
async fn help_and_version_describe_the_program() {
    let out = tokio::process::Command::new(pryx_bin()).arg("--version").output().await.unwrap();
    assert_eq!(text(&out.stdout).trim(), format!("pryx {}", env!("CARGO_PKG_VERSION")));
    let out = tokio::process::Command::new(pryx_bin()).arg("--help").output().await.unwrap();
    let help = text(&out.stdout);
    for flag in ["--serve", "--bind", "--port", "--data-dir", "--config", "--token", "chat", "config"] {
        assert!(help.contains(flag), "--help should mention {flag}:\n{help}");
    }
}

#[tokio::test]
async fn bare_pryx_without_a_display_explains_how_to_run_headless() {
    let home = home();
    let out = run(&home, &[], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("cannot open a window") && stderr.contains("pryx --serve"), "{stderr}");
    assert!(!home.join("data/desktop.sock").exists(), "a failed start claims nothing");
    let out = run(&home, &["--serve", "pryx://new"], &[]).await;
    assert!(text(&out.stderr).contains("opens in the desktop app"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn config_show_applies_the_environment_and_hides_secrets() {
    let home = home();
    std::fs::write(home.join("config.toml"), "[llm]\nmodel = \"from-file\"\napi_key = \"sk-file-secret\"\n").unwrap();
    let out = run(&home, &["config", "show"], &[("PRYX_LLM_BASE_URL", "http://127.0.0.1:9/v1")]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("model = \"from-file\""), "{shown}");
    assert!(shown.contains("base_url = \"http://127.0.0.1:9/v1\""), "{shown}");
    assert!(!shown.contains("sk-file-secret") && shown.contains("<redacted>"), "{shown}");

    let out = run(&home, &["config", "path"], &[]).await;
    assert_eq!(text(&out.stdout).trim(), home.join("config.toml").display().to_string());
}

#[tokio::test]
async fn a_broken_config_is_an_error_naming_file_line_and_key() {
    let home = home();
    std::fs::write(home.join("config.toml"), "[server]\nport = 8080\nbind = \"not an address\"\n").unwrap();
    let out = run(&home, &["--serve"], &[]).await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "never claims to listen");
    let err = text(&out.stderr);
    assert!(err.contains("config.toml") && err.contains("line 3") && err.contains("server.bind"), "{err}");

    let out = tokio::process::Command::new(pryx_bin())
        .args(["--serve", "--data-dir"])
        .arg(home.join("data"))
        .args(["--config", "/nonexistent/pryx.toml"])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("/nonexistent/pryx.toml"),
        "a named config file must exist: {}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn chat_one_shot_talks_to_the_running_server() {
    let llm = MockLlm::start().await;
    llm.script([crate::support::Reply::text(&["Hi ", "from ", "the server"])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let out = run(&pryx.home, &["chat", "hello from the terminal"], &[]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hi from the server\n");
    assert_eq!(llm.requests().len(), 1, "the running server answered, not a second agent");
}

#[tokio::test]
async fn chat_without_a_server_runs_an_agent_in_process() {
    let llm = MockLlm::start().await;
    let home = home();
    let env = [("PRYX_LLM_BASE_URL", llm.base_url()), ("PRYX_LLM_MODEL", "mock-model".to_owned())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = run(&home, &["chat", "are you there?"], &env).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Echo: are you there?\n");

    // Interactive: one message per line, history kept within the session.
    let mut command = base_command(&home);
    command
        .arg("chat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in &env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"first line\nsecond line\n/exit\n").await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "Echo: first line\nEcho: second line\n");
    let last = llm.requests().last().unwrap().clone();
    assert_eq!(last["messages"].as_array().unwrap().len(), 4, "the second message saw the first exchange");

    let failed =
        run(&home, &["chat", "x"], &[("PRYX_LLM_BASE_URL", "http://127.0.0.1:9/v1"), ("PRYX_LLM_MODEL", "m")]).await;
    assert_eq!(failed.status.code(), Some(1));
    assert!(text(&failed.stderr).contains("cannot connect"), "{}", text(&failed.stderr));
}
