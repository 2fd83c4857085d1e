//! Containment against a hostile model, through the real binary: whatever an approved shell
//! command or an MCP server tries, it cannot read Pryx's token, database or keychain, or
//! reach Pryx's API; commands have no network unless a person allows it "with network".
//! Each probe is checked from outside first, so a failure inside means the sandbox held.

use std::path::Path;

use jsonrpsee::core::client::Subscription;
use jsonrpsee::ws_client::WsClient;
use pryx::client::PryxApiClient;
use pryx_api::{Approval, ApprovalDecision, CommandNetwork, Hiding, TurnEvent};
use serde_json::json;
use tokio::process::Command;

use crate::support::keyring::KeyringSession;
use crate::support::{follow, next_approval, pryx_bin, with_test_setup, MockLlm, Options, Pryx, Reply};

/// A value no probe may ever print.
const SECRET_VALUE: &str = "sk-live-CONTAINMENT-0123456789";

/// What one scripted shell call printed, and the approval it asked for (if any).
struct Ran {
    output: String,
    asked: Option<Approval>,
}

/// Have the model call `shell_execute` once in `session`; answer its approval, if one is
/// asked, with `answer`.
async fn run_shell(
    llm: &MockLlm,
    client: &WsClient,
    approvals: &mut Subscription<Approval>,
    session: &str,
    command: &str,
    network: bool,
    answer: ApprovalDecision,
) -> Ran {
    let call = json!({"command": command, "network": network}).to_string();
    llm.script([Reply::tool_call("sh", "shell_execute", &call), Reply::text(&["done"])]);
    let turn = client.message_send(session.to_owned(), "go".into()).await.unwrap();
    let log = follow(client, &turn.turn_id);
    tokio::pin!(log);
    let mut asked = None;
    let log = loop {
        tokio::select! {
            log = &mut log => break log,
            approval = next_approval(approvals) => {
                client.approval_answer(approval.id.clone(), answer, None, None).await.unwrap();
                asked = Some(approval);
            }
        }
    };
    let output = log
        .events
        .iter()
        .find_map(|e| match &e.event {
            TurnEvent::ToolResult { output, .. } => Some(output.clone()),
            _ => None,
        })
        .expect("the command ran");
    Ran { output, asked }
}

/// Probes of everything Pryx keeps to itself, printed as `name=exit status`.
fn probes(pryx: &Pryx, keyring: &KeyringSession) -> String {
    let data = pryx.data_dir();
    let port = pryx.url.rsplit(':').next().unwrap().to_owned();
    format!(
        "cat {token}; echo token=$?\n\
         head -c 16 {db}; echo db=$?\n\
         cat {config}; echo config=$?\n\
         bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'; echo port=$?\n\
         DBUS_SESSION_BUS_ADDRESS='{bus}' timeout 10 secret-tool search --all service pryx; echo keyring=$?\n\
         echo made > proof.txt; echo end",
        token = data.join("token").display(),
        db = data.join("pryx.db").display(),
        config = pryx.home.join("config.toml").display(),
        bus = keyring.bus_address(),
    )
}

/// What the probes must show from inside: nothing of Pryx's, and the workspace usable.
fn assert_contained(pryx: &Pryx, output: &str, secret_service_hidden: bool) {
    assert!(output.contains("end"), "the command ran to its end: {output}");
    assert!(!output.contains(&pryx.token), "the API token leaked: {output}");
    assert!(!output.contains("SQLite format"), "the database was read: {output}");
    assert!(!output.contains("[secrets]"), "the config was read: {output}");
    assert!(!output.contains(SECRET_VALUE), "a keychain secret leaked: {output}");
    let mut refused = vec!["token", "db"];
    if !output.contains("port=open") {
        refused.push("port");
    }
    if secret_service_hidden {
        refused.push("keyring");
    }
    for probe in refused {
        // The probe ran (not 126/127: its program exists) and failed.
        let status = output
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{probe}=")))
            .and_then(|code| code.trim().parse::<i32>().ok());
        assert!(
            matches!(status, Some(code) if code != 0 && code < 126),
            "{probe} was reachable or never tried: {output}"
        );
    }
    let proof = pryx.data_dir().join("workspace/proof.txt");
    assert_eq!(std::fs::read_to_string(&proof).unwrap(), "made\n", "the workspace stays usable");
}

