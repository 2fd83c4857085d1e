//! Chatting: streaming, tool calls, cancel, ordering within a session, session management.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{error_code, ErrorKind, MessageStatus, Role, TurnEvent, TurnStatus};
use serde_json::Value;

use crate::support::{chat, eventually, follow, MockLlm, Options, Pryx, Reply};

#[tokio::test]
async fn an_answer_streams_in_pieces_and_is_stored() {
    let llm = MockLlm::start().await;
    llm.script([Reply::text(&["Hel", "lo", ", world"])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;

    let (started, log) = chat(&client, "hello there").await;

    let deltas: Vec<_> = log.events.iter().filter(|e| matches!(e.event, TurnEvent::Delta { .. })).collect();
    assert_eq!(deltas.len(), 3, "each provider chunk reaches the client as its own delta");
    assert_eq!(log.text(), "Hello, world");
    assert!(log.events.iter().enumerate().all(|(i, e)| e.seq == i as u64), "seq numbers have no gaps");
    assert!(log.events.iter().any(|e| matches!(e.event, TurnEvent::Usage { usage } if usage.completion_tokens == 3)));
    let TurnEvent::Done { status: TurnStatus::Completed, message_id: Some(answer_id) } = log.last().clone() else {
        panic!("turn did not complete: {:?}", log.last());
    };

    let detail = client.session_get(started.session_id.clone()).await.unwrap();
    assert_eq!(detail.session.title, "hello there", "the first message names the session");
    let [user, answer] = &detail.messages[..] else { panic!("{:?}", detail.messages) };
    assert_eq!((user.role, user.content.as_str()), (Role::User, "hello there"));
    assert_eq!((answer.id, answer.role, answer.status), (answer_id, Role::Assistant, MessageStatus::Complete));
    assert_eq!(answer.content, "Hello, world");
    assert_eq!(answer.usage.map(|u| u.total_tokens), Some(14));

    let request = &llm.requests()[0];
    assert_eq!(request["model"], "mock-model");
    assert_eq!(request["stream"], true);
    assert_eq!(request["messages"][0]["role"], "system");
    assert_eq!(request["messages"][1]["content"], "hello there");
    assert_eq!(llm.auth_headers()[0].as_deref(), Some("Bearer test-key-123"));
}

#[tokio::test]
async fn a_tool_call_runs_and_its_result_goes_back_to_the_model() {
    let llm = MockLlm::start().await;
    llm.script([Reply::tool_call("call_1", "time_now", "{}"), Reply::text(&["It is ", "noon."])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;

    let (started, log) = chat(&client, "what time is it?").await;

    let kinds: Vec<&str> = log.events.iter().map(|e| e.event.kind()).collect();
    assert_eq!(kinds, ["usage", "tool_call", "tool_result", "delta", "delta", "usage", "done"]);
    let TurnEvent::ToolResult { output, is_error: false, name, .. } = &log.events[2].event else { panic!() };
    assert_eq!(name, "time_now");
    let result: Value = serde_json::from_str(output).expect("time_now answers JSON");
    assert!(result["utc"].is_string());

    let second = &llm.requests()[1];
    let messages = second["messages"].as_array().unwrap();
    let assistant = &messages[messages.len() - 2];
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1");
    assert_eq!(assistant["tool_calls"][0]["function"]["name"], "time_now");
    assert_eq!(messages.last().unwrap()["role"], "tool");
    assert_eq!(messages.last().unwrap()["tool_call_id"], "call_1");
    assert!(second["tools"].as_array().unwrap().iter().any(|t| t["function"]["name"] == "time_now"));

    let stored = client.session_get(started.session_id).await.unwrap().messages;
    let roles: Vec<Role> = stored.iter().map(|m| m.role).collect();
    assert_eq!(roles, [Role::User, Role::Assistant, Role::Tool, Role::Assistant]);
    assert_eq!(stored[1].tool_calls[0].name, "time_now");
}

#[tokio::test]
async fn parallel_tool_calls_all_run_and_all_results_are_sent_back() {
    let llm = MockLlm::start().await;
    llm.script([
        Reply::ToolCalls(vec![
            ("call_a".into(), "time_now".into(), "{}".into()),
            ("call_b".into(), "time_now".into(), "{ }".into()),
            ("call_c".into(), "no_such_tool".into(), "{\"x\": 1}".into()),
        ]),
        Reply::text(&["done"]),
    ]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;

    let (_, log) = chat(&client, "three things at once").await;
    assert!(matches!(log.last(), TurnEvent::Done { status: TurnStatus::Completed, .. }));
    let results: Vec<_> = log
        .events
        .iter()
        .filter_map(|e| match &e.event {
            TurnEvent::ToolResult { call_id, is_error, output, .. } => {
                Some((call_id.clone(), *is_error, output.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(results.len(), 3);
    assert_eq!((results[0].0.as_str(), results[0].1), ("call_a", false));
    assert_eq!((results[1].0.as_str(), results[1].1), ("call_b", false));
    assert_eq!((results[2].0.as_str(), results[2].1), ("call_c", true));
    assert!(results[2].2.contains("unknown tool"), "the model is told why: {}", results[2].2);

    let messages = llm.requests()[1]["messages"].as_array().unwrap().clone();
    let tool_ids: Vec<&str> =
        messages.iter().filter(|m| m["role"] == "tool").map(|m| m["tool_call_id"].as_str().unwrap()).collect();
    assert_eq!(tool_ids, ["call_a", "call_b", "call_c"]);
    assert_eq!(messages[messages.len() - 4]["tool_calls"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_model_that_never_stops_calling_tools_hits_the_step_limit() {
    let llm = MockLlm::start().await;
    llm.script((0..3).map(|i| Reply::tool_call(&format!("c{i}"), "time_now", "{}")));
    let pryx = Pryx::start(Options::with_llm(&llm).config("[agent]\nmax_steps = 3")).await;
    let client = pryx.client().await;
    let (_, log) = chat(&client, "loop forever").await;
    assert!(matches!(log.last(), TurnEvent::Error { kind: ErrorKind::StepLimit, .. }), "{:?}", log.last());
    assert_eq!(llm.requests().len(), 3);
}

#[tokio::test]
async fn cancel_stops_the_answer_and_keeps_what_arrived() {
    let llm = MockLlm::start().await;
    llm.script([Reply::slow_text(200, Duration::from_millis(20))]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let session = client.session_create(Some("cancel me".into())).await.unwrap();
    let started = client.message_send(session.id.clone(), "write a lot".into()).await.unwrap();

    let mut events = client.turn_subscribe(started.turn_id.clone()).await.unwrap();
    let first = events.next().await.unwrap().unwrap();
    assert!(matches!(first.event, TurnEvent::Delta { .. }));
    assert!(client.turn_cancel(started.turn_id.clone()).await.unwrap());
    assert!(!client.turn_cancel(started.turn_id.clone()).await.unwrap(), "a second cancel finds it ended");

    let log = follow(&client, &started.turn_id).await;
    let TurnEvent::Done { status: TurnStatus::Cancelled, message_id: Some(id) } = log.last().clone() else {
        panic!("{:?}", log.last())
    };
    let detail = client.session_get(session.id).await.unwrap();
    let answer = detail.messages.iter().find(|m| m.id == id).unwrap();
    assert_eq!(answer.status, MessageStatus::Cancelled);
    assert!(
        !answer.content.is_empty() && answer.content.len() < 200 * 6,
        "partial answer kept: {}",
        answer.content.len()
    );
    assert_eq!(answer.content, log.text(), "what the client saw is what was stored");
}

#[tokio::test]
async fn messages_of_one_session_are_answered_in_order_with_full_context() {
    let llm = MockLlm::start().await;
    llm.script([
        Reply::Text { pieces: vec!["first answer".into()], delay: Duration::from_millis(300) },
        Reply::text(&["second answer"]),
    ]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    let one = client.message_send(session.id.clone(), "one".into()).await.unwrap();
    let two = client.message_send(session.id.clone(), "two".into()).await.unwrap();
    assert!(one.user_message_id < two.user_message_id);

    let second_log = follow(&client, &two.turn_id).await;
    assert_eq!(second_log.text(), "second answer");
    let first_log = follow(&client, &one.turn_id).await;
    assert_eq!(first_log.text(), "first answer");

    let requests = llm.requests();
    let first_request: Vec<String> = requests[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(!first_request.contains(&"two".to_owned()), "turn one must not see the queued message: {first_request:?}");
    let second: Vec<(String, String)> = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|m| (m["role"].as_str().unwrap().to_owned(), m["content"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected =
        [("user", "one"), ("assistant", "first answer"), ("user", "two")].map(|(r, c)| (r.to_owned(), c.to_owned()));
    assert_eq!(second, expected);
}

#[tokio::test]
async fn sessions_run_concurrently_and_events_can_be_watched_per_session() {
    let llm = MockLlm::start().await;
    llm.script([Reply::slow_text(30, Duration::from_millis(30)), Reply::text(&["quick"])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let slow = client.session_create(Some("slow".into())).await.unwrap();
    let fast = client.session_create(Some("fast".into())).await.unwrap();
    let mut watch = client.events_subscribe(Some(fast.id.clone())).await.unwrap();

    let slow_turn = client.message_send(slow.id.clone(), "take your time".into()).await.unwrap();
    eventually("the slow turn to start streaming", || async { llm.requests().len() == 1 }).await;
    let fast_turn = client.message_send(fast.id.clone(), "be quick".into()).await.unwrap();
    let fast_log = follow(&client, &fast_turn.turn_id).await;
    assert_eq!(fast_log.text(), "quick");
    let slow_status = client.session_get(slow.id.clone()).await.unwrap();
    assert!(
        slow_status.messages.iter().any(|m| m.role == Role::Assistant && m.status == MessageStatus::Streaming),
        "the fast session finished while the slow one was still writing: {:?}",
        slow_status.messages
    );
    let watched = tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(watched.session_id, fast.id, "the watcher only sees its session");
    follow(&client, &slow_turn.turn_id).await;
}

#[tokio::test]
async fn a_finished_turn_replays_in_full_until_newer_turns_take_its_place_in_memory() {
    let llm = MockLlm::start().await;
    llm.script([Reply::text(&["Hel", "lo"])]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let (started, live) = chat(&client, "hello").await;

    let late = follow(&client, &started.turn_id).await;
    assert_eq!(late.events, live.events, "a late subscriber gets every event again");

    // Finished turns' logs are kept for the newest 256 turns only (memory stays flat); one
    // session keeps the requests small.
    let session = client.session_create(None).await.unwrap();
    for i in 0..256 {
        let next = client.message_send(session.id.clone(), format!("message {i}")).await.unwrap();
        follow(&client, &next.turn_id).await;
    }
    let stored = follow(&client, &started.turn_id).await;
    let [envelope] = &stored.events[..] else { panic!("{:?}", stored.events) };
    assert_eq!(envelope.event, live.events.last().unwrap().event, "the stored outcome, with the answer's id");
    let detail = client.session_get(started.session_id).await.unwrap();
    assert_eq!(detail.messages[1].content, "Hello", "the answer itself is in the store");
}

#[tokio::test]
async fn sessions_can_be_listed_renamed_and_deleted_with_clear_errors() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let a = client.session_create(Some("Alpha".into())).await.unwrap();
    let b = client.session_create(None).await.unwrap();
    assert_eq!(b.title, "New chat");
    let (started, _) = chat(&client, "hi").await;

    let list = client.session_list().await.unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0].id, started.session_id, "most recently used first");
    assert_eq!(list[0].message_count, 2);

    let renamed = client.session_rename(a.id.clone(), "  Beta ".into()).await.unwrap();
    assert_eq!(renamed.title, "Beta");
    let err = client.session_rename(a.id.clone(), "x".repeat(201)).await.unwrap_err();
    assert!(err.to_string().contains("longer than 200"), "{err}");
    let err = client.session_rename(a.id.clone(), "   ".into()).await.unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    client.session_delete(started.session_id.clone()).await.unwrap();
    let err = client.session_get(started.session_id.clone()).await.unwrap_err();
    assert!(matches!(&err, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::NOT_FOUND), "{err}");
    let err = client.message_send("no-such-session".into(), "hi".into()).await.unwrap_err();
    assert!(matches!(&err, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::NOT_FOUND), "{err}");
    let err = client.message_send(a.id.clone(), "y".repeat(pryx_api::MAX_MESSAGE_CHARS + 1)).await.unwrap_err();
    assert!(matches!(&err, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::INVALID_INPUT), "{err}");
    let err = client.message_send(a.id.clone(), " \n ".into()).await.unwrap_err();
    assert!(matches!(&err, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::INVALID_INPUT), "{err}");
    assert_eq!(client.session_list().await.unwrap().len(), 2);
    assert!(client.turn_subscribe("no-such-turn".into()).await.is_err());
}

#[tokio::test]
async fn system_info_names_the_provider_without_its_key() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let info = client.system_info().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.provider.model.as_deref(), Some("mock-model"));
    assert_eq!(info.provider.base_url, Some(llm.base_url()));
    assert!(info.provider.has_api_key);
    assert_eq!(info.data_dir, pryx.data_dir().display().to_string());
    assert!(!serde_json::to_string(&info).unwrap().contains("test-key-123"));
    let (_, log) = crate::support::chat(&client, "a secret-free turn").await;
    assert!(matches!(log.last(), TurnEvent::Done { .. }));
    let logs = pryx.stderr();
    assert!(!logs.contains("test-key-123"), "the API key never reaches the log");
    assert!(!logs.contains("a secret-free turn"), "message text never reaches the log");
}
