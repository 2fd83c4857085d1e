//! The Connections screen: the LLM provider (base URL, model, API key into the keychain,
//! a Test that makes a real call and shows the provider's answer or error in words), and
//! the messaging channels (Telegram's bot token, WhatsApp's Cloud API settings; the agent
//! checks them with the platform before saving, then a pairing QR code). Everything
//! applies at once; channel status follows `channels.subscribe` live.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{
    ChannelName, ChannelState, ChannelStatus, LoginProvider, LoginStarted, LoginStatus, PairingCode, ProviderChange,
    ProviderInfo, ProviderSettings, ProviderTest, PryxApiClient, QrImage, TelegramMode, TelegramSetup, WhatsAppSetup,
};

use crate::form::{self, Field};
use crate::state::Agent;

#[component]
pub fn ConnectionsPage() -> impl IntoView {
    crate::page::set_title("Connections");
    view! {
        <section class="page narrow">
            <h1>"Connections"</h1>
            <p class="muted">"Where your agent thinks and where you reach it. Keys go to this computer's keychain, never into a file."</p>
            <ProviderCard/>
            <ChannelCards/>
        </section>
    }
}

const PROVIDER_FIELDS: &[Field] = &[
    ("Base URL", "base_url", false, "https://api.openai.com/v1"),
    ("Model", "model", false, "gpt-4o-mini (empty: the first the server lists)"),
    ("API key", "api_key", true, "none (local servers need none)"),
];

#[component]
fn ProviderCard() -> impl IntoView {
    let agent = expect_context::<Agent>();
    let settings = RwSignal::new(None::<ProviderSettings>);
    let in_use = RwSignal::new(None::<ProviderInfo>);
    let values = form::values();
    let busy = RwSignal::new(false);
    let outcome = RwSignal::new(None::<ProviderTest>);
    let load = move || {
        spawn_local(async move {
            let Ok(client) = agent.client() else { return };
            if let Ok(current) = client.provider_get().await {
                values[0].set(current.base_url.clone().unwrap_or_default());
                values[1].set(current.model.clone().unwrap_or_default());
                settings.set(Some(current));
            }
            if let Ok(info) = client.system_info().await {
                in_use.set(Some(info.provider));
            }
        });
    };
    Effect::new(move |_| {
        agent.connection.track();
        load();
    });
    // What the form says; an empty key field keeps the saved key, an empty model asks the
    // server for its first.
    let form =
        move || (form::value(&values, 0), Some(values[1].get_untracked().trim().to_owned()), form::value(&values, 2));
    let test = move |_| {
        let (url, name, key) = form();
        busy.set(true);
        outcome.set(None);
        spawn_local(async move {
            let change = ProviderChange { base_url: url, model: name, api_key: key };
            let result = agent.call("Could not test", |c| async move { c.provider_test(change).await }).await;
            outcome.set(result);
            busy.set(false);
        });
    };
    let save = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let (url, name, key) = form();
        busy.set(true);
        spawn_local(async move {
            let change = ProviderChange { base_url: url, model: name, api_key: key };
            let saved = agent.call("Not saved", |c| async move { c.provider_set(change).await }).await;
            if let Some(info) = saved {
                form::clear_secrets(PROVIDER_FIELDS, &values);
                agent.notify(format!("Saved: {} is in use from the next message on.", describe(&info)), false);
                in_use.set(Some(info));
                load();
            }
            busy.set(false);
        });
    };
    let has_key = Signal::derive(move || settings.with(|s| s.as_ref().is_some_and(|s| s.has_api_key)));
    let pill = move || {
        in_use.get().map(|info| (if info.source != "none" { "status idle" } else { "status error" }, describe(&info)))
    };
    let overridden = move || {
        let names = settings.with(|s| s.as_ref().map(|s| s.overridden_by_env.join(", "))).unwrap_or_default();
        (!names.is_empty()).then(|| format!("Set in Pryx's environment, and used instead at the next start: {names}."))
    };
    let result = move || {
        outcome.get().map(|t| match t.ok {
            true => ("test-result ok", format!("Works: {} in {} ms.", t.message, t.latency_ms)),
            false => ("test-result error-box", format!("Does not work: {}", t.message)),
        })
    };
    view! {
        <div class="card connection">
            <div class="server-head">
                <h3>"Language model"</h3><span class="spacer"></span>
                {move || pill().map(|(class, text)| view! { <span class=class><span class="dot"></span>{text}</span> })}
            </div>
            <p class="muted small">"Any OpenAI-compatible endpoint: OpenAI, a local Ollama (http://127.0.0.1:11434/v1), LM Studio, vLLM, a proxy."</p>
            {move || overridden().map(|text| view! { <p class="error-box small">{text}</p> })}
            // Live: the agent's activity says when the last answer failed (a revoked key, a
            // model gone), until the next one starts.
            {move || agent.activity.with(|a| a.as_ref()?.last_error.clone()).map(|error| view! {
                <p class="error-box small last-failure">{format!("The last answer failed: {error}")}</p>
            })}
            <GitHubLogin status=Signal::derive(move || settings.with(|s| s.as_ref()?.github.clone())) on_change=Callback::new(move |_| load())/>
            <form class="form" on:submit=save>
                {form::inputs(PROVIDER_FIELDS, values, has_key)}
                <div class="actions">
                    <button type="button" on:click=test disabled=move || busy.get()>"Test"</button>
                    <button type="submit" class="primary" disabled=move || busy.get()>"Save"</button>
                </div>
            </form>
            {move || result().map(|(class, text)| view! { <p class=class>{text}</p> })}
        </div>
    }
}

