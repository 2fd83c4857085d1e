//! Provider failures become clear `error` events, retried where retrying is right.

use pryx::client::PryxApiClient;
use pryx_api::{ErrorKind, MessageStatus, ProviderChange, TurnEvent, TurnStatus};

use crate::support::{chat, MockLlm, Options, Pryx, Reply, TurnLog};

/// Start Pryx with one retry (so failing cases stay fast), script `replies`, chat once.
async fn chat_through(replies: Vec<Reply>) -> (MockLlm, Pryx, TurnLog, String) {
    let llm = MockLlm::start().await;
    llm.script(replies);
    let pryx = Pryx::start(Options::with_llm(&llm).config("[llm]\nmax_retries = 1")).await;
    let client = pryx.client().await;
    let (started, log) = chat(&client, "hello").await;
    (llm, pryx, log, started.session_id)
}

fn error_of(log: &TurnLog) -> (ErrorKind, String) {
    match log.last() {
        TurnEvent::Error { kind, message } => (*kind, message.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_key_is_reported_and_not_retried() {
    let (llm, _pryx, log, _) = chat_through(vec![Reply::error(401, "Incorrect API key provided: test-***-123.")]).await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::ProviderAuth);
    assert!(message.contains("refused the API key") && message.contains("PRYX_LLM_API_KEY"), "{message}");
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn an_unknown_model_is_named() {
    let (_llm, _pryx, log, _) = chat_through(vec![Reply::Error {
        status: 404,
        message: "The model `mock-model` does not exist or you do not have access to it.".into(),
        code: Some("model_not_found".into()),
        retry_after: None,
    }])
    .await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::ModelNotFound);
    assert!(message.contains("mock-model"), "{message}");
}

#[tokio::test]
async fn a_rate_limit_is_retried_after_the_time_the_provider_asks() {
    let started = std::time::Instant::now();
    let (llm, _pryx, log, _) = chat_through(vec![
        Reply::Error { status: 429, message: "Rate limit reached".into(), code: None, retry_after: Some(1) },
        Reply::text(&["after the wait"]),
    ])
    .await;
    assert_eq!(log.text(), "after the wait");
    assert_eq!(llm.requests().len(), 2);
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After was honoured");
}

#[tokio::test]
async fn a_lasting_rate_limit_ends_in_a_clear_error() {
    let limited =
        || Reply::Error { status: 429, message: "Rate limit reached".into(), code: None, retry_after: Some(0) };
    let (llm, _pryx, log, _) = chat_through(vec![limited(), limited()]).await;
    assert_eq!(error_of(&log).0, ErrorKind::RateLimited);
    assert_eq!(llm.requests().len(), 2, "one try and one retry");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let (_, _pryx, log, _) = chat_through(vec![Reply::error(502, "bad gateway"), Reply::text(&["recovered"])]).await;
    assert_eq!(log.text(), "recovered");

    let (llm, _pryx, log, _) = chat_through(vec![Reply::error(500, "boom"), Reply::error(503, "still down")]).await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::ProviderUnavailable);
    assert!(message.contains("503"), "{message}");
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn an_unreachable_provider_is_reported() {
    // Port 9 (discard) is privileged, so no test's listener can take it: always refused.
    let url = "http://127.0.0.1:9/v1".to_owned();
    let pryx = Pryx::start(Options { llm_url: Some(url), ..Options::default() }.config("[llm]\nmax_retries = 1")).await;
    let client = pryx.client().await;
    let (_, log) = chat(&client, "anyone there?").await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::ConnectionFailed);
    assert!(message.contains("cannot connect"), "{message}");
}

#[tokio::test]
async fn a_stream_that_breaks_mid_answer_keeps_the_partial_text() {
    let (_, pryx, log, session_id) =
        chat_through(vec![Reply::BreakAfter(vec!["The answer is ".into(), "forty".into()])]).await;
    assert_eq!(log.text(), "The answer is forty");
    assert_eq!(error_of(&log).0, ErrorKind::StreamBroken);
    let detail = pryx.client().await.session_get(session_id).await.unwrap();
    let answer = &detail.messages[1];
    assert_eq!((answer.status, answer.content.as_str()), (MessageStatus::Failed, "The answer is forty"));
    assert!(answer.error.as_deref().is_some_and(|e| e.contains("broke")));
}

#[tokio::test]
async fn a_stream_that_breaks_before_any_text_is_retried_once() {
    let (llm, _pryx, log, _) = chat_through(vec![Reply::BreakAfter(vec![]), Reply::text(&["second try"])]).await;
    assert_eq!(log.text(), "second try");
    assert!(matches!(log.last(), TurnEvent::Done { status: TurnStatus::Completed, .. }));
    assert_eq!(llm.requests().len(), 2);
}

#[tokio::test]
async fn malformed_sse_is_reported_as_such() {
    let (_, _pryx, log, _) = chat_through(vec![Reply::Malformed]).await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::MalformedResponse);
    assert!(message.contains("not a Chat Completions stream"), "{message}");
}

