//! Nothing acknowledged is lost: restarts, kill -9 mid-answer, panics in a turn or in the
//! whole runtime.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx::store::Store;
use pryx_api::{ErrorKind, MessageStatus, Role, TurnEvent, TurnStatus};

use crate::support::{chat, eventually, follow, MockLlm, Options, Pryx, Reply};

async fn open_store(pryx_home: &std::path::Path) -> Store {
    Store::open(&pryx_home.join("data").join("pryx.db")).await.expect("open the store")
}

/// A turn whose answer streams for seconds (1000 pieces, 10 ms apart), already subscribed to.
struct LongAnswer {
    pryx: Pryx,
    options: Options,
    session: pryx_api::Session,
    started: pryx_api::TurnStarted,
    events: jsonrpsee::core::client::Subscription<pryx_api::TurnEventEnvelope>,
    /// Keeps the subscription's connection open.
    _client: jsonrpsee::ws_client::WsClient,
}

impl LongAnswer {
    async fn start(question: &str) -> LongAnswer {
        let llm = MockLlm::start().await;
        llm.script([Reply::slow_text(1000, Duration::from_millis(10))]);
        let options = Options::with_llm(&llm);
        let pryx = Pryx::start(options.clone()).await;
        let client = pryx.client().await;
        let session = client.session_create(None).await.unwrap();
        let started = client.message_send(session.id.clone(), question.into()).await.unwrap();
        let events = client.turn_subscribe(started.turn_id.clone()).await.unwrap();
        LongAnswer { pryx, options, session, started, events, _client: client }
    }
}

#[tokio::test]
async fn history_survives_a_graceful_restart() {
    let llm = MockLlm::start().await;
    let options = Options::with_llm(&llm);
    let pryx = Pryx::start(options.clone()).await;
    let client = pryx.client().await;
    let (started, log) = chat(&client, "remember me").await;
    assert_eq!(log.text(), "Echo: remember me");
    let home = pryx.home.clone();
    assert_eq!(pryx.interrupt().await, 0, "Ctrl-C exits cleanly");
    assert!(!home.join("data").join("server.json").exists(), "the discovery file is removed at exit");

    let pryx = Pryx::start_in(&home, options).await;
    let client = pryx.client().await;
    let detail = client.session_get(started.session_id.clone()).await.unwrap();
    let contents: Vec<_> = detail.messages.iter().map(|m| (m.role, m.content.as_str(), m.status)).collect();
    assert_eq!(
        contents,
        [
            (Role::User, "remember me", MessageStatus::Complete),
            (Role::Assistant, "Echo: remember me", MessageStatus::Complete)
        ]
    );
    // The conversation continues with its history.
    let next = client.message_send(started.session_id.clone(), "and again".into()).await.unwrap();
    follow(&client, &next.turn_id).await;
    let messages = llm.requests().last().unwrap()["messages"].as_array().unwrap().clone();
    assert_eq!(messages.len(), 4, "system, the earlier exchange, the new message");
    // A turn from before the restart still reports how it ended.
    let old = follow(&client, &started.turn_id).await;
    assert!(matches!(old.last(), TurnEvent::Done { status: TurnStatus::Completed, .. }));
}

#[tokio::test]
async fn sigterm_mid_answer_stores_the_partial_answer_as_interrupted() {
    let long = LongAnswer::start("long please").await;
    let LongAnswer { pryx, session, started, mut events, .. } = long;
    events.next().await.unwrap().unwrap();
    let home = pryx.home.clone();
    assert_eq!(pryx.terminate().await, 0);

    let store = open_store(&home).await;
    let messages = store.messages(&session.id).await.unwrap();
    let answer = messages.iter().find(|m| m.role == Role::Assistant).expect("the partial answer was stored");
    assert_eq!(answer.status, MessageStatus::Interrupted);
    assert!(answer.content.starts_with("word0 "));
    assert_eq!(store.turn(&started.turn_id).await.unwrap().status, TurnStatus::Interrupted);
}