/// "Log in with GitHub": the device flow, so a GitHub account is enough to chat (GitHub
/// Models) with no key to paste. GitHub shows no pre-filled link, so the code is the thing
/// to see: large, copyable, its expiry counting down, and a refusal or expiry said in words.
/// While a code is shown the card asks how the login stands every two seconds (`provider.get`
/// carries it): cheaper in the page's download, which has a budget, than a subscription.
#[component]
fn GitHubLogin(status: Signal<Option<LoginStatus>>, on_change: Callback<()>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let started = RwSignal::new(None::<LoginStarted>);
    let logged_in = move || status.with(|s| s.as_ref().is_some_and(|s| s.logged_in));
    // The clock the code's countdown reads; it ticks while a code is shown.
    let now = RwSignal::new(0i64);
    let act = move |_| {
        let out = logged_in();
        spawn_local(async move {
            if out {
                agent.call("Could not log out", |c| async move { c.auth_logout(LoginProvider::Github).await }).await;
                on_change.run(());
                return;
            }
            let Some(login) = agent
                .call("Could not start the login", |c| async move { c.auth_login_start(LoginProvider::Github).await })
                .await
            else {
                return;
            };
            now.set(js_sys::Date::now() as i64);
            started.set(Some(login));
            // Until the login ends: tick the countdown, and every other second ask how the
            // login stands (`provider.get` carries it).
            let mut tick = 0u32;
            while started.try_with_untracked(Option::is_some).unwrap_or(false) {
                now.set(js_sys::Date::now() as i64);
                if tick % 2 == 1 {
                    on_change.run(());
                }
                tick += 1;
                crate::rpc::sleep(1000).await;
            }
        });
    };
    // The login ended (in, or failed): the code goes.
    Effect::new(move |_| {
        if status.with(|s| s.as_ref().is_some_and(|s| s.logged_in || s.failure.is_some())) {
            started.set(None);
        }
    });
    let note = move || match status.get() {
        Some(s) if s.logged_in => "Logged in to GitHub: chat can use GitHub Models.".to_owned(),
        Some(s) if s.available => "No key needed: your GitHub account gives you GitHub Models.".to_owned(),
        Some(s) => format!("Log in with GitHub: {}", s.reason.unwrap_or_default()),
        None => String::new(),
    };
    let failure =
        move || status.with(|s| s.as_ref().and_then(|s| s.failure.clone())).filter(|_| started.with(Option::is_none));
    view! {
        <p class="login-row">
            <button type="button" class:github-login=move || !logged_in() class:primary=move || !logged_in()
                hidden=move || status.with(|s| s.as_ref().is_none_or(|s| !s.logged_in && !s.available))
                disabled=move || started.with(Option::is_some) on:click=act>
                {move || if logged_in() { "Log out" } else { "Log in with GitHub" }}
            </button>
            <span class="muted small login-note">{note}</span>
        </p>
        <p class="error-box login-failed" role="alert" hidden=move || failure().is_none()>{failure}</p>
        {move || started.get().map(|login| device_code_view(login, now))}
    }
}

