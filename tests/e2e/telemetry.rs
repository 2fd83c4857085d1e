//! Telemetry spans: nesting, live order, storage with retention, and content capture.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{ApprovalDecision, SettingsChange, SpanQuery, SpanRecord};

use crate::support::{eventually, follow, MockLlm, Options, Pryx, Reply, PATIENCE};

/// Stored spans of a session, once at least `count` are there.
async fn stored(client: &jsonrpsee::ws_client::WsClient, session: &str, count: usize) -> Vec<SpanRecord> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans =
            client.spans_query(SpanQuery { session_id: Some(session.to_owned()), ..Default::default() }).await.unwrap();
        if spans.len() >= count {
            return spans;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {} spans stored: {spans:?}", spans.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn named<'a>(spans: &'a [SpanRecord], name: &str) -> Vec<&'a SpanRecord> {
    spans.iter().filter(|s| s.name == name).collect()
}

#[tokio::test]
async fn a_tool_turn_is_traced_as_nested_spans_live_and_in_history() {
    let llm = MockLlm::start().await;
    llm.script([
        Reply::ToolCalls(vec![
            ("c1".into(), "time_now".into(), "{}".into()),
            ("c2".into(), "fs_write".into(), r#"{"path": "secret-plan.txt", "content": "the eagle lands"}"#.into()),
        ]),
        Reply::text(&["All ", "done."]),
    ]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    let mut live = client.spans_subscribe(Some(session.id.clone())).await.unwrap();
    let mut approvals = client.approvals_subscribe().await.unwrap();
    let turn = client.message_send(session.id.clone(), "a private question about the eagle".into()).await.unwrap();
    let request = tokio::time::timeout(PATIENCE, approvals.next()).await.unwrap().unwrap().unwrap();
    client.approval_answer(request.id, ApprovalDecision::AllowOnce, None, None).await.unwrap();
    follow(&client, &turn.turn_id).await;

    // History: turn → chat ×2, turn → execute_tool ×2, fs_write's tool → approval.wait.
    let spans = stored(&client, &session.id, 6).await;
    let turn_span = named(&spans, "turn")[0];
    assert_eq!(turn_span.parent_span_id, None);
    assert_eq!(turn_span.turn_id.as_deref(), Some(turn.turn_id.as_str()));
    assert_eq!(turn_span.attributes["gen_ai.operation.name"], "invoke_agent");
    assert_eq!(turn_span.attributes["pryx.turn.status"], "completed");
    let chats = named(&spans, "chat");
    assert_eq!(chats.len(), 2);
    for chat in &chats {
        assert_eq!(chat.parent_span_id.as_deref(), Some(turn_span.span_id.as_str()));
        assert_eq!(chat.trace_id, turn_span.trace_id);
        assert_eq!(chat.attributes["gen_ai.request.model"], "mock-model");
        assert_eq!(chat.attributes["gen_ai.usage.input_tokens"], 11);
        assert!(chat.start_us >= turn_span.start_us && chat.end_us <= turn_span.end_us);
    }
    assert_eq!(chats[0].attributes["gen_ai.response.finish_reasons"], "tool_calls");
    assert_eq!(chats[1].attributes["gen_ai.response.finish_reasons"], "stop");
    assert!(
        chats[1].attributes["pryx.time_to_first_token_ms"].is_u64(),
        "time to first text: {:?}",
        chats[1].attributes
    );
    let tools = named(&spans, "execute_tool");
    assert_eq!(tools.len(), 2);
    assert!(tools.iter().all(|t| t.parent_span_id.as_deref() == Some(turn_span.span_id.as_str())));
    let write = tools.iter().find(|t| t.attributes["gen_ai.tool.name"] == "fs_write").unwrap();
    assert_eq!((write.attributes["pryx.tool.outcome"].as_str(), write.status.as_str()), (Some("ok"), "ok"));
    let wait = named(&spans, "approval.wait")[0];
    assert_eq!(wait.parent_span_id.as_deref(), Some(write.span_id.as_str()), "the approval wait is its own span");
    assert_eq!(wait.attributes["pryx.approval.outcome"], "allowed");
    assert!(write.end_us.unwrap() - write.start_us >= wait.end_us.unwrap() - wait.start_us);

    // Live: every span started before it ended, and parents started before their children.
    let mut events = Vec::new();
    while events.iter().filter(|e: &&SpanRecord| e.name == "turn" && e.end_us.is_some()).count() == 0 {
        events.push(tokio::time::timeout(PATIENCE, live.next()).await.unwrap().unwrap().unwrap());
    }
    for (i, event) in events.iter().enumerate().filter(|(_, e)| e.end_us.is_some()) {
        let started = events[..i].iter().position(|e| e.span_id == event.span_id && e.end_us.is_none());
        assert!(started.is_some(), "{} ended before it was announced", event.name);
        if let Some(parent) = &event.parent_span_id {
            let parent_started = events.iter().position(|e| &e.span_id == parent && e.end_us.is_none()).unwrap();
            assert!(parent_started < started.unwrap(), "{} started before its parent", event.name);
        }
    }
    assert_eq!(events.iter().filter(|e| e.end_us.is_some()).count(), 6);

    // Content capture is off: the message text and tool arguments are nowhere in telemetry.
    let everything = serde_json::to_string(&spans).unwrap();
    assert!(!everything.contains("eagle"), "{everything}");
    let database = pryx.data_dir().join("pryx.db");
    let history = pryx::telemetry::history::SpanHistory::open_beside(&database).await.unwrap();
    let stored = history.query(None, 0, 10_000, pryx::telemetry::history::Keep::Earliest).await.unwrap();
    assert!(stored.len() >= spans.len(), "the turn's spans are in the history: {}", stored.len());
    let stored_json = serde_json::to_string(&stored).unwrap();
    assert!(!stored_json.contains("eagle"));
    // Nor anywhere in the span database's bytes (the WAL included).
    for file in ["telemetry.db", "telemetry.db-wal"] {
        let bytes = std::fs::read(pryx.data_dir().join(file)).unwrap_or_default();
        assert!(!bytes.windows(5).any(|w| w == b"eagle"), "message text in {file}");
    }
    let spans_on_disk: usize = ["telemetry.db", "telemetry.db-wal"]
        .iter()
        .map(|file| std::fs::read(pryx.data_dir().join(file)).map_or(0, |b| b.len()))
        .sum();
    assert!(spans_on_disk > 0, "the span database is where the test looked");
}

#[tokio::test]
async fn failures_are_error_spans_and_content_capture_is_opt_in() {
    let llm = MockLlm::start().await;
    llm.script([Reply::error(401, "bad key"), Reply::text(&["fine"])]);
    let pryx = Pryx::start(Options::with_llm(&llm).config("[telemetry]\ncapture_content = true")).await;
    let client = pryx.client().await;
    let (failed, _) = crate::support::chat(&client, "first words").await;
    let spans = stored(&client, &failed.session_id, 2).await;
    let chat = named(&spans, "chat")[0];
    assert_eq!((chat.status.as_str(), chat.attributes["error.type"].as_str()), ("error", Some("provider_auth")));
    let turn = named(&spans, "turn")[0];
    assert_eq!((turn.status.as_str(), turn.attributes["pryx.turn.status"].as_str()), ("error", Some("failed")));
    assert_eq!(turn.attributes["pryx.user_message"], "first words", "captured because the user turned it on");
}

#[tokio::test]
async fn retention_keeps_only_the_newest_spans() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).config("[telemetry]\nmax_spans = 3")).await;
    let client = pryx.client().await;
    let mut last_session = String::new();
    for i in 0..4 {
        let (started, _) = crate::support::chat(&client, &format!("message {i}")).await;
        last_session = started.session_id;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eventually("the last turn's spans to be stored", || async {
        client
            .spans_query(SpanQuery { session_id: Some(last_session.clone()), ..Default::default() })
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    let all = client.spans_query(SpanQuery::default()).await.unwrap();
    assert!(all.len() <= 3, "trimmed to max_spans: {}", all.len());
    assert!(all.iter().any(|s| s.session_id.as_deref() == Some(last_session.as_str())), "the newest stay");
}

#[tokio::test]
async fn a_limited_query_gets_the_earliest_or_the_newest_spans() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        let (started, _) = crate::support::chat(&client, &format!("message {i}")).await;
        sessions.push(started.session_id);
    }
    eventually("every turn's spans to be stored", || async {
        client.spans_query(SpanQuery::default()).await.unwrap().len() == 6
    })
    .await;
    let session_of = |spans: Vec<SpanRecord>| -> Vec<String> {
        spans.into_iter().map(|s| s.session_id.unwrap_or_default()).collect()
    };
    let earliest = client.spans_query(SpanQuery { limit: Some(2), ..Default::default() }).await.unwrap();
    assert_eq!(session_of(earliest), [sessions[0].clone(), sessions[0].clone()]);
    // What the Traces screen asks for: the latest, still oldest first.
    let newest =
        client.spans_query(SpanQuery { limit: Some(2), newest: Some(true), ..Default::default() }).await.unwrap();
    assert_eq!(newest.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["turn", "chat"]);
    assert_eq!(session_of(newest), [sessions[2].clone(), sessions[2].clone()]);
}

