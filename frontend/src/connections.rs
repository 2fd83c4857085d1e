//! The Connections screen: the LLM provider (base URL, model, API key into the keychain,
//! a Test that makes a real call and shows the provider's answer or error in words).
//! Saving applies at once; the next turn uses the new provider.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{ProviderInfo, ProviderSettings, ProviderTest, PryxApiClient};

use crate::state::Agent;

#[component]
pub fn ConnectionsPage() -> impl IntoView {
    crate::app::set_title("Connections");
    view! {
        <section class="page narrow">
            <h1>"Connections"</h1>
            <p class="muted">"Where your agent thinks. Keys go to this computer's keychain, never into a file."</p>
            <ProviderCard/>
        </section>
    }
}

#[component]
fn ProviderCard() -> impl IntoView {
    let agent = expect_context::<Agent>();
    let settings = RwSignal::new(None::<ProviderSettings>);
    let in_use = RwSignal::new(None::<ProviderInfo>);
    let base_url = RwSignal::new(String::new());
    let model = RwSignal::new(String::new());
    let api_key = RwSignal::new(String::new());
    let busy = RwSignal::new(false);
    let outcome = RwSignal::new(None::<ProviderTest>);
    let load = move || {
        spawn_local(async move {
            let Ok(client) = agent.client() else { return };
            if let Ok(current) = client.provider_get().await {
                base_url.set(current.base_url.clone().unwrap_or_default());
                model.set(current.model.clone().unwrap_or_default());
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
    // What the form says; an empty key field keeps the saved key.
    let form = move || {
        let key = api_key.get_untracked();
        (
            Some(base_url.get_untracked()).filter(|v| !v.trim().is_empty()),
            Some(model.get_untracked()),
            (!key.trim().is_empty()).then_some(key),
        )
    };
    let test = move |_| {
        let (url, name, key) = form();
        busy.set(true);
        outcome.set(None);
        spawn_local(async move {
            let result = agent.call("Could not test", |c| async move { c.provider_test(url, name, key).await }).await;
            outcome.set(result);
            busy.set(false);
        });
    };
    let save = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let (url, name, key) = form();
        busy.set(true);
        spawn_local(async move {
            let saved = agent.call("Not saved", |c| async move { c.provider_set(url, name, key).await }).await;
            if let Some(info) = saved {
                api_key.set(String::new());
                agent.notify(format!("Saved: {} is in use from the next message on.", describe(&info)), false);
                in_use.set(Some(info));
                load();
            }
            busy.set(false);
        });
    };
    let has_key = move || settings.with(|s| s.as_ref().is_some_and(|s| s.has_api_key));
    view! {
        <div class="card connection">
            <div class="server-head">
                <h3>"Language model"</h3>
                <span class="spacer"></span>
                {move || in_use.get().map(|info| {
                    let live = info.source != "none";
                    view! {
                        <span class=if live { "status idle" } else { "status error" }><span class="dot"></span>{describe(&info)}</span>
                    }
                })}
            </div>
            <p class="muted small">"Any OpenAI-compatible endpoint: OpenAI, a local Ollama (" <code>"http://127.0.0.1:11434/v1"</code> "), LM Studio, vLLM, a proxy."</p>
            {move || settings.get().filter(|s| !s.overridden_by_env.is_empty()).map(|s| view! {
                <p class="error-box small">{format!("Set in Pryx's environment, and used instead at the next start: {}.", s.overridden_by_env.join(", "))}</p>
            })}
            <form class="form" on:submit=save>
                <label><span>"Base URL"</span>
                    <input name="base_url" placeholder="https://api.openai.com/v1" prop:value=move || base_url.get()
                        on:input=move |ev| base_url.set(event_target_value(&ev))/></label>
                <label><span>"Model"</span>
                    <input name="model" placeholder="gpt-4o-mini (empty: the first the server lists)" prop:value=move || model.get()
                        on:input=move |ev| model.set(event_target_value(&ev))/></label>
                <label><span>"API key"</span>
                    <input name="api_key" type="password" autocomplete="off"
                        placeholder=move || if has_key() { "saved in the keychain (type to replace)" } else { "none (local servers need none)" }
                        prop:value=move || api_key.get() on:input=move |ev| api_key.set(event_target_value(&ev))/></label>
                <div class="actions">
                    <button type="button" on:click=test disabled=move || busy.get()>"Test"</button>
                    <button type="submit" class="primary" disabled=move || busy.get()>"Save"</button>
                </div>
            </form>
            {move || outcome.get().map(|t| {
                let text = if t.ok { format!("Works: {} in {} ms.", t.message, t.latency_ms) } else { format!("Does not work: {}", t.message) };
                view! { <p class=if t.ok { "test-result ok" } else { "test-result error-box" }>{text}</p> }
            })}
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