/// The code to type, large (a click selects it whole), where to type it, a QR code of the
/// link, and the time left, counting down.
fn device_code_view(login: LoginStarted, now: RwSignal<i64>) -> impl IntoView {
    let left = move || {
        let secs = ((login.expires_at - now.get()) / 1000).max(0);
        format!("The code expires in {}:{:02}.", secs / 60, secs % 60)
    };
    let link = login.verification_uri_complete.unwrap_or(login.verification_uri);
    view! {
        <div class="device-login">
            {code_panel(login.qr, "Open this link on any device and enter the code:", Some(link), login.user_code, "pairing-code login-code", left)}
        </div>
    }
}

/// "mock-model at http://…" or why there is none.
fn describe(info: &ProviderInfo) -> String {
    match (&info.model, &info.base_url) {
        (Some(model), Some(url)) => format!("{model} at {url}"),
        _ if info.source == "none" => "no model connected".to_owned(),
        _ => info.source.clone(),
    }
}

/// Telegram and WhatsApp, their status live.
#[component]
fn ChannelCards() -> impl IntoView {
    let agent = expect_context::<Agent>();
    let statuses = RwSignal::new(Vec::<ChannelStatus>::new());
    Effect::new(move |_| {
        agent.connection.track();
        crate::state::while_shown(async move {
            let Ok(mut stream) = agent.try_call(|c| async move { c.channels_subscribe().await }).await else { return };
            while let Some(Ok(list)) = stream.next().await {
                statuses.set(list);
            }
        });
    });
    let status = move |channel: ChannelName| {
        Signal::derive(move || statuses.with(|list| list.iter().find(|s| s.channel == channel).cloned()))
    };
    view! {
        <ChannelCard channel=ChannelName::Telegram status=status(ChannelName::Telegram)/>
        <ChannelCard channel=ChannelName::Whatsapp status=status(ChannelName::Whatsapp)/>
    }
}

const TELEGRAM_FIELDS: &[Field] = &[
    ("Bot token", "bot_token", true, "123456789:AAH…"),
    (
        "Public https address (optional)",
        "public_url",
        false,
        "empty: Pryx asks Telegram for messages, which works anywhere",
    ),
];
const WHATSAPP_FIELDS: &[Field] = &[
    ("Phone number id", "phone_number_id", false, "106540352242922"),
    ("Access token", "access_token", true, "EAAG…"),
    ("App secret", "app_secret", true, ""),
    ("Verify token", "verify_token", true, "any word you choose; type it into Meta's webhook settings too"),
    ("Public https address", "public_url", false, "https://pryx.example.com"),
];

