//! MCP against real servers from the npm registry and PyPI (installed by `./x setup
//! for-tests` into `$PRYX_TEST_PEERS`): turns that call their tools, servers added and
//! removed while Pryx serves, and servers that crash, hang or print garbage.

use std::time::{Duration, Instant};

use jsonrpsee::ws_client::WsClient;
use pryx::client::PryxApiClient;
use pryx_api::{McpServerConfig, McpServerState, McpServerStatus, SpanQuery, TurnEvent};

use crate::support::{chat, eventually, files_containing, free_port, peers, MockLlm, Options, Pryx, Reply, PATIENCE};

pub fn server_js(package: &str) -> String {
    peers().join("node_modules/@modelcontextprotocol").join(package).join("dist/index.js").display().to_string()
}

/// `[mcp.servers.NAME]` for the reference "everything" server over stdio.
fn everything_stdio(name: &str) -> String {
    format!("[mcp.servers.{name}]\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\n", server_js("server-everything"))
}

async fn status(client: &WsClient, name: &str) -> Option<McpServerStatus> {
    client.mcp_list().await.unwrap().servers.into_iter().find(|s| s.name == name)
}

pub async fn wait_for_state(client: &WsClient, name: &str, state: McpServerState) -> McpServerStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let current = status(client, name).await;
        if let Some(s) = current.as_ref().filter(|s| s.state == state) {
            return s.clone();
        }
        assert!(Instant::now() < deadline, "{name} never became {state:?}: {current:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn tool_output(log: &crate::support::TurnLog) -> (String, bool) {
    log.events
        .iter()
        .find_map(|e| match &e.event {
            TurnEvent::ToolResult { output, is_error, .. } => Some((output.clone(), *is_error)),
            _ => None,
        })
        .expect("the turn ran no tool")
}