#[tokio::test]
async fn kill_9_mid_answer_loses_nothing_acknowledged() {
    let long = LongAnswer::start("this message was acknowledged").await;
    let LongAnswer { pryx, session, started, mut events, options, .. } = long;
    let mut seen = String::new();
    // Let a few coalescing flushes happen.
    let until = tokio::time::Instant::now() + Duration::from_millis(900);
    while tokio::time::Instant::now() < until {
        if let TurnEvent::Delta { text } = events.next().await.unwrap().unwrap().event {
            seen.push_str(&text);
        }
    }
    let home = pryx.home.clone();
    pryx.kill9().await;

    let pryx = Pryx::start_in(&home, options).await;
    let client = pryx.client().await;
    let detail = client.session_get(session.id.clone()).await.unwrap();
    let [user, answer] = &detail.messages[..] else { panic!("{:?}", detail.messages) };
    assert_eq!((user.content.as_str(), user.status), ("this message was acknowledged", MessageStatus::Complete));
    assert_eq!(answer.status, MessageStatus::Interrupted, "a dead turn's answer is marked, never left streaming");
    assert!(!answer.content.is_empty(), "the partial answer written before the kill is there");
    assert!(seen.starts_with(&answer.content), "the stored text is a clean prefix of what streamed");
    let log = follow(&client, &started.turn_id).await;
    assert!(matches!(log.last(), TurnEvent::Done { status: TurnStatus::Interrupted, .. }), "{:?}", log.last());
}

#[tokio::test]
async fn a_panic_in_one_turn_fails_that_turn_only() {
    let llm = MockLlm::start().await;
    llm.script([Reply::slow_text(40, Duration::from_millis(25))]);
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;

    // A healthy turn in another session keeps streaming through the panic.
    let bystander = client.session_create(Some("bystander".into())).await.unwrap();
    let bystander_turn = client.message_send(bystander.id.clone(), "keep going".into()).await.unwrap();
    eventually("the bystander to start", || async { !llm.requests().is_empty() }).await;

    client.debug_fault("turn_panic".into()).await.unwrap();
    let (victim, log) = chat(&client, "this one breaks").await;
    let TurnEvent::Error { kind: ErrorKind::Internal, message } = log.last() else { panic!("{:?}", log.last()) };
    assert!(message.contains("other chats are unaffected"));

    let bystander_log = follow(&client, &bystander_turn.turn_id).await;
    assert!(matches!(bystander_log.last(), TurnEvent::Done { status: TurnStatus::Completed, .. }));
    assert_eq!(bystander_log.text().split_whitespace().count(), 40);

    let detail = client.session_get(victim.session_id.clone()).await.unwrap();
    assert_eq!(detail.messages[1].status, MessageStatus::Failed);
    // The same session still works afterwards.
    let again = client.message_send(victim.session_id.clone(), "try again".into()).await.unwrap();
    assert_eq!(follow(&client, &again.turn_id).await.text(), "Echo: try again");

    let crashes = open_store(&pryx.home).await.crashes().await.unwrap();
    assert_eq!(crashes.len(), 1);
    assert_eq!((crashes[0].scope.as_str(), crashes[0].turn_id.as_deref()), ("turn", Some(victim.turn_id.as_str())));
    assert!(crashes[0].message.contains("injected turn panic"));
    assert!(crashes[0].backtrace.len() > 100, "a backtrace is recorded");
}

#[tokio::test]
async fn a_runtime_panic_restarts_the_agent_on_the_same_port_with_history_intact() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    let (before, _) = chat(&client, "before the crash").await;
    let pid = pryx.pid();

    client.debug_fault("runtime_panic".into()).await.unwrap();
    eventually("the old connection to drop", || async { !client.is_connected() }).await;

    let client = pryx.reconnect().await;
    assert_eq!(pryx.pid(), pid, "the process did not die");
    let info = client.system_info().await.unwrap();
    assert_eq!(info.runtime_restarts, 1);
    let detail = client.session_get(before.session_id.clone()).await.unwrap();
    assert_eq!(detail.messages.len(), 2);
    let (_, after) = chat(&client, "after the crash").await;
    assert_eq!(after.text(), "Echo: after the crash");

    let crashes = open_store(&pryx.home).await.crashes().await.unwrap();
    assert_eq!(crashes.len(), 1);
    assert_eq!(crashes[0].scope, "runtime");
    assert!(crashes[0].message.contains("injected runtime panic"));
    assert_eq!(pryx.terminate().await, 0);
}