/// One channel: its state, a form to connect or change it, pairing, disconnecting. Built
/// once and driven by attributes (`hidden`, text) rather than views rebuilt on each change:
/// every rebuilt view costs the page's download far more than it saves the browser.
#[component]
fn ChannelCard(channel: ChannelName, status: Signal<Option<ChannelStatus>>) -> impl IntoView {
    let agent = expect_context::<Agent>();
    let telegram = channel == ChannelName::Telegram;
    let (fields, intro) = if telegram {
        (TELEGRAM_FIELDS, "In Telegram, talk to @BotFather, send /newbot and paste the token it gives you. With a public https address Telegram posts messages to Pryx (webhook); without one Pryx asks for them.")
    } else {
        (WHATSAPP_FIELDS, "From your Meta app: WhatsApp → API Setup gives the phone number id and an access token, App settings → Basic the app secret. Then give Meta the webhook URL shown here and the same verify token.")
    };
    let values = form::values();
    let editing = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let failure = RwSignal::new(None::<String>);
    let pairing = RwSignal::new(None::<PairingCode>);
    let confirming = RwSignal::new(false);
    let configured = Memo::new(move |_| status.with(|s| s.as_ref().is_some_and(|s| s.state != ChannelState::Off)));
    let form_shown = move || editing.get() || !configured.get();
    let value = move |i: usize| form::value(&values, i);
    // The form opens with the settings in use.
    let open_form = move |_| {
        if let Some(s) = status.get_untracked() {
            values[fields.len() - 1].set(s.public_url.unwrap_or_default());
            if !telegram {
                values[0].set(s.phone_number_id.unwrap_or_default());
            }
        }
        editing.set(true);
    };
    let connect = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        busy.set(true);
        failure.set(None);
        spawn_local(async move {
            let result = agent
                .try_call(|c| async move {
                    if telegram {
                        let mode = if value(1).is_some() { TelegramMode::Webhook } else { TelegramMode::Polling };
                        c.channel_telegram_set(TelegramSetup { bot_token: value(0), mode, public_url: value(1) }).await
                    } else {
                        let setup = WhatsAppSetup {
                            phone_number_id: value(0).unwrap_or_default(),
                            access_token: value(1),
                            app_secret: value(2),
                            verify_token: value(3),
                            public_url: value(4),
                        };
                        c.channel_whatsapp_set(setup).await
                    }
                })
                .await;
            match result {
                Ok(s) => {
                    form::clear_secrets(fields, &values);
                    editing.set(false);
                    let account = s.account.unwrap_or_default();
                    agent.notify(format!("{} is connected as {account}.", title(channel)), false);
                }
                Err(e) => failure.set(Some(e)),
            }
            busy.set(false);
        });
    };
    let pair = move |_| {
        spawn_local(async move {
            let code = agent.call("No pairing code", |c| async move { c.channel_pairing_code(channel).await });
            pairing.set(code.await);
        });
    };
    let disconnect = move |_| {
        confirming.set(false);
        spawn_local(async move {
            let done = agent.call("Not disconnected", |c| async move { c.channel_disconnect(channel).await });
            if done.await.is_some() {
                pairing.set(None);
                agent.notify(format!("{} is disconnected; its tokens are forgotten.", title(channel)), false);
            }
        });
    };
    // (class, words) of the state pill.
    let pill = move || match status.get().map(|s| (s.state, s.account)) {
        Some((ChannelState::Connected, account)) => {
            ("status idle", format!("connected as {}", account.unwrap_or_default()))
        }
        Some((ChannelState::Connecting, _)) => ("status busy", "connecting…".to_owned()),
        Some((ChannelState::Failed, _)) => ("status error", "not working".to_owned()),
        _ => ("status", "not connected".to_owned()),
    };
    let facts = move || {
        let s = status.get().filter(|s| s.state != ChannelState::Off)?;
        // Without a public address, say where Meta must post all the same.
        let url = s.webhook_url.or_else(|| (!telegram).then(|| format!("{}/webhooks/whatsapp", origin())));
        let arrive = match (telegram, url) {
            (false, url) => ("Webhook URL for Meta", url.unwrap_or_default()),
            (true, Some(url)) => ("Messages arrive by", format!("webhook at {url}")),
            (true, None) => ("Messages arrive by", "polling".to_owned()),
        };
        let rows = [
            arrive,
            ("Paired chats", s.paired_chats.to_string()),
            ("Last message", s.last_message_at.map_or("none yet".to_owned(), crate::page::clock_time)),
            ("Failed replies", s.failed_replies.to_string()),
        ];
        Some(rows.map(|(term, text)| view! { <dt>{term}</dt><dd>{text}</dd> }).into_iter().collect_view())
    };
    let error = move || status.get().and_then(|s| s.error).or_else(|| failure.get());
    view! {
        <div class="card connection" data-channel=channel.as_str()>
            <div class="server-head">
                <h3>{title(channel)}</h3><span class="spacer"></span>
                {move || { let (class, text) = pill(); view! { <span class=class><span class="dot"></span>{text}</span> } }}
            </div>
            {move || error().map(|text| view! { <p class="error-box small">{text}</p> })}
            <dl class="facts">{facts}</dl>
            <form class="form" hidden=move || !form_shown() on:submit=connect>
                <p class="muted small">{intro}</p>
                {form::inputs(fields, values, configured.into())}
                <div class="actions">
                    <button type="submit" class="primary" disabled=move || busy.get()>
                        {move || if busy.get() { "Checking…" } else { "Check and connect" }}
                    </button>
                    <button type="button" class="ghost" hidden=move || !configured.get() on:click=move |_| editing.set(false)>"Cancel"</button>
                </div>
            </form>
            <div class="actions" hidden=form_shown>
                <button class="primary" on:click=pair>"Pair a chat"</button>
                <button class="ghost" on:click=open_form>"Change settings"</button>
                <button class="ghost" hidden=move || confirming.get() on:click=move |_| confirming.set(true)>"Disconnect"</button>
                <span class="row-actions confirm" hidden=move || !confirming.get()>"Disconnect and forget the tokens? "
                    <button class="danger small" on:click=disconnect>"Disconnect"</button>
                    <button class="ghost small" on:click=move |_| confirming.set(false)>"Keep"</button>
                </span>
            </div>
            {move || pairing.get().filter(|_| configured.get()).map(|code| pairing_view(code, telegram))}
        </div>
    }
}

