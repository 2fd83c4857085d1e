//! Telegram end to end: the real binary against a Bot API stand-in that speaks Telegram's
//! wire format, with the LLM stand-in answering. Secrets are injected the way a service
//! manager would (`PRYX_SECRET_TELEGRAM_BOT`), so no keychain is needed.

use std::time::Duration;

use pryx::client::PryxApiClient;
use serde_json::json;

use crate::support::telegram::{text_update, Failure, FakeTelegram, BOT_USERNAME, TOKEN};
use crate::support::{eventually, MockLlm, Options, Pryx, Reply};
use pryx_api::{ChannelName, ReplyStatus, SpanQuery, TelegramMode, TelegramSetup};

const WEBHOOK_SECRET: &str = "hook-secret-0123456789";

fn options(llm: &MockLlm, telegram: &FakeTelegram, section: &str) -> Options {
    let mut options = Options::with_llm(llm).config(&format!(
        "[secrets]\nbackend = \"injected\"\n\n[telegram]\nbot_token = \"secret:telegram/bot\"\napi_base = \"{}\"\n{section}",
        telegram.api_base()
    ));
    options.env.push(("PRYX_SECRET_TELEGRAM_BOT".into(), TOKEN.into()));
    options.env.push(("PRYX_SECRET_TELEGRAM_WEBHOOK".into(), WEBHOOK_SECRET.into()));
    options
}

const WEBHOOK: &str =
    "mode = \"webhook\"\npublic_url = \"https://pryx.example.org\"\nwebhook_secret = \"secret:telegram/webhook\"\n";

async fn post_update(pryx: &Pryx, secret: Option<&str>, body: String) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/telegram", pryx.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(secret) = secret {
        request = request.header("X-Telegram-Bot-Api-Secret-Token", secret);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn wait_for_texts(telegram: &FakeTelegram, chat: i64, count: usize) -> Vec<String> {
    eventually(&format!("{count} messages to chat {chat}"), || async { telegram.texts_to(chat).len() >= count }).await;
    telegram.texts_to(chat)
}