/// Start Pryx in `home` with a Secret Service holding a secret, and check from outside
/// that every probe would succeed there.
async fn start_with_keychain(home: &Path, llm: &MockLlm, keyring: &KeyringSession, extra: &str) -> Pryx {
    keyring.store("llm/openai", SECRET_VALUE).await;
    let options =
        Options::with_llm(llm).keychain(keyring).config(&format!("[tools]\nshell_timeout_secs = 30\n{extra}"));
    let pryx = Pryx::start_in(home, options).await;
    assert_eq!(keyring.lookup("llm/openai").await.as_deref(), Some(SECRET_VALUE), "readable from outside");
    assert!(std::fs::read(pryx.data_dir().join("pryx.db")).unwrap().starts_with(b"SQLite format"));
    pryx
}

#[tokio::test]
async fn an_approved_command_cannot_read_pryxs_token_database_or_keychain_nor_reach_its_port() {
    // A data dir under /tmp (hidden with the private /tmp) and one elsewhere (hidden itself).
    let under_tmp = tempfile::Builder::new().prefix("pryx-contain-").tempdir().unwrap();
    let elsewhere = tempfile::Builder::new().prefix("pryx-contain-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    for home in [under_tmp.path(), elsewhere.path()] {
        let llm = MockLlm::start().await;
        let keyring = KeyringSession::start().await;
        let pryx = start_with_keychain(home, &llm, &keyring, "").await;
        let client = pryx.client().await;
        let sandbox = client.system_info().await.unwrap().sandbox;
        assert_eq!((sandbox.hiding, sandbox.network), (Hiding::MountNamespace, CommandNetwork::Off), "{sandbox:?}");
        let mut approvals = client.approvals_subscribe().await.unwrap();
        let session = client.session_create(None).await.unwrap().id;
        let probes = probes(&pryx, &keyring);
        let ran =
            run_shell(&llm, &client, &mut approvals, &session, &probes, false, ApprovalDecision::AllowForSession).await;
        assert!(ran.asked.is_some(), "a command asks first");
        assert_contained(&pryx, &ran.output, true);
    }
}