/// A pairing code: the QR code to scan, the link, and the code to type.
/// A channel's pairing code, in the one panel codes are shown in.
fn pairing_view(code: PairingCode, telegram: bool) -> impl IntoView {
    let how = if telegram {
        "Scan with your phone's camera (or open the link) and press Start in Telegram: that chat becomes yours."
    } else {
        "Scan with your phone's camera (or open the link) and send the message WhatsApp fills in: that chat becomes yours."
    };
    let until =
        format!("Or send this code yourself. It works once, until {}.", crate::page::clock_time(code.expires_at));
    code_panel(code.qr, how, code.link, code.code, "pairing-code", move || until.clone())
}

/// A code to scan or type (a channel's pairing, a login): the QR code of the link, what to
/// do, the link, the code (a click selects it whole), and when it stops working. One view
/// for every code, so the page's download carries it once.
fn code_panel(
    qr: Option<QrImage>,
    how: &'static str,
    link: Option<String>,
    code: String,
    code_class: &'static str,
    until: impl Fn() -> String + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        <div class="pairing">
            {qr.map(|qr| {
                let box_ = format!("0 0 {0} {0}", qr.size);
                view! {
                    <svg class="qr" viewBox=box_ role="img" aria-label="QR code of the link" shape-rendering="crispEdges">
                        <rect width=qr.size height=qr.size fill="#fff"/>
                        <path d=qr.path fill="#000"/>
                    </svg>
                }
            })}
            <div>
                <p>{how}</p>
                {link.map(|link| view! { <p><a class="pairing-link" href=link.clone() target="_blank" rel="noopener noreferrer">{link.clone()}</a></p> })}
                <p><code class=code_class>{code}</code></p>
                <p class="muted small code-until" aria-live="polite">{until}</p>
            </div>
        </div>
    }
}

fn title(channel: ChannelName) -> &'static str {
    match channel {
        ChannelName::Telegram => "Telegram",
        ChannelName::Whatsapp => "WhatsApp",
    }
}

/// Where this page was loaded from (`http://127.0.0.1:PORT`).
fn origin() -> String {
    web_sys::window().and_then(|w| w.location().origin().ok()).unwrap_or_default()
}
