//! WhatsApp end to end: the real binary against a Cloud API stand-in written from Meta's
//! documentation, deliveries signed as Meta signs them.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{ChannelName, ChannelState, ReplyStatus, WhatsAppSetup};

use crate::support::whatsapp::{
    signature, status_delivery, text_delivery, FakeWhatsApp, ACCESS_TOKEN, APP_SECRET, DISPLAY_NUMBER, NUMBER_DIGITS,
    PHONE_NUMBER_ID, VERIFY_TOKEN,
};
use crate::support::{eventually, MockLlm, Options, Pryx, Reply};

const OWNER: &str = "4915112345678";

async fn start(llm: &MockLlm, whatsapp: &FakeWhatsApp, extra: &str) -> Pryx {
    let mut options = Options::with_llm(llm).config(&format!(
        "[secrets]\nbackend = \"injected\"\n\n[whatsapp]\naccess_token = \"secret:whatsapp/token\"\n\
         app_secret = \"secret:whatsapp/app_secret\"\nverify_token = \"secret:whatsapp/verify\"\n\
         phone_number_id = \"{PHONE_NUMBER_ID}\"\napi_base = \"{}\"\n{extra}",
        whatsapp.api_base()
    ));
    for (name, value) in [("TOKEN", ACCESS_TOKEN), ("APP_SECRET", APP_SECRET), ("VERIFY", VERIFY_TOKEN)] {
        options.env.push((format!("PRYX_SECRET_WHATSAPP_{name}"), value.into()));
    }
    let pryx = Pryx::start(options).await;
    // Channels connect in the background; until then the webhook answers 503.
    let url = format!("{}/webhooks/whatsapp", pryx.url);
    eventually("the channel to connect", || async { reqwest::get(&url).await.unwrap().status() != 503 }).await;
    pryx
}

async fn post(pryx: &Pryx, body: &str, signature: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{}/webhooks/whatsapp", pryx.url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("X-Hub-Signature-256", signature);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn post_signed(pryx: &Pryx, body: serde_json::Value) -> u16 {
    let body = body.to_string();
    post(pryx, &body, Some(&signature(&body))).await
}

