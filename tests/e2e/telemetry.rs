//! Telemetry spans: nesting, live order, storage with retention, and content capture.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{ApprovalDecision, SpanRecord};

use crate::support::{eventually, follow, MockLlm, Options, Pryx, Reply, PATIENCE};

/// Stored spans of a session, once at least `count` are there.
async fn stored(client: &jsonrpsee::ws_client::WsClient, session: &str, count: usize) -> Vec<SpanRecord> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let spans = client.spans_query(Some(session.to_owned()), None, None).await.unwrap();
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
    let db = pryx::store::Store::open(&database).await.unwrap();
    let stored_json = serde_json::to_string(&db.spans(None, 0, 10_000).await.unwrap()).unwrap();
    assert!(!stored_json.contains("eagle"));
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
        client.spans_query(Some(last_session.clone()), None, None).await.unwrap().len() == 2
    })
    .await;
    let all = client.spans_query(None, None, None).await.unwrap();
    assert!(all.len() <= 3, "trimmed to max_spans: {}", all.len());
    assert!(all.iter().any(|s| s.session_id.as_deref() == Some(last_session.as_str())), "the newest stay");
}
