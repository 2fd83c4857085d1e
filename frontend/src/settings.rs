//! The Settings screen: the theme (system, light or dark, kept in this browser), and where
//! things are (workspace, data, secrets) with how well commands are contained.

use leptos::prelude::*;
use leptos::task::spawn_local;
use pryx_api::{PryxApiClient, SystemInfo};

use crate::state::Agent;

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
    crate::app::set_title("Settings");
    let theme = RwSignal::new(stored_theme());
    let info = RwSignal::new(None::<SystemInfo>);
    Effect::new(move |_| {
        agent.connection.track();
        spawn_local(async move {
            if let Ok(client) = agent.client() {
                if let Ok(system) = client.system_info().await {
                    info.set(Some(system));
                }
            }
        });
    });
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
            {move || info.get().map(|i| {
                let export = match &i.export {
                    Some(e) => format!("to {} ({} spans sent, {} failed, {} dropped)", e.endpoint, e.exported, e.failed, e.dropped),
                    None => "off: nothing leaves this computer".to_owned(),
                };
                view! {
                    <table class="facts">
                        <tbody>
                            <tr><th>"Version"</th><td>{i.version}</td></tr>
                            <tr><th>"Workspace"</th><td><code>{i.sandbox.workspace}</code><div class="muted small">"Where file and shell tools act ("<code>"[tools] workspace"</code>")."</div></td></tr>
                            <tr><th>"Commands"</th><td>{i.sandbox.summary}</td></tr>
                            <tr><th>"Data"</th><td><code>{i.data_dir}</code></td></tr>
                            <tr><th>"Secrets"</th><td>{i.secrets}</td></tr>
                            <tr><th>"Telemetry export"</th><td>{export}<div class="muted small">"Opt in with "<code>"[telemetry.otlp] endpoint"</code>"."</div></td></tr>
                        </tbody>
                    </table>
                }
            })}
        </section>
    }
}
