//! Control Center figures for issue 9, in headless chromium against the release binary:
//! - first render: navigation start → the app's first frame on screen (the page marks it
//!   `pryx-first-render` two animation frames after mounting);
//! - connected: navigation start → the API connection is up and the chat screen is live
//!   (`pryx-connected`);
//! - bytes over the wire on a first visit (compressed, as sent) and on a reload.
//!
//! Cold runs use a fresh browser profile (nothing cached); warm runs reload in the same
//! one. `cargo bench --bench ui` (`./x bench` runs it too).

#[path = "../tests/e2e/support/browser.rs"]
#[allow(dead_code)] // the tests use more of it
mod browser;
#[path = "../tests/e2e/support/mock_llm.rs"]
mod mock_llm;
#[path = "support/pryx.rs"]
#[allow(dead_code)]
mod pryx_process;

use browser::Browser;
use serde_json::json;

const RUNS: usize = 9;

struct Load {
    first_render_ms: f64,
    connected_ms: f64,
    transferred_bytes: u64,
}

async fn measure(browser: &Browser, url: &str) -> Load {
    browser.goto(url).await;
    let marks = browser
        .wait_for(
            "(() => { const r = performance.getEntriesByName('pryx-first-render')[0]; \
             const c = performance.getEntriesByName('pryx-connected')[0]; \
             return r && c ? [r.startTime, c.startTime] : null; })()",
            "the app to render and connect",
        )
        .await;
    let transferred = browser
        .eval(
            "[...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')] \
             .reduce((sum, e) => sum + (e.transferSize || 0), 0)",
        )
        .await;
    Load {
        first_render_ms: marks[0].as_f64().unwrap_or(f64::NAN),
        connected_ms: marks[1].as_f64().unwrap_or(f64::NAN),
        transferred_bytes: transferred.as_u64().unwrap_or(0),
    }
}

fn median(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    (values[0], values[values.len() / 2], values[values.len() - 1])
}

fn report(what: &str, loads: &[Load]) {
    let (min, p50, max) = median(loads.iter().map(|l| l.first_render_ms).collect());
    println!("{what}: first render min {min:.0} ms, median {p50:.0} ms, max {max:.0} ms");
    let (min, p50, max) = median(loads.iter().map(|l| l.connected_ms).collect());
    println!("{what}: connected    min {min:.0} ms, median {p50:.0} ms, max {max:.0} ms");
    let bytes = loads.iter().map(|l| l.transferred_bytes).max().unwrap_or(0);
    println!("{what}: transferred up to {:.1} KB", bytes as f64 / 1000.0);
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let llm = mock_llm::MockLlm::start().await;
        let home = tempfile::tempdir().expect("tempdir");
        let mut running = pryx_process::spawn_pryx(home.path(), &llm.base_url(), "", &[]).await;
        let sign_in = format!("sessionStorage.setItem('pryx.token', {});", json!(running.token));
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let browser = Browser::launch().await;
            browser.before_every_page(&sign_in).await;
            cold.push(measure(&browser, &running.url).await);
            warm.push(measure(&browser, &running.url).await);
        }
        report("cold (empty cache)", &cold);
        report("warm (reload)", &warm);
        let _ = running.child.kill().await;
    });
}
