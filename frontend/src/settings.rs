//! The Settings screen: the theme (system, light or dark, kept in this browser), the
//! workspace and telemetry (saved to the config file; the agent restarts its runtime to
//! apply them and the page reconnects), and where things are with how well commands are
//! contained.

use leptos::ev;
use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{PryxApiClient, SettingsChange, SystemInfo};

use crate::form::{self, Field};
use crate::state::Agent;

const AGENT_FIELDS: &[Field] = &[
    ("Workspace", "workspace", false, "empty: the workspace folder in Pryx's data directory"),
    ("Send spans to (OTLP/HTTP receiver)", "export_endpoint", false, "empty: nothing leaves this computer"),
    ("Its authorization header", "export_authorization", true, "Bearer …"),
];

/// Where the chosen theme is kept (boot.js applies it before the first frame).
const THEME_KEY: &str = "pryx.theme";

/// Apply `theme` (`light`, `dark`, or anything else for the system's) to the page.
pub fn apply_theme(theme: &str) {
    let Some(root) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.document_element()) else {
        return;
    };
    let _ = match theme {
        "light" | "dark" => root.set_attribute("data-theme", theme),
        _ => root.remove_attribute("data-theme"),
    };
}

fn stored_theme() -> String {
    web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .and_then(|s| s.get_item(THEME_KEY).ok().flatten())
        .unwrap_or_else(|| "system".to_owned())
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let agent = expect_context::<Agent>();
    crate::page::set_title("Settings");
    let theme = RwSignal::new(stored_theme());
    let info = RwSignal::new(None::<SystemInfo>);
    let values = form::values();
    let capture = RwSignal::new(false);
    let has_authorization = RwSignal::new(false);
    let busy = RwSignal::new(false);
    Effect::new(move |_| {
        agent.connection.track();
        spawn_local(async move {
            let Ok(client) = agent.client() else { return };
            if let Ok(system) = client.system_info().await {
                info.set(Some(system));
            }
            if let Ok(settings) = client.settings_get().await {
                values[0].set(settings.workspace.unwrap_or_default());
                values[1].set(settings.export_endpoint.unwrap_or_default());
                capture.set(settings.capture_content);
                has_authorization.set(settings.export_authorization);
            }
        });
    });
    let save = move |ev: ev::SubmitEvent| {
        ev.prevent_default();
        let (workspace, endpoint) = (values[0].get_untracked(), values[1].get_untracked());
        let authorization = form::value(&values, 2);
        busy.set(true);
        spawn_local(async move {
            let saved = agent
                .call("Not saved", |c| async move {
                    let change = SettingsChange {
                        workspace: Some(workspace),
                        capture_content: Some(capture.get_untracked()),
                        export_endpoint: Some(endpoint),
                        export_authorization: authorization,
                    };
                    c.settings_set(change).await
                })
                .await;
            if saved.is_some() {
                form::clear_secrets(AGENT_FIELDS, &values);
                agent.notify("Saved. The agent restarts to apply it; this page reconnects by itself.", false);
            }
            busy.set(false);
        });
    };
    let choose = move |choice: &'static str| {
        theme.set(choice.to_owned());
        if let Some(storage) = web_sys::window().and_then(|w| w.local_storage().ok().flatten()) {
            let _ = storage.set_item(THEME_KEY, choice);
        }
        apply_theme(choice);
    };
    let option = move |value: &'static str, label: &'static str| {
        view! { <button type="button" class:on=move || theme.get() == value on:click=move |_| choose(value)>{label}</button> }
    };
    view! {
        <section class="page narrow">
            <h1>"Settings"</h1>
            <h2>"Appearance"</h2>
            <div class="segmented theme" role="radiogroup" aria-label="Theme">
                {option("system", "System")}
                {option("light", "Light")}
                {option("dark", "Dark")}
            </div>
            <h2>"This agent"</h2>
            <form class="form card settings" on:submit=save>
                <p class="muted small">"Where file and shell tools act, and whether spans leave this computer. Saving restarts the agent in a second (not while it answers)."</p>
                {form::inputs(AGENT_FIELDS, values, has_authorization.into())}
                <label class="check"><input type="checkbox" name="capture_content" prop:checked=move || capture.get()
                    on:change=move |ev| capture.set(event_target_checked(&ev))/>
                    "Record message text and tool arguments in spans (off: only names, sizes and timings)"</label>
                <button type="submit" class="primary" disabled=move || busy.get()>"Save"</button>
            </form>
            {move || info.get().map(|i| {
                let export = match &i.export {
                    Some(e) => format!("to {} ({} spans sent, {} failed, {} dropped)", e.endpoint, e.exported, e.failed, e.dropped),
                    None => "off: nothing leaves this computer".to_owned(),
                };
                view! {
                    <table class="facts">
                        <tbody>
                            <tr><th>"Version"</th><td>{i.version}</td></tr>
                            <tr><th>"Workspace"</th><td><code>{i.sandbox.workspace}</code></td></tr>
                            <tr><th>"Commands"</th><td>{i.sandbox.summary}</td></tr>
                            <tr><th>"Data"</th><td><code>{i.data_dir}</code></td></tr>
                            <tr><th>"Secrets"</th><td>{i.secrets}</td></tr>
                            <tr><th>"Telemetry export"</th><td>{export}</td></tr>
                        </tbody>
                    </table>
                }
            })}
        </section>
    }
}
