//! Secrets in real keychains: a private D-Bus session with gnome-keyring's Secret Service,
//! and the Linux kernel keyring. Values are checked with an independent client
//! (`secret-tool`), and everything Pryx wrote is grepped for them afterwards.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use pryx::client::PryxApiClient;
use tokio::io::AsyncWriteExt;

use crate::support::keyring::KeyringSession;
use crate::support::{base_command, files_containing, MockLlm, Options, Pryx};

fn home_with_config(config: &str) -> PathBuf {
    let home = tempfile::tempdir().unwrap().keep();
    std::fs::write(home.join("config.toml"), config).unwrap();
    home
}

/// Run `pryx ARGS` in `home` with `env`, feeding `stdin`.
async fn pryx(home: &Path, args: &[&str], env: &[(String, String)], stdin: &str) -> std::process::Output {
    let mut command = base_command(home);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn the_cli_sets_lists_and_deletes_secrets_in_the_secret_service() {
    let keyring = KeyringSession::start().await;
    let home = home_with_config("[secrets]\nbackend = \"keychain\"\n");
    let env = keyring.env();

    let set = pryx(&home, &["secret", "set", "mcp/github/GITHUB_TOKEN"], &env, "ghp-value-1\n").await;
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(text(&set.stderr).contains("Secret Service"));
    assert_eq!(
        keyring.lookup("mcp/github/GITHUB_TOKEN").await.as_deref(),
        Some("ghp-value-1"),
        "stored, newline stripped"
    );
    pryx(&home, &["secret", "set", "llm/openai"], &env, "sk-value-2").await;
    let list = pryx(&home, &["secret", "list"], &env, "").await;
    assert_eq!(text(&list.stdout), "llm/openai\nmcp/github/GITHUB_TOKEN\n", "names only, sorted");

    let bad = pryx(&home, &["secret", "set", "../escape"], &env, "x").await;
    assert!(!bad.status.success() && text(&bad.stderr).contains("not a valid secret name"));
    let empty = pryx(&home, &["secret", "set", "llm/empty"], &env, "").await;
    assert!(!empty.status.success(), "an empty value stores nothing");

    let deleted = pryx(&home, &["secret", "delete", "llm/openai"], &env, "").await;
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    assert_eq!(keyring.lookup("llm/openai").await, None);
    let again = pryx(&home, &["secret", "delete", "llm/openai"], &env, "").await;
    assert!(!again.status.success() && text(&again.stderr).contains("no secret named"));
    let list = pryx(&home, &["secret", "list"], &env, "").await;
    assert_eq!(text(&list.stdout), "mcp/github/GITHUB_TOKEN\n");
}

#[tokio::test]
async fn a_plain_key_in_the_config_moves_to_the_keychain_and_is_used_from_there() {
    let keyring = KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let config = format!(
        "# my settings\n[secrets]\nbackend = \"keychain\"\n\n[llm]\nbase_url = \"{}\"  # local stand-in\nmodel = \"mock-model\"\napi_key = \"sk-plain-in-file-42\"\n\n[telemetry.otlp.headers]\nauthorization = \"Bearer plain-otlp-9\"\n",
        llm.base_url()
    );
    let home = home_with_config(&config);
    let out = pryx(&home, &["chat", "hello"], &keyring.env(), "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Echo: hello\n");
    assert!(
        text(&out.stderr).contains("moved the plain-text `llm.api_key`"),
        "the user is told: {}",
        text(&out.stderr)
    );

    let rewritten = std::fs::read_to_string(home.join("config.toml")).unwrap();
    assert!(rewritten.contains("api_key = \"secret:llm/api_key\""), "{rewritten}");
    assert!(
        rewritten.contains("# my settings") && rewritten.contains("# local stand-in"),
        "comments survive: {rewritten}"
    );
    assert!(!rewritten.contains("sk-plain-in-file-42"));
    assert_eq!(keyring.lookup("llm/api_key").await.as_deref(), Some("sk-plain-in-file-42"));
    assert!(rewritten.contains("authorization = \"secret:otlp/header/authorization\""), "{rewritten}");
    assert_eq!(keyring.lookup("otlp/header/authorization").await.as_deref(), Some("Bearer plain-otlp-9"));
    assert_eq!(llm.auth_headers()[0].as_deref(), Some("Bearer sk-plain-in-file-42"), "the key came from the keychain");

    // A running server resolves the reference too; the UI can set but never read secrets.
    let mut options = Options { llm_url: None, config: String::new(), env: keyring.env() };
    options.config = rewritten;
    let server = Pryx::start_in(&home, options).await;
    let client = server.client().await;
    let (_, log) = crate::support::chat(&client, "again").await;
    assert_eq!(log.text(), "Echo: again");
    assert_eq!(llm.auth_headers()[1].as_deref(), Some("Bearer sk-plain-in-file-42"));
    client.secret_set("telegram/bot".into(), "123:telegram-token-77".into()).await.unwrap();
    assert_eq!(keyring.lookup("telegram/bot").await.as_deref(), Some("123:telegram-token-77"));
    assert_eq!(client.secret_list().await.unwrap(), ["llm/api_key", "otlp/header/authorization", "telegram/bot"]);
    assert!(client.secret_set("bad name".into(), "x".into()).await.is_err());
    client.secret_delete("telegram/bot".into()).await.unwrap();
    assert_eq!(keyring.lookup("telegram/bot").await, None);
    let info = client.system_info().await.unwrap();
    assert!(info.secrets.contains("Secret Service"), "{}", info.secrets);
    let show = pryx(&home, &["config", "show"], &keyring.env(), "").await;
    assert!(text(&show.stdout).contains("secret:llm/api_key"), "a reference is shown as is");
    let logs = server.stderr();
    assert_eq!(server.terminate().await, 0);

    // The leak grep: nothing Pryx wrote holds a secret value.
    for secret in ["sk-plain-in-file-42", "123:telegram-token-77", "plain-otlp-9"] {
        assert_eq!(files_containing(&home, secret), Vec::<PathBuf>::new(), "{secret} leaked into a file");
        assert!(!logs.contains(secret) && !text(&out.stderr).contains(secret), "{secret} leaked into the log");
    }
}

#[tokio::test]
async fn without_a_keychain_pryx_says_so_and_never_uses_a_plain_secret() {
    let home = home_with_config("[secrets]\nbackend = \"keychain\"\n[llm]\napi_key = \"sk-must-not-be-used\"\n");
    let no_bus = vec![("DBUS_SESSION_BUS_ADDRESS".to_owned(), "unix:path=/nonexistent/bus".to_owned())];
    let serve = pryx(&home, &["--serve"], &no_bus, "").await;
    assert!(!serve.status.success());
    assert!(serve.stdout.is_empty(), "it never starts serving");
    let err = text(&serve.stderr);
    assert!(err.contains("llm.api_key") && err.contains("no keychain") && err.contains("systemd credential"), "{err}");
    assert!(!err.contains("sk-must-not-be-used"), "the error does not echo the secret");
    assert!(
        std::fs::read_to_string(home.join("config.toml")).unwrap().contains("sk-must-not-be-used"),
        "the file is left alone"
    );

    let doctor = pryx(&home, &["doctor"], &no_bus, "").await;
    assert!(text(&doctor.stdout).contains("no keychain"), "{}", text(&doctor.stdout));
    let set = pryx(&home, &["secret", "set", "llm/x"], &no_bus, "value").await;
    assert!(!set.status.success() && text(&set.stderr).contains("LoadCredential"), "{}", text(&set.stderr));

    // What a service manager injects is used instead: an environment variable…
    let llm = MockLlm::start().await;
    let config = format!("[secrets]\nbackend = \"injected\"\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\napi_key = \"secret:llm/injected\"\n", llm.base_url());
    let home = home_with_config(&config);
    let mut env = no_bus.clone();
    env.push(("PRYX_SECRET_LLM_INJECTED".into(), "from-the-environment".into()));
    let out = pryx(&home, &["chat", "hi"], &env, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(llm.auth_headers()[0].as_deref(), Some("Bearer from-the-environment"));
    // …or a systemd credential file.
    let credentials = tempfile::tempdir().unwrap();
    std::fs::write(credentials.path().join("llm_injected"), "from-systemd\n").unwrap();
    let mut env = no_bus.clone();
    env.push(("CREDENTIALS_DIRECTORY".into(), credentials.path().display().to_string()));
    let out = pryx(&home, &["chat", "hi"], &env, "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(llm.auth_headers()[1].as_deref(), Some("Bearer from-systemd"));
    // A reference to a secret nobody provided is a clear error, not an empty key.
    let out = pryx(&home, &["chat", "hi"], &no_bus, "").await;
    assert!(text(&out.stderr).contains("no secret named `llm/injected`"), "{}", text(&out.stderr));
}

#[tokio::test]
async fn the_kernel_keyring_works_for_headless_servers() {
    let llm = MockLlm::start().await;
    // A unique name: the kernel keyring is shared by everything this user runs.
    let name = format!("test/kernel-{}", std::process::id());
    let config = format!(
        "[secrets]\nbackend = \"kernel-keyring\"\n[llm]\nbase_url = \"{}\"\nmodel = \"m\"\napi_key = \"secret:{name}\"\n",
        llm.base_url()
    );
    let home = home_with_config(&config);
    let set = pryx(&home, &["secret", "set", &name], &[], "kernel-held-value").await;
    assert!(set.status.success(), "{}", text(&set.stderr));
    assert!(text(&set.stderr).contains("kernel keyring"));
    let list = pryx(&home, &["secret", "list"], &[], "").await;
    assert!(text(&list.stdout).lines().any(|l| l == name), "{}", text(&list.stdout));
    let out = pryx(&home, &["chat", "hi"], &[], "").await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(llm.auth_headers()[0].as_deref(), Some("Bearer kernel-held-value"));
    let deleted = pryx(&home, &["secret", "delete", &name], &[], "").await;
    assert!(deleted.status.success());
    assert!(!text(&pryx(&home, &["secret", "list"], &[], "").await.stdout).contains(&name));
}

/// Every Pryx of a user shares one keychain and its index of names: two processes setting
/// secrets at the same time must not lose each other's names.
#[tokio::test]
async fn secrets_set_at_the_same_time_by_two_processes_are_all_listed() {
    let config = "[secrets]\nbackend = \"kernel-keyring\"\n";
    let homes = [home_with_config(config), home_with_config(config)];
    let names: Vec<Vec<String>> = (0..2)
        .map(|writer| (0..15).map(|i| format!("test/race-{}-{writer}-{i}", std::process::id())).collect())
        .collect();
    let writers = homes.iter().zip(&names).map(|(home, names)| async move {
        for name in names {
            let out = pryx(home, &["secret", "set", name], &[], "value").await;
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    });
    futures::future::join_all(writers).await;
    let listed = text(&pryx(&homes[0], &["secret", "list"], &[], "").await.stdout);
    let missing: Vec<&String> = names.iter().flatten().filter(|name| !listed.lines().any(|l| l == *name)).collect();
    for name in names.iter().flatten() {
        pryx(&homes[0], &["secret", "delete", name], &[], "").await;
    }
    assert!(missing.is_empty(), "names lost from the index: {missing:?}");
}