#[tokio::test]
async fn commands_have_no_network_unless_a_person_allows_it_with_network() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((_stream, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let llm = MockLlm::start().await;
    let keyring = KeyringSession::start().await;
    let home = tempfile::Builder::new().prefix("pryx-net-").tempdir().unwrap();
    let pryx = start_with_keychain(home.path(), &llm, &keyring, "").await;
    let client = pryx.client().await;
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap().id;
    let reach = format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'; echo net=$?");
    let connections = || accepted.load(std::sync::atomic::Ordering::SeqCst);

    // Offline, allowed for the session: no network.
    let ran =
        run_shell(&llm, &client, &mut approvals, &session, &reach, false, ApprovalDecision::AllowForSession).await;
    let asked = ran.asked.expect("the first command asks");
    assert!(!asked.summary.contains("with network"), "{}", asked.summary);
    assert!(ran.output.contains("net=1"), "{}", ran.output);
    assert_eq!(connections(), 0);

    // Asking for network asks again despite the session's allowance, and says so.
    let with_probes = format!("{reach}\n{}", probes(&pryx, &keyring));
    let ran = run_shell(&llm, &client, &mut approvals, &session, &with_probes, true, ApprovalDecision::AllowOnce).await;
    let asked = ran.asked.expect("network asks a person");
    assert!(asked.summary.ends_with("with network"), "{}", asked.summary);
    assert!(ran.output.contains("net=0"), "{}", ran.output);
    assert_eq!(connections(), 1);
    // With network, Pryx's port answers, but without the token nothing else does.
    assert_contained(&pryx, &ran.output.replace("port=0", "port=open"), true);

    // "Allow for this session" with network covers later network calls; then none ask.
    let ran = run_shell(&llm, &client, &mut approvals, &session, &reach, true, ApprovalDecision::AllowForSession).await;
    assert!(ran.asked.is_some(), "allowed once is not allowed for the session");
    let ran = run_shell(&llm, &client, &mut approvals, &session, &reach, true, ApprovalDecision::Deny).await;
    assert!(ran.asked.is_none(), "allowed for the session with network");
    assert!(ran.output.contains("net=0"), "{}", ran.output);
    let ran = run_shell(&llm, &client, &mut approvals, &session, &reach, false, ApprovalDecision::Deny).await;
    assert!(ran.asked.is_none() && ran.output.contains("net=1"), "offline stays offline: {}", ran.output);
}

#[tokio::test]
async fn shell_network_in_the_config_gives_every_command_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let llm = MockLlm::start().await;
    let options = Options::with_llm(&llm).config("[tools]\nshell_network = true\n");
    let pryx = Pryx::start(options).await;
    let client = pryx.client().await;
    assert_eq!(client.system_info().await.unwrap().sandbox.network, CommandNetwork::On);
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap().id;
    let reach = format!(
        "bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'; echo net=$?; cat {}",
        pryx.data_dir().join("token").display()
    );
    let ran = run_shell(&llm, &client, &mut approvals, &session, &reach, false, ApprovalDecision::AllowOnce).await;
    let asked = ran.asked.expect("a command still asks");
    assert!(!asked.summary.contains("with network"), "nothing more to ask for: {}", asked.summary);
    assert!(ran.output.contains("net=0"), "{}", ran.output);
    assert!(!ran.output.contains(&pryx.token), "the token stays hidden: {}", ran.output);
    let doctor = std::process::Command::new(pryx_bin())
        .args(["--data-dir", &pryx.data_dir().display().to_string()])
        .args(["--config", &pryx.home.join("config.toml").display().to_string(), "doctor"])
        .output()
        .unwrap();
    let doctor = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.contains("network:    on for shell commands ([tools] shell_network = true)"), "{doctor}");
}