/// Send a message whose (scripted) turn runs a long MCP operation; return the turn id once
/// the first progress report (progress, total) arrives.
async fn start_long_operation(client: &WsClient) -> (String, (f64, Option<f64>)) {
    let session = client.session_create(None).await.unwrap();
    let started = client.message_send(session.id, "run the long thing".into()).await.unwrap();
    let mut events = client.turn_subscribe(started.turn_id.clone()).await.unwrap();
    loop {
        let event = tokio::time::timeout(PATIENCE, events.next()).await.unwrap().unwrap().unwrap();
        if let TurnEvent::ToolProgress { progress, total, .. } = event.event {
            return (started.turn_id, (progress, total));
        }
    }
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only a running process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_turn_calls_a_tool_of_a_stdio_server_and_answers_with_its_result() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config(&everything_stdio("everything"))).await;
    let client = pryx.client().await;
    let ready = wait_for_state(&client, "everything", McpServerState::Ready).await;
    assert!(ready.tools >= 5, "{ready:?}");
    assert!(ready.pid.is_some() && ready.server_info.is_some(), "{ready:?}");

    let tools = client.mcp_tools(Some("everything".into())).await.unwrap();
    assert!(tools.iter().all(|t| t.name != "everything__get-roots-list"), "no roots unless configured");
    let echo = tools.iter().find(|t| t.name == "everything__echo").expect("echo is offered");
    assert_eq!((echo.hints.read_only, echo.rule.as_str()), (Some(true), "allow"), "read-only tools run unasked");

    llm.script([
        Reply::tool_call("c1", "everything__echo", r#"{"message": "hello through MCP"}"#),
        Reply::text(&["The server said hello."]),
    ]);
    let (started, log) = chat(&client, "echo something").await;
    let (output, is_error) = tool_output(&log);
    assert!(!is_error && output.contains("hello through MCP"), "{output}");
    // The MCP request is its own span, inside the agent's tool span.
    let deadline = Instant::now() + PATIENCE;
    let spans = loop {
        let spans = client
            .spans_query(SpanQuery { session_id: Some(started.session_id.clone()), ..Default::default() })
            .await
            .unwrap();
        if spans.iter().any(|s| s.name == "mcp.tools_call") {
            break spans;
        }
        assert!(Instant::now() < deadline, "no MCP call span stored: {spans:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let call = spans.iter().find(|s| s.name == "mcp.tools_call").unwrap();
    let tool = spans.iter().find(|s| s.name == "execute_tool").unwrap();
    assert_eq!(call.parent_span_id.as_ref(), Some(&tool.span_id));
    assert_eq!(call.attributes["pryx.mcp.server"], "everything");
    assert_eq!(call.attributes["pryx.tool.outcome"], "ok");
    assert!(!call.attributes.values().any(|v| v.to_string().contains("hello through MCP")), "no content captured");
    assert!(matches!(log.last(), TurnEvent::Done { .. }), "{:?}", log.last());
    // The model saw the tool (name, schema) and got the result back.
    let requests = llm.requests();
    let offered = requests[0]["tools"].as_array().unwrap();
    assert!(offered.iter().any(|t| t["function"]["name"] == "everything__echo"));
    assert!(requests[1].to_string().contains("hello through MCP"));
}

#[tokio::test]
async fn tools_a_server_adds_while_running_are_offered_from_the_next_request() {
    let llm = MockLlm::start().await;
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/growing_server.cjs");
    let config = format!(
        "[mcp.servers.grow]\ncommand = \"node\"\nargs = [\"{fixture}\"]\nenv = {{ NODE_PATH = \"{}\" }}\n",
        peers().join("node_modules").display()
    );
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    wait_for_state(&client, "grow", McpServerState::Ready).await;
    let names = |tools: Vec<pryx_api::McpToolInfo>| tools.into_iter().map(|t| t.name).collect::<Vec<_>>();
    assert_eq!(names(client.mcp_tools(None).await.unwrap()), ["grow__unlock"]);

    llm.script([
        Reply::tool_call("c1", "grow__unlock", "{}"),
        Reply::text(&["Unlocked."]),
        Reply::tool_call("c2", "grow__open_door", "{}"),
        Reply::text(&["Open."]),
    ]);
    chat(&client, "unlock it").await;
    // notifications/tools/list_changed: Pryx lists again and offers the new tool.
    eventually("the new tool to be offered", || async {
        names(client.mcp_tools(None).await.unwrap()).contains(&"grow__open_door".to_owned())
    })
    .await;
    let (_, log) = chat(&client, "open the door").await;
    assert_eq!(tool_output(&log), ("the door is open".to_owned(), false));
    let offered = &llm.requests()[2]["tools"];
    assert!(offered.to_string().contains("grow__open_door"), "the model saw it: {offered}");
}

#[tokio::test]
async fn a_server_can_be_given_the_workspace_as_its_root() {
    let llm = MockLlm::start().await;
    let config = format!("{}workspace_root = true\n", everything_stdio("everything"));
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    wait_for_state(&client, "everything", McpServerState::Ready).await;
    // server-everything offers get-roots-list only to clients that offer roots.
    assert!(client.mcp_tools(None).await.unwrap().iter().any(|t| t.name == "everything__get-roots-list"));
    llm.script([Reply::tool_call("c1", "everything__get-roots-list", "{}"), Reply::text(&["Your workspace."])]);
    let (_, log) = chat(&client, "where do you work?").await;
    let (output, is_error) = tool_output(&log);
    let workspace = pryx.data_dir().join("workspace").canonicalize().unwrap();
    assert!(!is_error && output.contains(&format!("file://{}", workspace.display())), "{output}");
}

#[tokio::test]
async fn a_stdio_server_gets_its_keychain_secrets_but_none_of_pryxs_environment() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let config = format!(
        "[secrets]\nbackend = \"keychain\"\n\n{}env = {{ SERVICE_TOKEN = \"secret:mcp/everything/token\", PLAIN = \"visible\" }}\n",
        everything_stdio("everything")
    );
    let mut options = Options::with_llm(&llm).config(&config);
    options.env = keyring.env();
    let pryx = Pryx::start(options).await;
    let client = pryx.client().await;
    // The secret does not exist yet: the server cannot start, and says why.
    let failed = wait_for_state(&client, "everything", McpServerState::Failed).await;
    assert!(failed.reason.as_deref().unwrap().contains("mcp/everything/token"), "{failed:?}");

    client.secret_set("mcp/everything/token".into(), "tok-from-keychain-31".into()).await.unwrap();
    client.mcp_restart("everything".into()).await.unwrap();
    wait_for_state(&client, "everything", McpServerState::Ready).await;
    llm.script([Reply::tool_call("c1", "everything__get-env", "{}"), Reply::text(&["Here."])]);
    let (_, log) = chat(&client, "what is your environment?").await;
    let (output, _) = tool_output(&log);
    assert!(output.contains("tok-from-keychain-31") && output.contains("visible"), "{output}");
    // Pryx's own provider key (PRYX_LLM_API_KEY in its environment) never reaches a server.
    assert!(!output.contains("test-key-123") && !output.contains("PRYX_LLM"), "{output}");
    assert!(!pryx.stderr().contains("tok-from-keychain-31"), "the secret is not logged");
}

#[tokio::test]
async fn cancelling_a_turn_stops_its_mcp_call_and_the_server_stays_usable() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config(&everything_stdio("everything"))).await;
    let client = pryx.client().await;
    wait_for_state(&client, "everything", McpServerState::Ready).await;
    llm.script([
        // The cancelled turn asks the model nothing more; the next turn gets the echo.
        Reply::tool_call("c1", "everything__trigger-long-running-operation", r#"{"duration": 60, "steps": 60}"#),
        Reply::tool_call("c2", "everything__echo", r#"{"message": "still here"}"#),
        Reply::text(&["Yes."]),
    ]);
    let (turn_id, _) = start_long_operation(&client).await;
    let cancelled_at = Instant::now();
    assert!(client.turn_cancel(turn_id.clone()).await.unwrap());
    let log = crate::support::follow(&client, &turn_id).await;
    assert!(cancelled_at.elapsed() < Duration::from_secs(10), "the 60 s call did not hold the turn");
    assert!(matches!(log.last(), TurnEvent::Done { status: pryx_api::TurnStatus::Cancelled, .. }), "{:?}", log.last());
    let (_, log) = chat(&client, "are you there?").await;
    assert_eq!(tool_output(&log).0, "Echo: still here");
}

#[tokio::test]
async fn filesystem_and_python_time_servers_work_with_their_own_policies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("note.txt"), "remember the milk").unwrap();
    let config = format!(
        "[mcp.servers.files]\ncommand = \"node\"\nargs = [\"{}\", \"{}\"]\n\n[mcp.servers.time]\ncommand = \"mcp-server-time\"\n",
        server_js("server-filesystem"),
        dir.path().display()
    );
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    wait_for_state(&client, "files", McpServerState::Ready).await;
    wait_for_state(&client, "time", McpServerState::Ready).await;

    let tools = client.mcp_tools(None).await.unwrap();
    let rule = |name: &str| tools.iter().find(|t| t.name == name).map(|t| t.rule.as_str()).unwrap();
    assert_eq!(rule("files__read_text_file"), "allow");
    assert_eq!(rule("files__write_file"), "ask", "a tool that is not read-only asks");

    let path = dir.path().join("note.txt").display().to_string();
    llm.script([
        Reply::tool_call("c1", "files__read_text_file", &serde_json::json!({"path": path}).to_string()),
        Reply::text(&["Milk."]),
        Reply::tool_call("c2", "time__get_current_time", r#"{"timezone": "Europe/Paris"}"#),
        Reply::text(&["It is late."]),
    ]);
    let (_, log) = chat(&client, "what is in my note?").await;
    assert_eq!(tool_output(&log), ("remember the milk".to_owned(), false));
    let (_, log) = chat(&client, "what time is it in Paris?").await;
    let (output, is_error) = tool_output(&log);
    assert!(!is_error && output.contains("Europe/Paris"), "{output}");
}