#[tokio::test]
async fn a_flood_from_a_stranger_gets_one_refusal_and_every_message_is_recorded() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let pryx = Pryx::start(options(&llm, &telegram, WEBHOOK)).await;
    eventually("the channel to connect", || async {
        post_update(&pryx, None, text_update(0, 888, "probe").to_string()).await != 503
    })
    .await;
    // 300 messages from a chat that is not paired, 50 at a time, as a spammer would send them.
    for wave in 0..6 {
        let posts = (0..50).map(|i| {
            let update = text_update(1 + wave * 50 + i, 888, &format!("buy now {i}")).to_string();
            post_update(&pryx, Some(WEBHOOK_SECRET), update)
        });
        assert!(futures::future::join_all(posts).await.iter().all(|status| *status == 200));
    }
    let database = pryx.data_dir().join("pryx.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&database).read_only(true);
    let db = sqlx::SqlitePool::connect_with(options).await.unwrap();
    eventually("every message to be settled", || async {
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_inbox WHERE status = 'pending'")
            .fetch_one(&db)
            .await
            .unwrap();
        open == 0
    })
    .await;
    let refused: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, note FROM channel_inbox WHERE chat_id = '888' ORDER BY id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(refused.len(), 300, "every message is recorded");
    assert!(
        refused.iter().all(|(status, note)| status == "refused" && note.as_deref() == Some("not paired")),
        "{refused:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(telegram.texts_to(888).len(), 1, "one refusal only");
    assert!(telegram.texts_to(888)[0].contains("not paired"));
    assert!(llm.requests().is_empty(), "nothing reached the model");
}

#[tokio::test]
async fn webhook_refuses_strangers_pairs_the_owner_and_answers_in_html() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let pryx = Pryx::start(options(&llm, &telegram, WEBHOOK)).await;
    let client = pryx.client().await;
    // Channels connect in the background (start-up does not wait for Telegram); until then
    // the webhook answers 503, so Telegram delivers again.
    eventually("the channel to connect", || async {
        post_update(&pryx, None, text_update(0, 555, "probe").to_string()).await != 503
    })
    .await;
    let webhook = telegram.calls("setWebhook");
    assert_eq!(webhook.len(), 1, "registered at start");
    assert_eq!(webhook[0]["url"], "https://pryx.example.org/webhooks/telegram");
    assert_eq!(webhook[0]["secret_token"], WEBHOOK_SECRET);

    // Without the secret, or with a wrong one, nothing is taken; garbage is refused.
    let update = text_update(1, 555, "hello");
    assert_eq!(post_update(&pryx, None, update.to_string()).await, 401);
    assert_eq!(post_update(&pryx, Some("wrong-secret"), update.to_string()).await, 401);
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), "{not json".into()).await, 400);

    // A chat that is not paired gets one polite refusal, and never reaches the model.
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), update.to_string()).await, 200);
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), text_update(2, 555, "hello?").to_string()).await, 200);
    let texts = wait_for_texts(&telegram, 555, 1).await;
    assert!(texts[0].contains("not paired"), "{texts:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(telegram.texts_to(555).len(), 1, "one refusal only");
    assert!(llm.requests().is_empty());

    // Pairing: a one-time code, shown as a t.me link, sent by the owner.
    let pairing = client.channel_pairing_code(ChannelName::Telegram).await.unwrap();
    assert_eq!(pairing.link.as_deref(), Some(format!("https://t.me/{BOT_USERNAME}?start={}", pairing.code).as_str()));
    let start = text_update(3, 555, &format!("/start {}", pairing.code));
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), start.to_string()).await, 200);
    assert!(wait_for_texts(&telegram, 555, 2).await[1].starts_with("Paired"));
    // The code works once.
    let reuse = text_update(4, 777, &format!("/start {}", pairing.code));
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), reuse.to_string()).await, 200);
    assert!(wait_for_texts(&telegram, 777, 1).await[0].contains("not paired"));

    // Now the owner talks to the model; the answer arrives as Telegram HTML.
    llm.script([Reply::text(&["**Hi** <there>, ", "1 < 2"])]);
    let question = text_update(5, 555, "hello again");
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), question.to_string()).await, 200);
    // Telegram redelivers when it is unsure: the same update is handled once.
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), question.to_string()).await, 200);
    wait_for_texts(&telegram, 555, 3).await;
    let answer = telegram.sent().into_iter().rfind(|m| m["chat_id"] == "555").unwrap();
    assert_eq!(answer["text"], "<b>Hi</b> &lt;there&gt;, 1 &lt; 2");
    assert_eq!(answer["parse_mode"], "HTML");
    assert_eq!(llm.requests().len(), 1);
    assert!(!telegram.calls("sendChatAction").is_empty(), "typing… was shown");

    // Its session is visible with the others.
    let sessions = client.session_list().await.unwrap();
    assert!(sessions.iter().any(|s| s.channel == pryx_api::Surface::Telegram), "{sessions:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(telegram.texts_to(555).len(), 3, "the redelivery got no second answer");
    assert!(!pryx.stderr().contains(TOKEN), "the bot token is never logged");

    // Every delivery and every send is a span (no chat ids, no text).
    let deadline = std::time::Instant::now() + crate::support::PATIENCE;
    let spans = loop {
        let spans = client.spans_query(SpanQuery::default()).await.unwrap();
        if spans.iter().filter(|s| s.name == "channel.send").count() >= 4 {
            break spans;
        }
        assert!(std::time::Instant::now() < deadline, "channel spans were not stored: {spans:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcomes: Vec<&str> = spans
        .iter()
        .filter(|s| s.name == "channel.receive")
        .map(|s| s.attributes["pryx.channel.outcome"].as_str().unwrap())
        .collect();
    for expected in ["unauthorized", "malformed", "accepted", "duplicate"] {
        assert!(outcomes.contains(&expected), "{expected} in {outcomes:?}");
    }
    assert!(spans.iter().all(|s| !serde_json::to_string(&s.attributes).unwrap().contains("hello again")));
}

#[tokio::test]
async fn polling_answers_commands_and_text_and_a_restart_repeats_nothing() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let options = options(&llm, &telegram, "allowed_chats = [42]\n");
    let pryx = Pryx::start(options.clone()).await;
    eventually("the channel to connect", || async { !telegram.calls("getUpdates").is_empty() }).await;
    assert_eq!(telegram.calls("deleteWebhook").len(), 1, "polling removes any webhook first");

    llm.script([Reply::text(&["First answer."])]);
    telegram.push_update(text_update(100, 42, "hi"));
    telegram.push_update(json!({"update_id": 101, "message": {"message_id": 9, "date": 1,
        "chat": {"id": 42, "type": "private"}, "sticker": {"file_id": "s", "file_unique_id": "u",
        "width": 512, "height": 512, "is_animated": false, "is_video": false, "type": "regular"}}}));
    // Both are answered (the note about the sticker need not wait for the model).
    let texts = wait_for_texts(&telegram, 42, 2).await;
    assert!(texts.contains(&"First answer.".to_owned()), "{texts:?}");
    assert!(texts.iter().any(|t| t.contains("a sticker")), "{texts:?}");

    let home = pryx.home.clone();
    assert_eq!(pryx.terminate().await, 0);
    let pryx = Pryx::start_in(&home, options).await;
    llm.script([Reply::text(&["Second answer."])]);
    telegram.push_update(text_update(102, 42, "/new"));
    telegram.push_update(text_update(103, 42, "and now?"));
    let texts = wait_for_texts(&telegram, 42, 4).await;
    assert_eq!(texts[2..], ["Started a new conversation.", "Second answer."]);
    assert_eq!(llm.requests().len(), 2, "the update confirmed before the restart was not handled again");
    drop(pryx);
}

#[tokio::test]
async fn replies_are_retried_and_permanent_failures_are_visible() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let pryx = Pryx::start(options(&llm, &telegram, "allowed_chats = [42, 43]\n")).await;
    let client = pryx.client().await;

    telegram.fail_next_sends([Failure::RateLimited { retry_after: 1 }, Failure::ServerError]);
    llm.script([Reply::text(&["Made it."])]);
    telegram.push_update(text_update(1, 42, "hello"));
    assert_eq!(wait_for_texts(&telegram, 42, 1).await, ["Made it."]);
    // Telegram has it; Pryx records that a moment later.
    eventually("the delivery to be recorded", || async {
        client.channel_replies(ChannelName::Telegram, None).await.unwrap()[0].status == ReplyStatus::Sent
    })
    .await;
    let replies = client.channel_replies(ChannelName::Telegram, None).await.unwrap();
    assert_eq!((replies[0].status.as_str(), replies[0].attempts), ("sent", 3), "{replies:?}");

    telegram.fail_next_sends([Failure::Refused { code: 400, description: "Bad Request: chat not found" }]);
    llm.script([Reply::text(&["Never arrives."])]);
    telegram.push_update(text_update(2, 43, "hello"));
    eventually("the failure to be recorded", || async {
        let replies = client.channel_replies(ChannelName::Telegram, None).await.unwrap();
        replies.iter().any(|r| r.status == ReplyStatus::Failed)
    })
    .await;
    let replies = client.channel_replies(ChannelName::Telegram, None).await.unwrap();
    let failed = replies.iter().find(|r| r.status == ReplyStatus::Failed).unwrap();
    assert_eq!(failed.chat_id, "43");
    assert!(failed.error.as_deref().unwrap().contains("chat not found"), "{failed:?}");

    // Formatting Telegram cannot parse: the words go out as plain text.
    telegram.fail_next_sends([Failure::Refused { code: 400, description: "Bad Request: can't parse entities" }]);
    llm.script([Reply::text(&["Plain **words**."])]);
    telegram.push_update(text_update(3, 42, "again"));
    // On a slow machine the live preview ("Plain **words**. …") shows first; the answer
    // then replaces it, as plain text.
    eventually("the plain answer", || async { telegram.texts_to(42).get(1).is_some_and(|t| t == "Plain **words**.") })
        .await;

    // A long answer arrives in pieces Telegram accepts, nothing lost.
    let long =
        (0..40).map(|i| format!("Paragraph {i}: {}", "lorem ipsum ".repeat(20))).collect::<Vec<_>>().join("\n\n");
    llm.script([Reply::text(&[long.as_str()])]);
    telegram.push_update(text_update(4, 42, "tell me a lot"));
    eventually("the long answer", || async { telegram.texts_to(42).iter().any(|t| t.contains("Paragraph 39")) }).await;
    let pieces: Vec<String> = telegram.texts_to(42).into_iter().skip(2).collect();
    assert!(pieces.len() >= 3, "{}", pieces.len());
    assert!(pieces.iter().all(|p| p.chars().count() <= 4096));
    let joined = pieces.join("\n\n");
    assert!((0..40).all(|i| joined.contains(&format!("Paragraph {i}:"))));
}