#[tokio::test]
async fn verification_signatures_pairing_answers_and_delivery_statuses() {
    let llm = MockLlm::start().await;
    let whatsapp = FakeWhatsApp::start().await;
    let pryx = start(&llm, &whatsapp, "").await;
    let client = pryx.client().await;

    // Meta's verification handshake.
    let verify = |token: &str| {
        format!("{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444", pryx.url)
    };
    let answer = reqwest::get(verify(VERIFY_TOKEN)).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), "1158201444");
    assert_eq!(reqwest::get(verify("guess")).await.unwrap().status(), 403);

    // Unsigned, wrongly signed and malformed deliveries are refused before anything is stored.
    let hello = text_delivery("wamid.IN1", OWNER, "hello").to_string();
    assert_eq!(post(&pryx, &hello, None).await, 401);
    assert_eq!(post(&pryx, &hello, Some(&signature("{}"))).await, 401);
    assert_eq!(post(&pryx, "{not json", Some(&signature("{not json"))).await, 400);

    // A number that is not paired: one refusal, never the model.
    assert_eq!(post_signed(&pryx, text_delivery("wamid.IN2", OWNER, "hello")).await, 200);
    assert_eq!(post_signed(&pryx, text_delivery("wamid.IN3", OWNER, "anyone?")).await, 200);
    eventually("the refusal", || async { whatsapp.texts_to(OWNER).len() == 1 }).await;
    assert!(whatsapp.texts_to(OWNER)[0].contains("not paired"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(whatsapp.texts_to(OWNER).len(), 1);
    assert!(llm.requests().is_empty());

    // Pairing: the owner sends the code as a message.
    // The link opens a chat with the business number, the code typed in.
    let pairing = client.channel_pairing_code(ChannelName::Whatsapp).await.unwrap();
    assert_eq!(pairing.link, Some(format!("https://wa.me/{NUMBER_DIGITS}?text={}", pairing.code)));
    assert!(pairing.qr.is_some(), "the link comes as a QR code too");
    assert_eq!(post_signed(&pryx, text_delivery("wamid.IN4", OWNER, &pairing.code.to_lowercase())).await, 200);
    eventually("the pairing answer", || async { whatsapp.texts_to(OWNER).len() == 2 }).await;
    assert!(whatsapp.texts_to(OWNER)[1].starts_with("Paired"));
    let status = client.channel_status().await.unwrap().remove(1);
    assert_eq!((status.channel.as_str(), status.state), ("whatsapp", ChannelState::Connected));
    assert_eq!(status.account.as_deref(), Some(format!("{DISPLAY_NUMBER} (Pryx Test)").as_str()));
    assert_eq!(status.paired_chats, 1);
    assert!(status.last_message_at.is_some());

    // Answers come in WhatsApp's own markup; a redelivered message is answered once.
    llm.script([Reply::text(&["# Plan\n**Soon**, see [docs](https://x.org)."])]);
    let question = text_delivery("wamid.IN5", OWNER, "what is the plan?");
    assert_eq!(post_signed(&pryx, question.clone()).await, 200);
    assert_eq!(post_signed(&pryx, question).await, 200);
    eventually("the answer", || async { whatsapp.texts_to(OWNER).len() == 3 }).await;
    assert_eq!(whatsapp.texts_to(OWNER)[2], "*Plan*\n*Soon*, see docs (https://x.org).");
    let sent = whatsapp.sent();
    assert_eq!((sent[2]["messaging_product"].as_str(), sent[2]["type"].as_str()), (Some("whatsapp"), Some("text")));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(llm.requests().len(), 1);

    // Delivery statuses: read for the answer, failed for the refusal.
    let answer_id = FakeWhatsApp::wamid(3);
    assert_eq!(post_signed(&pryx, status_delivery(&answer_id, OWNER, "read", None)).await, 200);
    // Out of order, as Meta may send them: a late "delivered" does not undo "read".
    assert_eq!(post_signed(&pryx, status_delivery(&answer_id, OWNER, "delivered", None)).await, 200);
    let refusal_id = FakeWhatsApp::wamid(1);
    let failed = status_delivery(&refusal_id, OWNER, "failed", Some((131026, "Message undeliverable")));
    assert_eq!(post_signed(&pryx, failed).await, 200);
    let replies = client.channel_replies(ChannelName::Whatsapp, None).await.unwrap();
    let by_text = |needle: &str| replies.iter().find(|r| r.text.contains(needle)).unwrap().clone();
    assert_eq!(by_text("Plan").platform_status.as_deref(), Some("read"));
    let refusal = by_text("not paired");
    assert_eq!(refusal.status, ReplyStatus::Failed);
    assert!(refusal.error.as_deref().unwrap().contains("Message undeliverable"), "{refusal:?}");
    assert!(!pryx.stderr().contains(ACCESS_TOKEN) && !pryx.stderr().contains(APP_SECRET));
}

#[tokio::test]
async fn throttled_sends_are_retried_and_refused_ones_recorded() {
    let llm = MockLlm::start().await;
    let whatsapp = FakeWhatsApp::start().await;
    let pryx = start(&llm, &whatsapp, &format!("allowed_numbers = [\"+{OWNER}\"]\n")).await;
    let client = pryx.client().await;
    whatsapp.fail_next_sends([(429, 130429, "Rate limit hit"), (500, 1, "An unknown error occurred")]);
    llm.script([Reply::text(&["Through."])]);
    assert_eq!(post_signed(&pryx, text_delivery("wamid.X1", OWNER, "hi")).await, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while whatsapp.texts_to(OWNER).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(whatsapp.texts_to(OWNER), ["Through."]);
    // Meta has it; Pryx records that a moment later.
    eventually("the delivery to be recorded", || async {
        client.channel_replies(ChannelName::Whatsapp, None).await.unwrap()[0].status == ReplyStatus::Sent
    })
    .await;
    let replies = client.channel_replies(ChannelName::Whatsapp, None).await.unwrap();
    assert_eq!((replies[0].status.as_str(), replies[0].attempts), ("sent", 3), "{replies:?}");

    whatsapp.fail_next_sends([(400, 131030, "Recipient phone number not in allowed list")]);
    llm.script([Reply::text(&["Lost."])]);
    assert_eq!(post_signed(&pryx, text_delivery("wamid.X2", OWNER, "again")).await, 200);
    eventually("the refusal to be recorded", || async {
        client
            .channel_replies(ChannelName::Whatsapp, None)
            .await
            .unwrap()
            .iter()
            .any(|r| r.status == ReplyStatus::Failed)
    })
    .await;
    let replies = client.channel_replies(ChannelName::Whatsapp, None).await.unwrap();
    assert!(replies[0].error.as_deref().unwrap().contains("not in allowed list"), "{replies:?}");
}

/// The Connections screen's WhatsApp form, through the API: Meta's refusal is shown and
/// nothing kept; accepted settings go to the keychain, the verification handshake and
/// signed deliveries work at once, and the webhook URL to paste into Meta's console is
/// given back.
#[tokio::test]
async fn whatsapp_is_connected_from_the_api_while_pryx_runs() {
    use pryx_api::ChannelState;
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let whatsapp = FakeWhatsApp::start().await;
    let config = format!("[whatsapp]\napi_base = \"{}\"", whatsapp.api_base());
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring).config(&config)).await;
    let client = pryx.client().await;
    let set = |token: &str, phone: &str| {
        client.channel_whatsapp_set(WhatsAppSetup {
            phone_number_id: phone.into(),
            access_token: Some(token.into()),
            app_secret: Some(APP_SECRET.into()),
            verify_token: Some(VERIFY_TOKEN.into()),
            public_url: Some("https://hooks.example.org".into()),
        })
    };
    let refused = set("EAAG-expired", PHONE_NUMBER_ID).await.unwrap_err().to_string();
    assert!(refused.contains("Invalid OAuth access token"), "{refused}");
    let not_an_id = set(ACCESS_TOKEN, "+1 555 0104477").await.unwrap_err().to_string();
    assert!(not_an_id.contains("phone number id"), "{not_an_id}");
    assert_eq!(keyring.lookup("whatsapp/token").await, None);
    assert_eq!(client.channel_status().await.unwrap()[1].state, ChannelState::Off);

    let status = set(ACCESS_TOKEN, PHONE_NUMBER_ID).await.unwrap();
    assert_eq!(status.state, ChannelState::Connected);
    assert_eq!(status.webhook_url.as_deref(), Some("https://hooks.example.org/webhooks/whatsapp"));
    assert_eq!(keyring.lookup("whatsapp/token").await.as_deref(), Some(ACCESS_TOKEN));
    assert_eq!(keyring.lookup("whatsapp/app_secret").await.as_deref(), Some(APP_SECRET));
    let file = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(file.contains(&format!("phone_number_id = \"{PHONE_NUMBER_ID}\"")) && !file.contains(ACCESS_TOKEN));
    let verify =
        format!("{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=77", pryx.url);
    assert_eq!(reqwest::get(&verify).await.unwrap().text().await.unwrap(), "77");
    llm.script([Reply::text(&["Hi from WhatsApp."])]);
    let pairing = client.channel_pairing_code(ChannelName::Whatsapp).await.unwrap();
    assert_eq!(post_signed(&pryx, text_delivery("wamid.API1", OWNER, &pairing.code)).await, 200);
    assert_eq!(post_signed(&pryx, text_delivery("wamid.API2", OWNER, "hello")).await, 200);
    eventually("the answer", || async { whatsapp.texts_to(OWNER).len() == 2 }).await;
    assert!(whatsapp.texts_to(OWNER)[1].contains("Hi from WhatsApp."));

    let status = client.channel_disconnect(ChannelName::Whatsapp).await.unwrap();
    assert_eq!(status.state, ChannelState::Off);
    assert_eq!(reqwest::get(&verify).await.unwrap().status(), 404);
    assert_eq!(keyring.lookup("whatsapp/token").await, None);
}