/// One test for both cases, because the second one listens on Ollama's port and the first
/// must not find it.
#[tokio::test]
async fn with_nothing_configured_pryx_explains_or_finds_a_local_server() {
    let pryx = Pryx::start(Options::default()).await;
    let client = pryx.client().await;
    assert_eq!(client.system_info().await.unwrap().provider.source, "none");
    let (_, log) = chat(&client, "hello?").await;
    let (kind, message) = error_of(&log);
    assert_eq!(kind, ErrorKind::NotConfigured);
    for hint in ["PRYX_LLM_BASE_URL", "PRYX_LLM_MODEL", "OPENAI_API_KEY", "[llm]", "Ollama"] {
        assert!(message.contains(hint), "the error should mention {hint}: {message}");
    }
    // The history keeps the failure as the answer, as for any failed answer.
    let session = client.session_list().await.unwrap().remove(0);
    let messages = client.session_get(session.id).await.unwrap().messages;
    let answer = messages.last().unwrap();
    assert_eq!((answer.role, answer.status), (pryx_api::Role::Assistant, pryx_api::MessageStatus::Failed));
    assert_eq!(answer.error.as_deref(), Some(message.as_str()));
    drop(pryx);

    let Some(ollama) = MockLlm::start_on("127.0.0.1:11434").await else {
        eprintln!("skipping the Ollama half: something already listens on 127.0.0.1:11434");
        return;
    };
    ollama.script([Reply::text(&["hello from ", "local"])]);
    let pryx = Pryx::start(Options::default()).await;
    let client = pryx.client().await;
    let info = client.system_info().await.unwrap().provider;
    assert_eq!((info.source.as_str(), info.model.as_deref()), ("ollama", Some("mock-model")));
    let (_, log) = chat(&client, "hi").await;
    assert_eq!(log.text(), "hello from local");
    assert_eq!(ollama.requests()[0]["model"], "mock-model", "the model the server listed is used");
}

#[tokio::test]
async fn the_provider_is_tested_then_set_from_the_api_without_a_restart() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let options = Options {
        llm_url: None,
        config: "[secrets]\nbackend = \"keychain\"\n[llm]\nautodetect_local = false\n".into(),
        env: keyring.env(),
    };
    let pryx = Pryx::start(options).await;
    let client = pryx.client().await;
    let before = client.provider_get().await.unwrap();
    assert_eq!((before.base_url, before.model, before.has_api_key), (None, None, false));
    assert_eq!(client.system_info().await.unwrap().provider.source, "none");

    // Test without saving: a working setting, a refused key, an address nobody answers.
    llm.script([Reply::text(&["OK"])]);
    let ok = client
        .provider_test(ProviderChange {
            base_url: Some(llm.base_url()),
            model: Some("mock-model".into()),
            api_key: Some("sk-try-1".into()),
        })
        .await
        .unwrap();
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.model.as_deref(), Some("mock-model"));
    assert_eq!(llm.auth_headers().last().unwrap().as_deref(), Some("Bearer sk-try-1"));
    llm.script([Reply::error(401, "Incorrect API key provided")]);
    let refused = client
        .provider_test(ProviderChange {
            base_url: Some(llm.base_url()),
            model: Some("mock-model".into()),
            api_key: Some("sk-bad".into()),
        })
        .await
        .unwrap();
    assert!(!refused.ok && refused.message.contains("key"), "{refused:?}");
    let nobody = format!("http://127.0.0.1:{}/v1", crate::support::free_port());
    let unreachable = client
        .provider_test(ProviderChange { base_url: Some(nobody), model: Some("m".into()), ..Default::default() })
        .await
        .unwrap();
    assert!(!unreachable.ok && !unreachable.message.is_empty(), "{unreachable:?}");
    assert_eq!(client.provider_get().await.unwrap().base_url, None, "testing saves nothing");

    // Set: in use for the next turn, the key in the keychain and only its name in the file.
    let info = client
        .provider_set(ProviderChange {
            base_url: Some(llm.base_url()),
            model: Some("mock-model".into()),
            api_key: Some("sk-live-7".into()),
        })
        .await
        .unwrap();
    assert_eq!(
        (info.source.as_str(), info.model.as_deref(), info.has_api_key),
        ("configured", Some("mock-model"), true)
    );
    let (_, log) = chat(&client, "hello").await;
    assert_eq!(log.text(), "Echo: hello");
    assert_eq!(llm.auth_headers().last().unwrap().as_deref(), Some("Bearer sk-live-7"));
    let config = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(config.contains("api_key = \"secret:llm/api_key\"") && !config.contains("sk-live-7"), "{config}");
    assert_eq!(keyring.lookup("llm/api_key").await.as_deref(), Some("sk-live-7"));
    assert!(!pryx.stderr().contains("sk-live-7") && !pryx.stderr().contains("sk-try-1"), "keys stay out of the log");

    // Bad input is refused and changes nothing.
    let bad = client
        .provider_set(ProviderChange { base_url: Some("ftp://example.com".into()), ..Default::default() })
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("http(s)"), "{bad}");
    assert_eq!(client.provider_get().await.unwrap().base_url, Some(llm.base_url()));
}
