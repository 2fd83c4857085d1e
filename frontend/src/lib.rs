//! The Pryx Control Center, a Leptos app rendered in the browser (the desktop window and
//! any browser pointed at `pryx --serve`). It talks to the agent only through the
//! generated `PryxApiClient` (see `rpc`).
//!
//! The pure modules (Markdown, highlighting, routes, Gantt layout) build natively and carry the unit
//! tests; the rest exists only on wasm32.

pub mod gantt;
pub mod highlight;
pub mod markdown;
pub mod route;
pub mod text;

#[cfg(target_arch = "wasm32")]
mod app;
#[cfg(target_arch = "wasm32")]
mod approvals;
#[cfg(target_arch = "wasm32")]
mod chat;
#[cfg(target_arch = "wasm32")]
mod connections;
#[cfg(target_arch = "wasm32")]
mod form;
#[cfg(target_arch = "wasm32")]
mod page;
#[cfg(target_arch = "wasm32")]
mod render;
#[cfg(target_arch = "wasm32")]
mod rpc;
#[cfg(target_arch = "wasm32")]
mod settings;
#[cfg(target_arch = "wasm32")]
mod state;
#[cfg(target_arch = "wasm32")]
mod tools;
#[cfg(target_arch = "wasm32")]
mod traces;

/// Mount the app on the page's body.
#[cfg(target_arch = "wasm32")]
pub fn start() {
    console_error_panic_hook::set_once();
    // The static frame index.html shows while this module loads.
    if let Some(shell) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("shell")) {
        shell.remove();
    }
    leptos::mount::mount_to_body(app::App);
}