#[tokio::test]
async fn an_mcp_stdio_server_cannot_read_pryxs_token_or_database_but_sees_the_workspace() {
    let llm = MockLlm::start().await;
    let home = tempfile::Builder::new().prefix("pryx-mcp-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let data = home.path().join("data");
    let workspace = data.join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("note.txt"), "remember the milk").unwrap();
    // The server is even pointed at the data dir: it still finds nothing of Pryx's there.
    let config = format!(
        "[mcp.servers.files]\ncommand = \"node\"\nargs = [\"{}\", \"{}\", \"{}\"]\n",
        crate::mcp::server_js("server-filesystem"),
        data.display(),
        workspace.display()
    );
    let pryx = Pryx::start_in(home.path(), Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    crate::mcp::wait_for_state(&client, "files", pryx_api::McpServerState::Ready).await;
    let read = |path: &Path| {
        Reply::tool_call("r", "files__read_text_file", &json!({"path": path.display().to_string()}).to_string())
    };
    let list = Reply::tool_call("l", "files__list_directory", &json!({"path": data.display().to_string()}).to_string());
    let mut outputs = Vec::new();
    for call in [read(&data.join("token")), read(&data.join("pryx.db")), list, read(&workspace.join("note.txt"))] {
        llm.script([call, Reply::text(&["ok"])]);
        let (_, log) = crate::support::chat(&client, "look").await;
        outputs.push(crate::mcp::tool_output(&log).0);
    }
    for output in &outputs[..3] {
        assert!(!output.contains(&pryx.token) && !output.contains("SQLite format"), "{output}");
    }
    assert!(
        !outputs[2].contains("token") && !outputs[2].contains("pryx.db"),
        "the data dir looks empty: {}",
        outputs[2]
    );
    assert_eq!(outputs[3], "remember the milk", "the workspace inside it is still there");
}

/// Where the kernel refuses namespaces (here: a user namespace allowing no nested ones),
/// Landlock read rules keep the files out and seccomp the sockets; the report says so.
#[tokio::test]
async fn without_namespaces_landlock_rules_still_keep_the_token_and_database_out() {
    let llm = MockLlm::start().await;
    let keyring = KeyringSession::start().await;
    keyring.store("llm/openai", SECRET_VALUE).await;
    let home = tempfile::Builder::new().prefix("pryx-landlock-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut command = Command::new("unshare");
    command.args([
        "--user",
        "--map-current-user",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_user_namespaces || exit 99; exec \"$@\"",
        "sh",
        pryx_bin(),
    ]);
    with_test_setup(&mut command, home.path());
    command.args(["--serve", "--port", "0"]);
    let data = home.path().join("data");
    let config = format!(
        "[mcp.servers.files]\ncommand = \"node\"\nargs = [\"{}\", \"{}\"]\n",
        crate::mcp::server_js("server-filesystem"),
        data.display()
    );
    let options = Options::with_llm(&llm).keychain(&keyring).config(&config);
    let pryx = Pryx::launch(command, home.path(), options).await;
    let client = pryx.client().await;
    let sandbox = client.system_info().await.unwrap().sandbox;
    assert_eq!((sandbox.hiding, sandbox.network), (Hiding::LandlockRules, CommandNetwork::Off), "{sandbox:?}");
    assert!(sandbox.summary.contains("weaker than namespaces"), "{}", sandbox.summary);
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap().id;
    let probes = probes(&pryx, &keyring);
    let ran = run_shell(&llm, &client, &mut approvals, &session, &probes, false, ApprovalDecision::AllowOnce).await;
    assert_contained(&pryx, &ran.output, true);

    // An MCP server pointed at the data dir reads nothing of Pryx's there either.
    crate::mcp::wait_for_state(&client, "files", pryx_api::McpServerState::Ready).await;
    let token = data.join("token").display().to_string();
    llm.script([
        Reply::tool_call("r", "files__read_text_file", &json!({"path": token}).to_string()),
        Reply::text(&["ok"]),
    ]);
    let (_, log) = crate::support::chat(&client, "look").await;
    let (output, is_error) = crate::mcp::tool_output(&log);
    assert!(is_error && !output.contains(&pryx.token), "{output}");
}

/// On a headless machine Pryx keeps secrets in the kernel keyring, in the session keyring
/// it shares with what it starts, and in the user's persistent keyring. A command gets a
/// keyring of its own and may not call the keyring at all.
#[tokio::test]
async fn a_command_cannot_read_secrets_from_the_kernel_keyring() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config("[secrets]\nbackend = \"kernel-keyring\"\n")).await;
    let client = pryx.client().await;
    // Stored as keyring-rs stores Pryx's secrets, in the session keyring Pryx shares with
    // this test and in the persistent keyring (not through Pryx: its index of names is one
    // key for everything this user runs, which tests running side by side would race on).
    let value = format!("{SECRET_VALUE}-{}", std::process::id());
    let script = format!("{}/tests/fixtures/keyring_dump.py", env!("CARGO_MANIFEST_DIR"));
    let description = format!("keyring-rs:test/contain-{}@pryx", std::process::id());
    let outside =
        std::process::Command::new("/usr/bin/python3").args([&script, "add", &description, &value]).output().unwrap();
    assert!(String::from_utf8_lossy(&outside.stdout).contains(&value), "the probe finds it from outside");

    let mut approvals = client.approvals_subscribe().await.unwrap();
    let session = client.session_create(None).await.unwrap().id;
    let dump = format!("/usr/bin/python3 {script}");
    let ran = run_shell(&llm, &client, &mut approvals, &session, &dump, false, ApprovalDecision::AllowOnce).await;
    assert!(ran.output.contains("errno"), "the probe ran: {}", ran.output);
    assert!(!ran.output.contains(&value), "a kernel-keyring secret leaked: {}", ran.output);
    let dropped = std::process::Command::new("/usr/bin/python3").args([&script, "drop", &description]).status();
    assert!(dropped.unwrap().success());
}