#[tokio::test]
async fn servers_are_added_and_removed_while_serving_through_the_api_and_the_file() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    assert!(client.mcp_list().await.unwrap().servers.is_empty());

    // Over streamable HTTP, added through the API.
    let port = free_port();
    let mut http_server = tokio::process::Command::new("node")
        .args([server_js("server-everything").as_str(), "streamableHttp"])
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    eventually("the HTTP server to listen", || async { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() })
        .await;
    let server = McpServerConfig { url: Some(url.clone()), ..McpServerConfig::default() };
    let added = client.mcp_add("remote".into(), server.clone(), None).await.unwrap();
    assert_eq!((added.state, added.transport.as_str()), (McpServerState::Ready, "http"), "{added:?}");
    let conflict = client.mcp_add("remote".into(), server, None).await.unwrap_err().to_string();
    assert!(conflict.contains("already exists"), "{conflict}");
    let file = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(file.contains("[mcp.servers.remote]") && file.contains(&url), "the config file is the record: {file}");

    llm.script([Reply::tool_call("c1", "remote__get-sum", r#"{"a": 2, "b": 40}"#), Reply::text(&["42"])]);
    let (_, log) = chat(&client, "add 2 and 40").await;
    let (output, is_error) = tool_output(&log);
    assert!(!is_error && output.contains("42"), "{output}");

    // Over stdio, added by editing the config file by hand.
    let started = Instant::now();
    std::fs::write(pryx.home.join("config.toml"), format!("{file}\n{}", everything_stdio("local"))).unwrap();
    wait_for_state(&client, "local", McpServerState::Ready).await;
    eprintln!("config edit to tools ready: {:?}", started.elapsed());
    assert!(client.mcp_tools(Some("local".into())).await.unwrap().iter().any(|t| t.name == "local__echo"));

    // A broken edit changes nothing and says why.
    std::fs::write(pryx.home.join("config.toml"), "[mcp.servers.local\n").unwrap();
    eventually("the config error to show", || async { client.mcp_list().await.unwrap().config_error.is_some() }).await;
    assert_eq!(status(&client, "local").await.unwrap().state, McpServerState::Ready);

    // Removing through the API stops the server and withdraws its tools.
    std::fs::write(pryx.home.join("config.toml"), format!("{file}\n{}", everything_stdio("local"))).unwrap();
    eventually("the fixed config to load", || async { client.mcp_list().await.unwrap().config_error.is_none() }).await;
    let pid = status(&client, "local").await.unwrap().pid.unwrap();
    client.mcp_remove("local".into()).await.unwrap();
    assert!(status(&client, "local").await.is_none());
    assert!(client.mcp_tools(None).await.unwrap().iter().all(|t| t.server != "local"));
    eventually("the removed server's process to end", || async { !alive(pid) }).await;
    let missing = client.mcp_remove("local".into()).await.unwrap_err().to_string();
    assert!(missing.contains("no MCP server named"), "{missing}");
    let _ = http_server.kill().await;
}

#[tokio::test]
async fn a_server_killed_mid_call_fails_that_call_and_is_restarted() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config(&everything_stdio("everything"))).await;
    let client = pryx.client().await;
    let first = wait_for_state(&client, "everything", McpServerState::Ready).await;

    llm.script([
        Reply::tool_call("c1", "everything__trigger-long-running-operation", r#"{"duration": 30, "steps": 30}"#),
        Reply::text(&["It broke."]),
    ]);
    // Progress arrives while it runs; then the server dies under the call.
    let (turn_id, (progress, total)) = start_long_operation(&client).await;
    assert!(progress >= 1.0 && total == Some(30.0));
    // SAFETY: kill(2) on the server process this test's Pryx started.
    unsafe { libc::kill(first.pid.unwrap() as i32, libc::SIGKILL) };
    let log = crate::support::follow(&client, &turn_id).await;
    let (output, is_error) = tool_output(&log);
    assert!(is_error && output.contains("not connected"), "{output}");
    assert!(matches!(log.last(), TurnEvent::Done { .. }), "the turn goes on: {:?}", log.last());

    let again = wait_for_state(&client, "everything", McpServerState::Ready).await;
    assert!(again.restarts >= 1 && again.pid != first.pid, "{again:?}");
}

#[tokio::test]
async fn hanging_and_garbage_printing_servers_fail_clearly_and_calls_time_out() {
    let llm = MockLlm::start().await;
    let config = format!(
        "[mcp.servers.silent]\ncommand = \"sleep\"\nargs = [\"600\"]\nstartup_timeout_secs = 1\n\n\
         [mcp.servers.noisy]\ncommand = \"sh\"\nargs = [\"-c\", \"while true; do echo 'Server starting... not JSON'; sleep 0.1; done\"]\nstartup_timeout_secs = 1\n\n\
         {}call_timeout_secs = 1\n",
        everything_stdio("slow")
    );
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;

    let silent = wait_for_state(&client, "silent", McpServerState::Failed).await;
    assert!(silent.reason.as_deref().unwrap().contains("no answer to the MCP handshake within 1s"), "{silent:?}");
    let noisy = wait_for_state(&client, "noisy", McpServerState::Failed).await;
    let reason = noisy.reason.unwrap();
    assert!(reason.contains("not MCP messages") && reason.contains("Server starting"), "{reason}");

    // A call that neither answers nor reports progress within call_timeout_secs is cancelled.
    wait_for_state(&client, "slow", McpServerState::Ready).await;
    llm.script([
        Reply::tool_call("c1", "slow__trigger-long-running-operation", r#"{"duration": 20, "steps": 1}"#),
        Reply::text(&["Too slow."]),
    ]);
    let (_, log) = chat(&client, "run it").await;
    let (output, is_error) = tool_output(&log);
    assert!(is_error && output.contains("within 1s"), "{output}");
    assert_eq!(status(&client, "slow").await.unwrap().state, McpServerState::Ready, "the server itself is fine");
}

#[tokio::test]
async fn a_long_mcp_call_that_reports_progress_may_outlast_the_generic_tool_timeout() {
    let llm = MockLlm::start().await;
    let config = format!("[agent]\ntool_timeout_secs = 1\n\n{}call_timeout_secs = 2\n", everything_stdio("slow"));
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    wait_for_state(&client, "slow", McpServerState::Ready).await;
    llm.script([
        // Three seconds in all, progress every half second: never two seconds of silence.
        Reply::tool_call("c1", "slow__trigger-long-running-operation", r#"{"duration": 3, "steps": 6}"#),
        Reply::text(&["Done."]),
    ]);
    let (_, log) = chat(&client, "run it").await;
    let (output, is_error) = tool_output(&log);
    assert!(!is_error && output.contains("completed"), "{output}");
    let progress = log.events.iter().filter(|e| matches!(e.event, TurnEvent::ToolProgress { .. })).count();
    assert!(progress >= 5, "{progress} progress events");
}

#[tokio::test]
async fn shutdown_with_three_servers_leaves_no_process_behind() {
    let dir = tempfile::tempdir().unwrap();
    // `everything` runs through npx, as most users start servers (npm, a shell, node); `files`
    // leaves a helper behind that ignores stdin, the kind of process that would be orphaned.
    let config = format!(
        "[mcp.servers.everything]\ncommand = \"npx\"\nargs = [\"--no-install\", \"mcp-server-everything\", \"stdio\"]\ncwd = \"{}\"\n\n\
         [mcp.servers.files]\ncommand = \"sh\"\nargs = [\"-c\", \"sleep 300 & exec node {} {}\"]\n\n[mcp.servers.time]\ncommand = \"mcp-server-time\"\n",
        peers().display(),
        server_js("server-filesystem"),
        dir.path().display()
    );
    for how in ["SIGTERM", "SIGKILL"] {
        let pryx = Pryx::start(Options::default().config(&config)).await;
        let client = pryx.client().await;
        let mut processes = Vec::new();
        for name in ["everything", "files", "time"] {
            let pid = wait_for_state(&client, name, McpServerState::Ready).await.pid.unwrap();
            processes.extend(process_tree(pid));
        }
        assert!(processes.len() > 3, "npx starts more than one process: {processes:?}");
        assert!(processes.iter().all(|&pid| alive(pid)));
        drop(client);
        if how == "SIGTERM" {
            assert_eq!(pryx.terminate().await, 0);
            let left: Vec<_> = processes.iter().filter(|&&pid| alive(pid)).collect();
            assert!(left.is_empty(), "still running after a clean exit: {left:?}");
        } else {
            pryx.kill9().await;
            // The parent-death signal and the PID namespaces take them all.
            eventually("servers to die with Pryx", || async { processes.iter().all(|&pid| !alive(pid)) }).await;
        }
    }
}

/// `pid` and every process below it, from /proc.
fn process_tree(pid: u32) -> Vec<u32> {
    let parent_of = |child: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
        stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
    };
    let all: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().copied().filter(|&p| parent_of(p) == Some(parent)));
        i += 1;
    }
    tree
}