/// The Python OTLP receiver (tests/otlp_receiver.py), decoding with opentelemetry-proto.
pub(crate) struct Receiver {
    pub port: u16,
    pub out: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut child = tokio::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/otlp_receiver.py"))
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with opentelemetry-proto (./x setup installs it)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = lines.next_line().await.unwrap().expect("receiver port").parse().unwrap();
        Receiver { port, out, _dir: dir, _child: child }
    }

    /// Every span received so far, as the official decoder saw it.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .flat_map(|r| {
                let mut spans = Vec::new();
                for resource in r["request"]["resourceSpans"].as_array().cloned().unwrap_or_default() {
                    for scope in resource["scopeSpans"].as_array().cloned().unwrap_or_default() {
                        spans.extend(scope["spans"].as_array().cloned().unwrap_or_default());
                    }
                }
                spans
            })
            .collect()
    }

    pub fn authorizations(&self) -> Vec<Option<String>> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["authorization"].as_str().map(str::to_owned))
            .collect()
    }
}

fn attribute<'a>(span: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    span["attributes"].as_array()?.iter().find(|a| a["key"] == key).map(|a| &a["value"])
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_turned_on_and_decode_with_the_official_protobufs() {
    let receiver = Receiver::start().await;
    let llm = MockLlm::start().await;
    llm.script([Reply::tool_call("c1", "time_now", "{}"), Reply::text(&["It is late."])]);
    let config = format!(
        "[telemetry.otlp]\nendpoint = \"http://127.0.0.1:{}\"\n[telemetry.otlp.headers]\nauthorization = \"secret:otlp/auth\"\n[secrets]\nbackend = \"injected\"",
        receiver.port
    );
    let mut options = Options::with_llm(&llm).config(&config);
    options.env.push(("PRYX_SECRET_OTLP_AUTH".into(), "Bearer otlp-token-5".into()));
    let pryx = Pryx::start(options).await;
    let client = pryx.client().await;
    let (started, _) = crate::support::chat(&client, "what time is it in the eagle's nest?").await;

    let deadline = tokio::time::Instant::now() + PATIENCE;
    while receiver.spans().len() < 4 {
        assert!(tokio::time::Instant::now() < deadline, "only {} spans exported", receiver.spans().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s["name"].as_str().unwrap()).collect();
    for expected in ["turn", "chat", "execute_tool"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    let turn = spans.iter().find(|s| s["name"] == "turn").unwrap();
    assert_eq!(attribute(turn, "pryx.turn.id").unwrap()["stringValue"], started.turn_id);
    let tool = spans.iter().find(|s| s["name"] == "execute_tool").unwrap();
    assert_eq!(tool["traceId"], turn["traceId"], "one trace per turn");
    assert_eq!(tool["parentSpanId"], turn["spanId"], "the tool call nests under the turn");
    assert_eq!(attribute(tool, "gen_ai.tool.name").unwrap()["stringValue"], "time_now");
    let chat = spans.iter().find(|s| s["name"] == "chat").unwrap();
    assert_eq!(attribute(chat, "gen_ai.request.model").unwrap()["stringValue"], "mock-model");
    // Only what the spans say: none of the layer's defaults (target, source location,
    // thread, busy/idle times) ride along.
    for noise in ["target", "code.file.path", "code.line.number", "thread.id", "thread.name", "busy_ns"] {
        assert!(spans.iter().all(|s| attribute(s, noise).is_none()), "`{noise}` exported");
    }
    assert!(
        receiver.authorizations().iter().all(|a| a.as_deref() == Some("Bearer otlp-token-5")),
        "header from the secret store"
    );
    let raw = std::fs::read_to_string(&receiver.out).unwrap();
    assert!(!raw.contains("eagle"), "no message text leaves the machine without content capture");

    let export = client.system_info().await.unwrap().export.expect("export is reported");
    assert!(export.exported >= 4 && export.failed == 0 && export.dropped == 0, "{export:?}");
}

#[tokio::test]
async fn a_dead_otlp_endpoint_costs_the_agent_nothing() {
    // Port 9 (discard) is privileged, so no test's listener can take it: always refused.
    let port = 9;
    let llm = MockLlm::start().await;
    let config = format!("[telemetry.otlp]\nendpoint = \"http://127.0.0.1:{port}\"\ntimeout_secs = 1");
    let pryx = Pryx::start(Options::with_llm(&llm).config(&config)).await;
    let client = pryx.client().await;
    for i in 0..5 {
        let (_, log) = crate::support::chat(&client, &format!("message {i}")).await;
        assert_eq!(log.text(), format!("Echo: message {i}"), "chats work while export fails");
    }
    eventually("failed exports to be counted", || async {
        client.system_info().await.unwrap().export.is_some_and(|e| e.failed > 0)
    })
    .await;
    let export = client.system_info().await.unwrap().export.unwrap();
    assert_eq!(export.exported, 0);
    // Spans are still recorded locally.
    assert!(!client.spans_query(SpanQuery::default()).await.unwrap().is_empty());
    assert_eq!(pryx.terminate().await, 0, "shutdown is not held up by the dead endpoint");
}

/// The Settings screen's changes, through the API: checked, written to the file (the
/// header's value to the keychain), then applied by a restart of the agent's runtime in
/// the same process: export starts and stops, content capture and the workspace follow.
/// Refused while a turn runs, so no answer is cut short.
#[tokio::test]
async fn settings_turn_export_on_and_off_and_move_the_workspace_while_pryx_runs() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let receiver = Receiver::start().await;
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring)).await;
    let client = pryx.client().await;
    let before = client.settings_get().await.unwrap();
    assert_eq!((before.workspace, before.export_endpoint, before.capture_content), (None, None, false));
    assert!(client.system_info().await.unwrap().export.is_none());

    // Bad values are refused and nothing changes.
    let relative =
        client.settings_set(SettingsChange { workspace: Some("work".into()), ..Default::default() }).await.unwrap_err();
    assert!(relative.to_string().contains("absolute"), "{relative}");
    let not_a_url = client
        .settings_set(SettingsChange { export_endpoint: Some("collector:4318".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert!(not_a_url.to_string().contains("http"), "{not_a_url}");

    // A running turn holds the change back.
    llm.script([Reply::slow_text(20, Duration::from_millis(50))]);
    let session = client.session_create(None).await.unwrap();
    let turn = client.message_send(session.id.clone(), "take your time".into()).await.unwrap();
    let busy =
        client.settings_set(SettingsChange { capture_content: Some(true), ..Default::default() }).await.unwrap_err();
    assert!(busy.to_string().contains("a turn is running"), "{busy}");
    follow(&client, &turn.turn_id).await;

    let workspace = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", receiver.port);
    let after = client
        .settings_set(SettingsChange {
            workspace: Some(workspace.path().display().to_string()),
            capture_content: Some(true),
            export_endpoint: Some(endpoint.clone()),
            export_authorization: Some("Bearer from-settings-7".into()),
        })
        .await
        .unwrap();
    assert_eq!(after.export_endpoint.as_deref(), Some(endpoint.as_str()));
    assert!(after.export_authorization && after.capture_content);
    let file = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(
        file.contains("authorization = \"secret:otlp/header/authorization\"") && !file.contains("from-settings-7"),
        "{file}"
    );
    assert_eq!(keyring.lookup("otlp/header/authorization").await.as_deref(), Some("Bearer from-settings-7"));

    // The runtime restarts with them; the same process, port and token.
    tokio::time::timeout(PATIENCE, client.on_disconnect()).await.expect("the old runtime closes its connections");
    let client = pryx.reconnect().await;
    assert_eq!(client.settings_get().await.unwrap().workspace_in_use, workspace.path().display().to_string());
    let (_, log) = crate::support::chat(&client, "where does the eagle nest?").await;
    assert_eq!(log.text(), "Echo: where does the eagle nest?");
    eventually("spans at the receiver", || async { receiver.spans().iter().any(|s| s["name"] == "turn") }).await;
    assert!(receiver.authorizations().iter().all(|a| a.as_deref() == Some("Bearer from-settings-7")));
    let raw = std::fs::read_to_string(&receiver.out).unwrap();
    assert!(raw.contains("eagle"), "content capture is on, so the message text is in the spans");

    // A new header value alone (the file still says `secret:…`, the keychain changed) is
    // used by the next runtime's exporter.
    client
        .settings_set(SettingsChange { export_authorization: Some("Bearer rotated-8".into()), ..Default::default() })
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, client.on_disconnect()).await.expect("the old runtime closes its connections");
    let client = pryx.reconnect().await;
    crate::support::chat(&client, "after the rotation").await;
    eventually("spans sent with the new header", || async {
        receiver.authorizations().iter().any(|a| a.as_deref() == Some("Bearer rotated-8"))
    })
    .await;

    // Export off: nothing more leaves.
    client
        .settings_set(SettingsChange {
            capture_content: Some(false),
            export_endpoint: Some(String::new()),
            export_authorization: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, client.on_disconnect()).await.expect("the old runtime closes its connections");
    let client = pryx.reconnect().await;
    assert!(client.system_info().await.unwrap().export.is_none());
    let sent = receiver.spans().len();
    crate::support::chat(&client, "anyone listening?").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(receiver.spans().len(), sent, "no spans after export was turned off");
    assert_eq!(keyring.lookup("otlp/header/authorization").await, None);
    assert!(!pryx.stderr().contains("from-settings-7"));
}