#[tokio::test]
async fn a_kill_during_an_answer_is_reported_once_after_restart_and_nothing_is_lost() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let options = options(&llm, &telegram, "allowed_chats = [42]\n");
    let pryx = Pryx::start(options.clone()).await;
    llm.script([Reply::slow_text(100, Duration::from_millis(100))]);
    telegram.push_update(text_update(1, 42, "a long question"));
    // Killed while the answer shows as a live preview.
    eventually("the live preview", || async { telegram.texts_to(42).iter().any(|t| t.ends_with(" …")) }).await;
    let home = pryx.home.clone();
    pryx.kill9().await;

    // Written while Pryx is down; Telegram keeps it until it is confirmed.
    telegram.push_update(text_update(2, 42, "are you there?"));
    llm.script([Reply::text(&["Back."])]);
    let _pryx = Pryx::start_in(&home, options).await;
    // The interrupted answer's live preview is replaced by the note; then the new answer.
    eventually("both answers", || async {
        let texts = telegram.texts_to(42);
        texts.iter().any(|t| t.contains("interrupted")) && texts.contains(&"Back.".to_owned())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let texts = telegram.texts_to(42);
    assert_eq!(texts.len(), 2, "each message answered once, no half-written preview left: {texts:?}");
}

#[tokio::test]
async fn a_tool_call_is_approved_or_denied_with_buttons_from_the_phone() {
    use crate::support::telegram::button_press;
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let pryx = Pryx::start(options(&llm, &telegram, "allowed_chats = [42]\n")).await;
    llm.script([
        Reply::tool_call("c1", "fs_write", r#"{"path": "from-phone.txt", "content": "written from Telegram"}"#),
        Reply::text(&["Written."]),
        Reply::tool_call("c2", "fs_delete", r#"{"path": "from-phone.txt"}"#),
        Reply::text(&["Left it."]),
    ]);
    telegram.push_update(text_update(1, 42, "write a note"));
    eventually("the approval prompt", || async {
        telegram.sent().iter().any(|m| m["reply_markup"]["inline_keyboard"].is_array())
    })
    .await;
    let prompt = telegram.sent().into_iter().find(|m| m["reply_markup"].is_object()).unwrap();
    assert!(prompt["text"].as_str().unwrap().contains("fs_write"), "{prompt}");
    let buttons = prompt["reply_markup"]["inline_keyboard"][0].as_array().unwrap().clone();
    assert_eq!(
        buttons.iter().map(|b| b["text"].as_str().unwrap()).collect::<Vec<_>>(),
        ["Allow once", "Allow in this chat", "Deny"]
    );
    let allow = buttons[0]["callback_data"].as_str().unwrap().to_owned();

    // A stranger pressing the button (or sending its data) changes nothing.
    telegram.push_update(button_press(2, 99, &allow));
    eventually("the stranger's refusal", || async { !telegram.texts_to(99).is_empty() }).await;
    // The owner allows it: the call runs and the turn finishes.
    telegram.push_update(button_press(3, 42, &allow));
    eventually("the answer", || async { telegram.texts_to(42).contains(&"Written.".to_owned()) }).await;
    assert!(telegram.texts_to(42).contains(&"Allowed.".to_owned()));
    assert_eq!(telegram.calls("answerCallbackQuery").last().unwrap()["callback_query_id"], "cb-3");
    let written = pryx.data_dir().join("workspace/from-phone.txt");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written from Telegram");

    // Denied: the file stays.
    telegram.push_update(text_update(4, 42, "now delete it"));
    eventually("the second prompt", || async {
        telegram.sent().iter().filter(|m| m["reply_markup"].is_object()).count() == 2
    })
    .await;
    let prompt = telegram.sent().into_iter().rfind(|m| m["reply_markup"].is_object()).unwrap();
    let deny = prompt["reply_markup"]["inline_keyboard"][0][2]["callback_data"].as_str().unwrap().to_owned();
    telegram.push_update(button_press(5, 42, &deny));
    eventually("the answer", || async { telegram.texts_to(42).contains(&"Left it.".to_owned()) }).await;
    assert!(telegram.texts_to(42).contains(&"Denied.".to_owned()));
    assert!(written.exists(), "a denied delete deletes nothing");
}

/// The npm Bot API emulator `telegram-test-api`, as a second, independent peer for the
/// polling and sending paths (its payloads are simplified; the stand-in above covers the
/// full documented shapes).
#[tokio::test]
async fn polling_works_against_the_telegram_test_api_emulator() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let port = crate::support::free_port();
    let mut driver = tokio::process::Command::new("node")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/telegram_test_api.cjs"))
        .env("NODE_PATH", crate::support::peers().join("node_modules"))
        .env("BOT_TOKEN", TOKEN)
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node and telegram-test-api (./x setup for-tests)");
    let mut input = driver.stdin.take().unwrap();
    let mut output = BufReader::new(driver.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(crate::support::PATIENCE, output.next_line()).await.unwrap().unwrap().unwrap();
    let api_url = ready.strip_prefix("ready ").expect("the emulator's address").trim_end_matches('/').to_owned();

    let llm = MockLlm::start().await;
    let mut options = Options::with_llm(&llm).config(&format!(
        "[secrets]\nbackend = \"injected\"\n\n[telegram]\nbot_token = \"secret:telegram/bot\"\napi_base = \"{api_url}\"\nallowed_chats = [42]\n"
    ));
    options.env.push(("PRYX_SECRET_TELEGRAM_BOT".into(), TOKEN.into()));
    let _pryx = Pryx::start(options).await;
    llm.script([Reply::text(&["Hello from the **model**."])]);
    input.write_all(b"hello\n").await.unwrap();
    let replies = tokio::time::timeout(crate::support::PATIENCE, output.next_line()).await.unwrap().unwrap().unwrap();
    let replies: Vec<serde_json::Value> = serde_json::from_str(&replies).unwrap();
    assert!(
        replies.iter().any(|m| m["text"] == "Hello from the <b>model</b>." && m["parse_mode"] == "HTML"),
        "{replies:?}"
    );
    assert_eq!(llm.requests().len(), 1);
}

#[tokio::test]
async fn a_long_answer_streams_into_one_message_edited_about_once_a_second() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let _pryx = Pryx::start(options(&llm, &telegram, "allowed_chats = [42]\n")).await;
    // About 3.5 s of streaming, then the final text with formatting.
    let mut pieces: Vec<String> = (0..35).map(|i| format!("word{i} ")).collect();
    pieces.push("**done**".into());
    llm.script([Reply::Text { pieces, delay: Duration::from_millis(100) }]);
    telegram.push_update(text_update(1, 42, "stream please"));
    eventually("the final answer", || async { telegram.texts_to(42).iter().any(|t| t.ends_with("<b>done</b>")) }).await;
    // One message: the preview, edited as the answer grew, then replaced by the final text.
    let shown = telegram.sent();
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert_eq!(shown[0]["parse_mode"], "HTML");
    let edits = telegram.calls("editMessageText");
    assert!((2..=6).contains(&edits.len()), "{} edits for 3.5 s", edits.len());
    let previews: Vec<&str> = edits[..edits.len() - 1].iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert!(previews.iter().all(|t| t.ends_with(" …")), "{previews:?}");
    assert!(previews.windows(2).all(|w| w[0].len() < w[1].len()), "the preview grows: {previews:?}");
}

#[tokio::test]
async fn a_message_sent_while_paused_waits_and_is_answered_on_resume() {
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let pryx = Pryx::start(options(&llm, &telegram, "allowed_chats = [42]\n")).await;
    eventually("the channel to connect", || async { !telegram.calls("getUpdates").is_empty() }).await;
    let client = pryx.client().await;
    assert!(client.agent_pause(true).await.unwrap().paused);

    telegram.push_update(text_update(200, 42, "are you there?"));
    telegram.push_update(text_update(201, 42, "/help"));
    // Commands are still answered; the message waits, and the model is not asked.
    wait_for_texts(&telegram, 42, 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(telegram.texts_to(42).len(), 1, "{:?}", telegram.texts_to(42));
    assert!(llm.requests().is_empty());

    llm.script([Reply::text(&["Back now."])]);
    assert!(!client.agent_pause(false).await.unwrap().paused);
    let texts = wait_for_texts(&telegram, 42, 2).await;
    assert_eq!(texts.last().map(String::as_str), Some("Back now."), "{texts:?}");
    assert_eq!(llm.requests().len(), 1);
}

/// What the Connections screen does, through the API: a token Telegram refuses is reported
/// in Telegram's words and nothing is saved; the right one is checked with `getMe`, kept in
/// the keychain (the file only names it) and polling starts at once, no restart; switching
/// to webhook mode registers the webhook with a fresh secret and lets its Host in;
/// disconnecting stops it all and forgets the tokens.
#[tokio::test]
async fn telegram_is_connected_switched_and_disconnected_while_pryx_runs() {
    use pryx_api::ChannelState;
    const OWNER: i64 = 4242;
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    llm.script([Reply::text(&["Hello from the agent."]), Reply::text(&["Webhooks work too."])]);
    let telegram = FakeTelegram::start().await;
    let config = format!("[telegram]\napi_base = \"{}\"", telegram.api_base());
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring).config(&config)).await;
    let client = pryx.client().await;
    let file = || std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    let telegram_status = || async { client.channel_status().await.unwrap().remove(0) };
    assert_eq!(telegram_status().await.state, ChannelState::Off);

    // Refused: Telegram's words, and nothing kept.
    let wrong = client
        .channel_telegram_set(TelegramSetup {
            bot_token: Some("123456:wrong-token".into()),
            mode: TelegramMode::Polling,
            public_url: None,
        })
        .await;
    let message = wrong.unwrap_err().to_string();
    assert!(message.contains("Unauthorized"), "{message}");
    let garbled = client
        .channel_telegram_set(TelegramSetup {
            bot_token: Some("my-bot-token".into()),
            mode: TelegramMode::Polling,
            public_url: None,
        })
        .await;
    assert!(garbled.unwrap_err().to_string().contains("not a bot token"));
    assert_eq!(keyring.lookup("telegram/bot").await, None);
    assert!(!file().contains("bot_token"));
    assert_eq!(telegram_status().await.state, ChannelState::Off);

    // Accepted: kept, and polling at once.
    let status = client
        .channel_telegram_set(TelegramSetup {
            bot_token: Some(format!(" {TOKEN} ")),
            mode: TelegramMode::Polling,
            public_url: None,
        })
        .await
        .unwrap();
    assert_eq!(status.state, ChannelState::Connected);
    assert_eq!(status.account.as_deref(), Some(format!("@{BOT_USERNAME}").as_str()));
    assert_eq!(status.mode, Some(TelegramMode::Polling));
    assert_eq!(keyring.lookup("telegram/bot").await.as_deref(), Some(TOKEN));
    assert!(file().contains("bot_token = \"secret:telegram/bot\"") && !file().contains(TOKEN), "{}", file());
    let pairing = client.channel_pairing_code(ChannelName::Telegram).await.unwrap();
    assert_eq!(pairing.link, Some(format!("https://t.me/{BOT_USERNAME}?start={}", pairing.code)));
    telegram.push_update(text_update(1, OWNER, &format!("/start {}", pairing.code)));
    telegram.push_update(text_update(2, OWNER, "hi"));
    let texts = wait_for_texts(&telegram, OWNER, 2).await;
    assert!(texts[0].starts_with("Paired"), "{texts:?}");
    assert!(texts[1].contains("Hello from the agent."), "{texts:?}");
    assert_eq!(telegram_status().await.paired_chats, 1);

    // Webhook mode: needs an https address; registers a fresh secret that the endpoint
    // then demands, and the public Host is let in.
    let plain_http = client
        .channel_telegram_set(TelegramSetup {
            bot_token: None,
            mode: TelegramMode::Webhook,
            public_url: Some("http://pryx.example.net".into()),
        })
        .await;
    assert!(plain_http.unwrap_err().to_string().contains("https"));
    let host_probe = || async {
        reqwest::Client::new()
            .get(format!("{}/healthz", pryx.url))
            .header("host", "pryx.example.net")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(host_probe().await, 403, "a foreign Host before the address is set");
    let status = client
        .channel_telegram_set(TelegramSetup {
            bot_token: None,
            mode: TelegramMode::Webhook,
            public_url: Some("https://pryx.example.net/".into()),
        })
        .await
        .unwrap();
    assert_eq!(status.webhook_url.as_deref(), Some("https://pryx.example.net/webhooks/telegram"));
    let registered = telegram.calls("setWebhook").pop().expect("setWebhook");
    assert_eq!(registered["url"], "https://pryx.example.net/webhooks/telegram");
    let secret = registered["secret_token"].as_str().unwrap().to_owned();
    assert_eq!(keyring.lookup("telegram/webhook").await.as_deref(), Some(secret.as_str()));
    assert_eq!(host_probe().await, 200);
    assert_eq!(post_update(&pryx, Some("guess"), text_update(3, OWNER, "x").to_string()).await, 401);
    assert_eq!(post_update(&pryx, Some(&secret), text_update(4, OWNER, "again").to_string()).await, 200);
    assert!(wait_for_texts(&telegram, OWNER, 3).await[2].contains("Webhooks work too."));

    // Disconnected: the webhook is removed at Telegram, the endpoint is gone, the tokens
    // are forgotten.
    let deletes_before = telegram.calls("deleteWebhook").len();
    let status = client.channel_disconnect(ChannelName::Telegram).await.unwrap();
    assert_eq!(status.state, ChannelState::Off);
    assert_eq!(telegram.calls("deleteWebhook").len(), deletes_before + 1);
    assert_eq!(post_update(&pryx, Some(&secret), text_update(5, OWNER, "anyone?").to_string()).await, 404);
    assert_eq!(keyring.lookup("telegram/bot").await, None);
    assert_eq!(host_probe().await, 403);
    assert!(!file().contains("bot_token"));
    assert!(!pryx.stderr().contains(TOKEN) && !pryx.stderr().contains(&secret));
}

/// Connections that send nothing, stop halfway through a head, or trickle a body are closed
/// within the timeouts, while a flood of real deliveries on other connections is served.
/// The timeouts are 5 s, not the 2 s they once were: on a loaded 2-core CI machine a
/// real delivery's head could wait 2 s for the server to be scheduled and be cut off too.
#[tokio::test]
async fn idle_and_slow_connections_are_closed_while_a_webhook_flood_is_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let section = format!("{WEBHOOK}\n[server]\nheader_timeout_secs = 5\nbody_timeout_secs = 5\n");
    let pryx = Pryx::start(options(&llm, &telegram, &section)).await;
    eventually("the channel to connect", || async {
        post_update(&pryx, None, text_update(0, 777, "probe").to_string()).await != 503
    })
    .await;
    let address = pryx.url.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(&address).await.unwrap());
    }
    let mut half_head = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(format!("POST /webhooks/telegram HTTP/1.1\r\nHost: {address}\r\n").as_bytes()).await.unwrap();
        half_head.push(stream);
    }
    let mut slow_body = Vec::new();
    for _ in 0..5 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let head = format!(
            "POST /webhooks/telegram HTTP/1.1\r\nHost: {address}\r\nX-Telegram-Bot-Api-Secret-Token: {WEBHOOK_SECRET}\r\n\
             content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"update_id\""
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        slow_body.push(stream);
    }

    // The flood: 300 deliveries, 50 at a time, on their own connections.
    for wave in 0..6 {
        let posts = (0..50).map(|i| {
            let update = text_update(1 + wave * 50 + i, 777, &format!("flood {i}")).to_string();
            post_update(&pryx, Some(WEBHOOK_SECRET), update)
        });
        let statuses = futures::future::join_all(posts).await;
        assert!(statuses.iter().all(|status| *status == 200), "{statuses:?}");
    }

    // Every stalled connection is closed by Pryx; the slow bodies are told why.
    let closed = |mut stream: tokio::net::TcpStream| async move {
        let mut answer = Vec::new();
        let read = tokio::time::timeout(crate::support::PATIENCE, stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "a stalled connection was still open after {:?}", crate::support::PATIENCE);
        String::from_utf8_lossy(&answer).into_owned()
    };
    for answer in futures::future::join_all(idle.into_iter().chain(half_head).map(closed)).await {
        assert!(!answer.contains(" 200 "), "nothing was served: {answer}");
    }
    for answer in futures::future::join_all(slow_body.into_iter().map(closed)).await {
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // The server still answers afterwards.
    assert_eq!(post_update(&pryx, Some(WEBHOOK_SECRET), text_update(999, 777, "after").to_string()).await, 200);
}