#[tokio::test]
async fn mcp_import_reads_claude_desktop_config_and_the_cli_shows_servers() {
    let pryx = Pryx::start(Options::default()).await;
    let client = pryx.client().await;
    let json = serde_json::json!({"mcpServers": {
        "Everything Server": {"command": "node", "args": [server_js("server-everything"), "stdio"]},
        "broken": {"command": "node", "url": "http://x"}
    }});
    let error = client.mcp_import(json.to_string(), None).await.unwrap_err().to_string();
    assert!(error.contains("broken") && error.contains("exactly one"), "{error}");
    assert!(client.mcp_list().await.unwrap().servers.is_empty(), "a bad import adds nothing");

    let good = serde_json::json!({"mcpServers": {
        "Everything Server": {"command": "node", "args": [server_js("server-everything"), "stdio"]}
    }});
    assert_eq!(client.mcp_import(good.to_string(), None).await.unwrap(), ["Everything-Server"]);
    wait_for_state(&client, "Everything-Server", McpServerState::Ready).await;
    assert!(client.mcp_import(good.to_string(), None).await.unwrap().is_empty(), "existing names are skipped");

    let output = crate::support::base_command(&pryx.home).args(["mcp", "list"]).output().await.unwrap();
    let listed = String::from_utf8_lossy(&output.stdout);
    assert!(listed.contains("Everything-Server") && listed.contains("ready"), "{listed}");
    let output = crate::support::base_command(&pryx.home).args(["mcp", "tools"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("Everything-Server__echo"));
}

/// The official TypeScript SDK's example server with its demo OAuth provider (which approves
/// every authorization at once): the MCP endpoint and the authorization server.
async fn oauth_example_server() -> (tokio::process::Child, u16) {
    let (mcp_port, auth_port) = (free_port(), free_port());
    let script =
        peers().join("node_modules/@modelcontextprotocol/sdk/dist/esm/examples/server/simpleStreamableHttp.js");
    let child = tokio::process::Command::new("node")
        .arg(script)
        .arg("--oauth")
        .env("MCP_PORT", mcp_port.to_string())
        .env("MCP_AUTH_PORT", auth_port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for port in [mcp_port, auth_port] {
        eventually("the OAuth example server to listen", || async move {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
    }
    (child, mcp_port)
}

/// What a browser does with the demo authorization server: it approves at once and
/// redirects; the redirect target is returned (not followed).
async fn approve_in_browser(authorization_url: &str) -> String {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let answer = browser.get(authorization_url).send().await.unwrap();
    assert!(answer.status().is_redirection(), "{}", answer.status());
    answer.headers()[reqwest::header::LOCATION].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_oauth_server_is_signed_in_through_pryx_and_its_tokens_stay_in_the_keychain() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let (_server, mcp_port) = oauth_example_server().await;
    let llm = MockLlm::start().await;
    let config = format!(
        "[secrets]\nbackend = \"keychain\"\n\n[mcp.servers.secure]\nurl = \"http://localhost:{mcp_port}/mcp\"\ntrusted_tools = [\"greet\"]\n"
    );
    let mut options = Options::with_llm(&llm).config(&config);
    options.env = keyring.env();
    let pryx = Pryx::start(options.clone()).await;
    let client = pryx.client().await;
    let waiting = wait_for_state(&client, "secure", McpServerState::NeedsAuth).await;
    assert!(waiting.reason.unwrap().contains("pryx mcp login secure"));

    // A callback Pryx did not start is refused, and changes nothing.
    let forged = reqwest::get(format!("{}/oauth/callback?code=stolen&state=made-up", pryx.url)).await.unwrap();
    assert_eq!(forged.status(), 400);

    let authorization_url = client.mcp_login("secure".into()).await.unwrap();
    assert!(authorization_url.contains("code_challenge_method=S256"), "PKCE: {authorization_url}");
    let callback = approve_in_browser(&authorization_url).await;
    assert!(callback.starts_with(&format!("{}/oauth/callback?", pryx.url)), "{callback}");
    // The browser lands on Pryx's own page (no API token needed, the one-time state is).
    let page = reqwest::get(&callback).await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("signed in to secure"));
    let replayed = reqwest::get(&callback).await.unwrap();
    assert_eq!(replayed.status(), 400, "a callback works once");

    wait_for_state(&client, "secure", McpServerState::Ready).await;
    llm.script([Reply::tool_call("c1", "secure__greet", r#"{"name": "Ada"}"#), Reply::text(&["Greeted."])]);
    let (_, log) = chat(&client, "greet Ada").await;
    let (output, is_error) = tool_output(&log);
    assert!(!is_error && output.contains("Ada"), "{output}");

    // The tokens are in the keychain, and nowhere in Pryx's files or log.
    let stored = keyring.lookup("mcp/oauth/secure").await.expect("the tokens are in the keychain");
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let access_token = stored["token_response"]["access_token"].as_str().unwrap().to_owned();
    assert!(access_token.len() >= 16);
    drop(client);
    let home = pryx.home.clone();
    let log = pryx.stderr();
    assert_eq!(pryx.terminate().await, 0);
    assert!(!log.contains(&access_token), "the token is not logged");
    assert!(files_containing(&home, &access_token).is_empty(), "the token is in no file under {}", home.display());

    // Started again, Pryx connects with the stored sign-in; signing out forgets it.
    let pryx = Pryx::start_in(&home, options).await;
    let client = pryx.client().await;
    wait_for_state(&client, "secure", McpServerState::Ready).await;
    client.mcp_logout("secure".into()).await.unwrap();
    wait_for_state(&client, "secure", McpServerState::NeedsAuth).await;
    assert_eq!(keyring.lookup("mcp/oauth/secure").await, None);
}
