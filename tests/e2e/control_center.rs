//! The Control Center in a real browser (headless chromium) against the real binary and
//! the LLM stand-in: signing in, chatting with streaming Markdown, approvals from the
//! modal, the sessions sidebar, inert model output, reconnecting. Screenshots of each
//! screen land in `$CARGO_TARGET_DIR/artifacts/browser/` for people to look at.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{ApprovalDecision, ApprovalStatus};
use serde_json::json;

use crate::support::browser::Browser;
use crate::support::{eventually, MockLlm, Options, Pryx, Reply};

/// Open the Control Center signed in (the token put where the sign-in form puts it).
async fn open_signed_in(pryx: &Pryx) -> Browser {
    let browser = Browser::launch().await;
    browser.goto(&pryx.url).await;
    browser.eval(&format!("sessionStorage.setItem('pryx.token', {})", json!(pryx.token))).await;
    browser.goto(&pryx.url).await;
    browser.wait_for("document.querySelector('.composer textarea')", "the chat screen").await;
    browser.wait_for("document.querySelector('.status.idle')", "the agent to be connected and idle").await;
    browser
}

fn slow(pieces: &[&str], delay_ms: u64) -> Reply {
    Reply::Text { pieces: pieces.iter().map(|s| s.to_string()).collect(), delay: Duration::from_millis(delay_ms) }
}

/// Fail with what the page reported if anything went wrong in it.
fn assert_clean(browser: &Browser) {
    let problems = browser.problems();
    assert!(problems.is_empty(), "the page reported problems: {problems:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn signing_in_with_the_token_and_refusing_a_wrong_one() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = Browser::launch().await;
    browser.goto(&pryx.url).await;
    browser.wait_for("document.querySelector('.sign-in input[type=password]')", "the sign-in form").await;
    assert_eq!(browser.eval("document.title").await, "Sign in — Pryx");
    browser.screenshot("sign-in").await;

    browser.click(".sign-in input").await;
    browser.type_line("not-the-token").await;
    browser.wait_for("document.querySelector('.sign-in .error-box')", "the refusal").await;
    assert!(browser.text(".sign-in .error-box").await.contains("refused that token"));
    assert_eq!(browser.eval("sessionStorage.getItem('pryx.token')").await, json!(null), "a refused token is forgotten");

    browser.click(".sign-in input").await;
    browser.type_line(&pryx.token).await;
    browser.wait_for("document.querySelector('.composer textarea')", "the chat screen").await;
    assert_eq!(browser.eval("document.title").await, "New chat — Pryx");
    // The token never shows up in the address.
    assert!(!browser.eval("location.href").await.as_str().unwrap().contains(&pryx.token));
    // The failed WebSocket handshake of the wrong token is the only thing the console saw.
    let problems: Vec<_> = browser.problems().into_iter().filter(|p| !p.contains("WebSocket")).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_streams_in_as_markdown_with_highlighted_code() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = open_signed_in(&pryx).await;
    browser.screenshot("new-chat").await;
    llm.script([slow(
        &[
            "Here is **bold** ",
            "and a list:\n\n- one\n- two\n\n",
            "```rust\nfn main() {\n    let answer = 42; // the answer\n}\n```\n\n",
            "Done.",
        ],
        400,
    )]);
    // Focused on load: type and press Enter.
    browser.type_line("Show me some Rust").await;

    // It streams: part of the answer is on screen while the rest is still coming.
    browser
        .wait_for(
            "(() => { const live = document.querySelector('.msg.assistant.live'); \
             return live && live.innerText.includes('bold') && !live.innerText.includes('Done.'); })()",
            "a partly streamed answer",
        )
        .await;
    assert_eq!(browser.text(".msg.user .bubble").await, "Show me some Rust");
    browser.wait_for("document.querySelector('.composer .stop')", "the Stop button while it runs").await;
    // Streaming redraws only the answer: the question above it stays the same element.
    browser.eval("window.__question = document.querySelector('.msg.user')").await;
    browser
        .wait_for(
            "document.querySelector('.msg.assistant.live')?.innerText.includes('the answer')",
            "more of the answer",
        )
        .await;
    assert_eq!(browser.eval("window.__question.isConnected").await, true);
    browser.screenshot("chat-streaming").await;

    // Finished: Markdown rendered, code highlighted with a copy button.
    browser
        .wait_for(
            "!document.querySelector('.msg.assistant.live') && document.querySelector('.msg.assistant')?.innerText.includes('Done.')",
            "the finished answer",
        )
        .await;
    assert_eq!(browser.text(".msg.assistant strong").await, "bold");
    assert_eq!(browser.eval("document.querySelectorAll('.msg.assistant li').length").await, 2);
    assert_eq!(browser.text(".msg.assistant .code .hl-k").await, "fn");
    assert_eq!(browser.text(".msg.assistant .code .hl-n").await, "42");
    assert_eq!(browser.text(".msg.assistant .code .hl-c").await, "// the answer");
    assert_eq!(browser.text(".msg.assistant .code-bar button").await, "Copy");
    // The sidebar lists the chat under the title the agent gave it, and the tab says so.
    browser.wait_for("document.title === 'Show me some Rust — Pryx'", "the session title").await;
    assert_eq!(browser.text(".sessions li.current .session-title").await, "Show me some Rust");
    assert!(browser.eval("location.hash").await.as_str().unwrap().starts_with("#/session/"));
    browser.screenshot("chat").await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn model_output_with_script_and_img_onerror_renders_inert() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = open_signed_in(&pryx).await;
    llm.script([Reply::text(&[
        "<script>window.__pwned = 1</script>\n\n",
        "Look: <img src=x onerror=\"window.__pwned = 2\"> and <b onmouseover=\"window.__pwned = 3\">this</b>\n\n",
        "[click me](javascript:window.__pwned=4) ![pic](javascript:window.__pwned=5)\n\n",
        "<iframe src=\"https://example.com\"></iframe> end",
    ])]);
    browser.type_line("<img src=y onerror=\"window.__pwned = 6\"> hi").await;
    browser
        .wait_for("document.querySelector('.msg.assistant:not(.live)')?.innerText.includes('end')", "the answer")
        .await;
    // The markup is on screen as text…
    let answer = browser.text(".msg.assistant").await;
    assert!(answer.contains("<script>window.__pwned = 1</script>"), "{answer}");
    assert!(answer.contains("<img src=x onerror=\"window.__pwned = 2\">"), "{answer}");
    assert!(browser.text(".msg.user").await.contains("<img src=y onerror="));
    // …and none of it became an element, a handler or a link.
    let elements = browser
        .eval("document.querySelectorAll('.messages script, .messages img, .messages iframe, .messages b, .messages [onerror], .messages [onmouseover]').length")
        .await;
    assert_eq!(elements, 0);
    assert_eq!(browser.eval("[...document.querySelectorAll('.messages a')].map(a => a.href)").await, json!([]));
    browser.click_text(".msg.assistant p", "click me").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(browser.eval("typeof window.__pwned").await, "undefined");
    browser.screenshot("inert-markup").await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_and_denying_from_the_modal() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("old.txt"), "x").unwrap();
    std::fs::write(workspace.join("keep.txt"), "x").unwrap();
    let browser = open_signed_in(&pryx).await;
    let client = pryx.client().await;

    llm.script([Reply::tool_call("call_1", "fs_delete", r#"{"path": "old.txt"}"#), Reply::text(&["Deleted old.txt."])]);
    browser.type_line("delete old.txt").await;
    // The modal asks, the rail counts it, and Allow once is focused (Enter answers).
    browser.wait_for("document.querySelector('.modal .approval-card')", "the approval modal").await;
    assert!(browser.text(".modal h2").await.contains("fs_delete"));
    assert!(browser.text(".modal .arguments").await.contains("\"path\": \"old.txt\""));
    assert_eq!(browser.text(".rail .count").await, "1");
    assert_eq!(browser.eval("document.activeElement.innerText").await, "Allow once");
    browser.screenshot("approval-modal").await;
    browser.click_text(".modal button", "Allow once").await;
    browser.wait_for("!document.querySelector('.modal')", "the modal to close").await;
    browser.wait_for("document.querySelector('.messages')?.innerText.includes('Deleted old.txt.') && !document.querySelector('.live')", "the answer").await;
    assert!(!workspace.join("old.txt").exists());
    // The call is shown inline, collapsed, with its arguments and result inside.
    assert!(browser.text(".tool summary").await.contains("fs_delete"));
    browser.click(".tool summary").await;
    browser.wait_for("document.querySelector('.tool[open] .tool-body')", "the open tool call").await;
    assert!(browser.text(".tool-body").await.contains("old.txt"));

    // Deny with a note: the file stays, the note is on record and reaches the model.
    llm.script([
        Reply::tool_call("call_2", "fs_delete", r#"{"path": "keep.txt"}"#),
        Reply::text(&["Understood, kept."]),
    ]);
    browser.click(".composer textarea").await;
    browser.type_line("now delete keep.txt").await;
    browser.wait_for("document.querySelector('.modal .note')", "the second request").await;
    browser.fill(".modal .note", "that one is precious").await;
    browser.click_text(".modal button", "Deny").await;
    browser.wait_for("document.querySelector('.messages')?.innerText.includes('Understood, kept.') && !document.querySelector('.live')", "the answer").await;
    assert!(workspace.join("keep.txt").exists());
    let history = client.approval_list(Some(true)).await.unwrap();
    let denied = history.iter().find(|a| a.arguments.contains("keep.txt")).unwrap();
    assert_eq!(denied.status, ApprovalStatus::Denied);
    assert_eq!(
        (denied.decision, denied.note.as_deref(), denied.answered_by.as_deref()),
        (Some(ApprovalDecision::Deny), Some("that one is precious"), Some("ui"))
    );
    let allowed = history.iter().find(|a| a.arguments.contains("old.txt")).unwrap();
    assert_eq!((allowed.status, allowed.answered_by.as_deref()), (ApprovalStatus::Allowed, Some("ui")));
    let to_model = llm.requests().last().unwrap().to_string();
    assert!(to_model.contains("that one is precious"), "the note reaches the model");

    // The history lists both decisions.
    browser.click(".rail a[href='#/approvals']").await;
    browser.wait_for("document.querySelectorAll('table.history tbody tr').length === 2", "the history").await;
    assert_eq!(browser.eval("document.title").await, "Approvals — Pryx");
    let rows = browser.text("table.history").await;
    assert!(rows.contains("Denied (from ui) · note: that one is precious"), "{rows}");
    assert!(rows.contains("Allowed once (from ui)"), "{rows}");
    browser.screenshot("approvals").await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_answered_elsewhere_leaves_the_modal() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    std::fs::create_dir_all(pryx.data_dir().join("workspace")).unwrap();
    std::fs::write(pryx.data_dir().join("workspace/a.txt"), "x").unwrap();
    let browser = open_signed_in(&pryx).await;
    let client = pryx.client().await;
    llm.script([Reply::tool_call("c", "fs_delete", r#"{"path": "a.txt"}"#), Reply::text(&["ok"])]);
    browser.type_line("delete a.txt").await;
    browser.wait_for("document.querySelector('.modal')", "the modal").await;
    let pending = client.approval_list(None).await.unwrap().remove(0);
    client.approval_answer(pending.id, ApprovalDecision::Deny, None, Some("cli".into())).await.unwrap();
    browser
        .wait_for(
            "!document.querySelector('.modal') && !document.querySelector('.rail .count')",
            "the modal and badge to go",
        )
        .await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidebar_searches_renames_and_deletes_chats() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let client = pryx.client().await;
    for title in ["Trip to Lisbon", "Tax return", "Recipe ideas"] {
        client.session_create(Some(title.into())).await.unwrap();
    }
    let browser = open_signed_in(&pryx).await;
    browser.wait_for("document.querySelectorAll('.sessions li').length === 3", "three chats").await;

    // Ctrl+K focuses the search; typing filters.
    browser.press("k", 2).await;
    browser.wait_for("document.activeElement.className === 'search'", "the search box focused").await;
    browser.type_text("ta").await;
    browser.wait_for("document.querySelectorAll('.sessions li').length === 1", "one match").await;
    assert_eq!(browser.text(".sessions li .session-title").await, "Tax return");
    // Opening a match keeps the search (the sidebar stays while chats change).
    browser.click_text(".sessions li .session-title", "Tax return").await;
    browser.wait_for("document.title === 'Tax return — Pryx'", "the match opened").await;
    assert_eq!(browser.eval("document.querySelector('.search').value").await, "ta");
    browser.click(".search").await;
    browser.press("Escape", 0).await;
    browser.wait_for("document.querySelectorAll('.sessions li').length === 3", "the filter cleared").await;

    // Rename in place.
    browser.click_text(".sessions li .session-title", "Recipe ideas").await;
    browser.wait_for("document.title === 'Recipe ideas — Pryx'", "the chat opened").await;
    browser.eval("document.querySelector('.sessions li.current button[title=Rename]').click()").await;
    browser.wait_for("document.activeElement.className === 'rename'", "the rename box").await;
    browser.eval("document.activeElement.select()").await;
    browser.type_line("Dinner recipes").await;
    browser.wait_for("document.title === 'Dinner recipes — Pryx'", "the new title").await;
    let titles: Vec<String> = client.session_list().await.unwrap().into_iter().map(|s| s.title).collect();
    assert!(titles.contains(&"Dinner recipes".to_owned()), "{titles:?}");

    // Delete asks once more, then the chat is gone and the screen is a new chat.
    browser.eval("document.querySelector('.sessions li.current button[title=Delete]').click()").await;
    browser.wait_for("document.querySelector('.row-actions.confirm')", "the confirmation").await;
    browser.screenshot("sidebar-delete").await;
    browser.click_text(".row-actions.confirm button", "Delete chat").await;
    browser
        .wait_for(
            "document.querySelectorAll('.sessions li').length === 2 && document.title === 'New chat — Pryx'",
            "the chat gone",
        )
        .await;
    assert_eq!(client.session_list().await.unwrap().len(), 2);
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_retry_and_reconnect_after_the_agent_restarts() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = open_signed_in(&pryx).await;

    // Stop a slow answer.
    llm.script([Reply::slow_text(200, Duration::from_millis(100))]);
    browser.type_line("write a lot").await;
    browser.wait_for("document.querySelector('.msg.assistant.live')?.innerText.includes('word2')", "the stream").await;
    browser.click(".composer .stop").await;
    browser.wait_for("document.querySelector('.msg-status')?.innerText === 'Stopped.'", "the stopped answer").await;

    // Retry sends the question again and this time it finishes.
    llm.script([Reply::text(&["All done this time."])]);
    browser.click_text(".retry-row button", "Retry").await;
    browser
        .wait_for(
            "[...document.querySelectorAll('.msg.assistant')].some(m => m.innerText.includes('All done this time.'))",
            "the retried answer",
        )
        .await;
    let client = pryx.client().await;
    let session = client.session_list().await.unwrap().remove(0);
    let asked: Vec<String> = client
        .session_get(session.id)
        .await
        .unwrap()
        .messages
        .into_iter()
        .filter(|m| m.role == pryx_api::Role::User)
        .map(|m| m.content)
        .collect();
    assert_eq!(asked, ["write a lot", "write a lot"]);

    // The agent's runtime panics and restarts: the page reconnects by itself and says so,
    // and keeps what the user was typing.
    browser.fill(".composer textarea", "half-typed").await;
    client.debug_fault("runtime_panic".into()).await.unwrap();
    browser
        .wait_for(
            "document.querySelector('.banner')?.innerText.includes('Reconnected to the agent (it restarted)')",
            "the reconnect banner",
        )
        .await;
    browser.screenshot("reconnected").await;
    browser.wait_for("document.querySelector('.status.idle')", "idle again").await;
    assert_eq!(browser.eval("document.querySelector('.composer textarea').value").await, "half-typed");
    llm.script([Reply::text(&["Still here."])]);
    browser.click(".composer textarea").await;
    browser.eval("document.querySelector('.composer textarea').select()").await;
    browser.type_line("are you there?").await;
    browser
        .wait_for(
            "document.querySelector('.messages')?.innerText.includes('Still here.')",
            "an answer after the restart",
        )
        .await;
    let problems: Vec<_> = browser.problems().into_iter().filter(|p| !p.contains("WebSocket")).collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[tokio::test]
async fn the_files_are_served_compressed_cached_and_under_a_strict_policy() {
    let pryx = Pryx::start(Options::default()).await;
    let http = reqwest::Client::new();
    let page = http.get(&pryx.url).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(page.status(), 200, "the page needs no token");
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'none'; script-src 'self' 'wasm-unsafe-eval';"), "{csp}");
    // Without gzip the same page comes inflated; it names its hashed files.
    let plain = http.get(&pryx.url).send().await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let html = plain.text().await.unwrap();
    let wasm = html.split('"').find(|s| s.ends_with(".wasm")).expect("the page preloads its wasm").to_owned();
    assert!(wasm.starts_with("pryx_bg-") && wasm.len() == "pryx_bg-".len() + 12 + ".wasm".len(), "{wasm}");
    let module = http.get(format!("{}/{wasm}", pryx.url)).header("accept-encoding", "gzip, br").send().await.unwrap();
    assert_eq!(module.status(), 200);
    assert_eq!(module.headers()["content-type"], "application/wasm");
    assert_eq!(module.headers()["cache-control"], "public, max-age=31536000, immutable");
    // Revalidation: the page's ETag answers 304.
    let etag = headers["etag"].to_str().unwrap();
    let again = http.get(&pryx.url).header("if-none-match", etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    // Anything else still needs the token.
    assert_eq!(http.get(format!("{}/pryx_bg-000000000000.wasm", pryx.url)).send().await.unwrap().status(), 401);
    assert_eq!(http.get(format!("{}/index.html/../rpc", pryx.url)).send().await.unwrap().status(), 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_an_mcp_server_from_the_form_shows_its_tools() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/tools']").await;
    browser
        .wait_for("document.title === 'Tools — Pryx' && document.querySelector('.add-server')", "the Tools screen")
        .await;

    // A mistake is explained and nothing is added.
    browser.fill(".add-server input[name=name]", "everything").await;
    browser.click_text(".add-server button", "Add server").await;
    browser
        .wait_for("document.querySelector('.error-box')?.innerText.includes('command')", "the missing command named")
        .await;

    browser.fill(".add-server input[name=command]", "node").await;
    browser
        .fill(".add-server textarea[name=args]", &format!("{}\nstdio", crate::mcp::server_js("server-everything")))
        .await;
    browser.click_text(".add-server button", "Add server").await;
    // The real server starts; its card turns ready and lists its tools with their hints.
    browser.wait_for("document.querySelector('[data-server=everything] .status.idle')", "the server ready").await;
    browser
        .wait_for("[...document.querySelectorAll('[data-server=everything] table.tools code')].some(c => c.innerText === 'echo')", "its tools")
        .await;
    // The rule shows with the tool (the picker reads the policy list).
    browser
        .wait_for(
            "[...document.querySelectorAll('[data-server=everything] table.tools tr')].some(r => r.querySelector('code')?.innerText === 'echo' && r.innerText.includes('Default: allow'))",
            "echo's rule",
        )
        .await;
    let echo_row = browser
        .eval("[...document.querySelectorAll('[data-server=everything] table.tools tr')].find(r => r.querySelector('code')?.innerText === 'echo').innerText")
        .await;
    assert!(echo_row.as_str().unwrap().to_lowercase().contains("read-only"), "{echo_row}");
    assert!(echo_row.as_str().unwrap().contains("allow"), "a read-only tool runs without asking: {echo_row}");
    let client = pryx.client().await;
    let config = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(config.contains("[mcp.servers.everything]"), "written to the config file:\n{config}");
    assert!(client.mcp_tools(Some("everything".into())).await.unwrap().iter().any(|t| t.tool == "echo"));
    let echo = client.tools_list().await.unwrap().into_iter().find(|t| t.name == "everything__echo").unwrap();
    assert_eq!((echo.source.as_str(), echo.rule.as_str()), ("everything", "allow"));
    browser.eval("document.querySelector('.page').scrollTop = 0").await;
    browser.screenshot("tools").await;

    // Built-in tool policies: deletes ask by default; pick Allow and it is in force and saved.
    browser.wait_for("document.querySelector('tr[data-tool=fs_delete] select')", "the built-in tools").await;
    assert_eq!(browser.text("tr[data-tool=fs_delete] select option").await, "Default: ask");
    browser
        .eval("(() => { const s = document.querySelector('tr[data-tool=fs_delete] select'); s.value = 'allow'; s.dispatchEvent(new Event('change')); })()")
        .await;
    eventually("the rule to change", || async {
        client.tools_list().await.unwrap().iter().any(|t| t.name == "fs_delete" && t.rule == pryx_api::Rule::Allow)
    })
    .await;
    assert!(std::fs::read_to_string(pryx.home.join("config.toml")).unwrap().contains("fs_delete = \"allow\""));
    browser
        .wait_for("document.querySelector('tr[data-tool=fs_delete] select').value === 'allow'", "the picker to show it")
        .await;

    // Paste an mcpServers document: the second server appears too.
    let shared = tempfile::tempdir().unwrap();
    let document = json!({"mcpServers": {"files": {"command": "node", "args": [crate::mcp::server_js("server-filesystem"), shared.path()]}}});
    browser.fill(".add-server textarea[name=import]", &document.to_string()).await;
    browser.click_text(".add-server button", "Import").await;
    browser.wait_for("document.querySelector('[data-server=files] .status.idle')", "the imported server ready").await;

    // Restart and remove, live.
    browser.click("[data-server=files] .server-head button").await;
    browser
        .wait_for(
            "document.querySelector('[data-server=files]')?.innerText.includes('restarted 1 times')",
            "the restart",
        )
        .await;
    browser.click_text("[data-server=files] button", "Remove").await;
    browser.click_text("[data-server=files] button", "Remove it").await;
    browser.wait_for("!document.querySelector('[data-server=files]')", "the server gone").await;
    assert!(client.mcp_list().await.unwrap().servers.iter().all(|s| s.name != "files"));
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_appear_in_the_gantt_as_they_open_and_close() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    std::fs::create_dir_all(pryx.data_dir().join("workspace")).unwrap();
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/traces']").await;
    browser.wait_for("document.title === 'Traces — Pryx'", "the Traces screen").await;

    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    llm.script([
        Reply::tool_call("c1", "fs_list", r#"{"path": "."}"#),
        slow(&["Your ", "workspace ", "is ", "empty."], 700),
    ]);
    client.message_send(session.id.clone(), "what is in my workspace?".into()).await.unwrap();
    // While the turn runs: its bar is open and growing.
    browser.wait_for("document.querySelector('.gantt-bars rect.kind-turn.open')", "the running turn's bar").await;
    assert!(browser.text(".trace-list li.current").await.contains("running…"), "the list says it still runs");
    let first =
        browser.eval("parseFloat(document.querySelector('.gantt-bars rect.kind-turn').getAttribute('width'))").await;
    browser.screenshot("traces-live").await;
    // Closed: turn → chat, tool, chat, in that order under it.
    browser.wait_for("document.querySelector('.gantt-bars rect.kind-turn:not(.open)')", "the finished turn").await;
    let finished = browser.text(".trace-list li.current").await;
    assert!(!finished.contains("running…") && finished.contains(" s"), "the list gives its length: {finished}");
    let labels = browser.eval("[...document.querySelectorAll('.gantt-labels text')].map(t => t.textContent)").await;
    let labels: Vec<String> = serde_json::from_value(labels).unwrap();
    assert_eq!(labels[0], "turn", "{labels:?}");
    assert!(labels.iter().any(|l| l.starts_with("chat ")), "{labels:?}");
    assert!(labels.iter().any(|l| l == "execute_tool fs_list"), "{labels:?}");
    assert!(first.as_f64().unwrap() > 0.0);
    // Details on click.
    browser.click(".gantt-bars rect.kind-llm").await;
    browser.wait_for("document.querySelector('.span-details')", "the span's details").await;
    let details = browser.text(".span-details").await;
    assert!(details.contains("gen_ai.request.model") && details.contains("gen_ai.usage.output_tokens"), "{details}");
    assert!(!details.contains("what is in my workspace"), "content capture is off: no message text");
    // Zoom.
    browser.click(".chart-tools button[title='Zoom in']").await;
    browser.wait_for("document.querySelector('.chart-tools .muted').innerText.startsWith('2×')", "zoomed").await;
    browser.screenshot("traces").await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_a_model_from_the_connections_screen() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let config = "[secrets]\nbackend = \"keychain\"\n[llm]\nautodetect_local = false\n";
    let pryx = Pryx::start(Options { llm_url: None, config: config.into(), env: keyring.env() }).await;
    let browser = open_signed_in(&pryx).await;
    // Asking before a model is connected fails, and the model's card says so, live.
    browser.click(".composer textarea").await;
    browser.type_line("anyone there?").await;
    browser.wait_for("document.querySelector('.msg-status.error')", "the failed answer").await;
    browser.click(".rail a[href='#/connections']").await;
    browser.wait_for("document.querySelector('.connection .status.error')", "no model connected yet").await;
    assert!(browser.text(".connection .status").await.contains("no model connected"));
    browser.wait_for("document.querySelector('.last-failure')", "the last failure on the model's card").await;
    assert!(browser.text(".last-failure").await.starts_with("The last answer failed:"));

    browser.fill(".connection input[name=base_url]", &llm.base_url()).await;
    browser.fill(".connection input[name=model]", "mock-model").await;
    browser.fill(".connection input[name=api_key]", "sk-wrong").await;
    // A refused key: the provider's words, plainly.
    llm.script([Reply::error(401, "Incorrect API key provided")]);
    browser.click_text(".connection button", "Test").await;
    browser.wait_for("document.querySelector('.test-result.error-box')", "the failed test").await;
    let failure = browser.text(".test-result").await;
    assert!(failure.starts_with("Does not work:") && failure.contains("key"), "{failure}");
    browser.screenshot("connections-test-failed").await;

    // The right key: the test passes, then Save puts it in use.
    browser.eval("document.querySelector('.connection input[name=api_key]').select()").await;
    browser.type_text("sk-right-1").await;
    llm.script([Reply::text(&["OK"])]);
    browser.click_text(".connection button", "Test").await;
    browser.wait_for("document.querySelector('.test-result.ok')", "the passing test").await;
    assert!(browser.text(".test-result").await.contains("mock-model answered"));
    browser.click_text(".connection button", "Save").await;
    browser
        .wait_for(
            "document.querySelector('.connection .status.idle')?.innerText.includes('mock-model')",
            "the model in use",
        )
        .await;
    browser.screenshot("connections").await;
    assert_eq!(keyring.lookup("llm/api_key").await.as_deref(), Some("sk-right-1"));
    assert!(!std::fs::read_to_string(pryx.home.join("config.toml")).unwrap().contains("sk-right-1"));

    // And the chat uses it, no restart.
    browser.click(".rail a[href='#/']").await;
    browser.wait_for("document.querySelector('.composer textarea')", "the chat").await;
    browser.click(".composer textarea").await;
    browser.type_line("hi there").await;
    browser.wait_for("document.querySelector('.messages')?.innerText.includes('Echo: hi there')", "the answer").await;
    assert_eq!(llm.auth_headers().last().unwrap().as_deref(), Some("Bearer sk-right-1"));
    // The failure is over once an answer succeeded.
    browser.click(".rail a[href='#/connections']").await;
    browser.wait_for("document.querySelector('.connection .status.idle')", "the model card").await;
    browser.wait_for("!document.querySelector('.last-failure')", "the failure gone").await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_switch_the_theme_and_show_where_things_are() {
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm)).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/settings']").await;
    browser.wait_for("document.querySelector('table.facts')", "the facts").await;
    assert_eq!(browser.eval("document.title").await, "Settings — Pryx");
    let workspace = pryx.data_dir().join("workspace").canonicalize().unwrap();
    let facts = browser.text("table.facts").await;
    assert!(facts.contains(&workspace.display().to_string()), "{facts}");
    assert!(facts.contains("nothing leaves this computer"), "{facts}");

    // Dark, at once and after a reload (applied before the first frame).
    browser.click_text(".theme button", "Dark").await;
    browser.wait_for("document.documentElement.dataset.theme === 'dark'", "the dark theme").await;
    let background = "getComputedStyle(document.body).backgroundColor";
    assert_eq!(browser.eval(background).await, "rgb(21, 24, 31)");
    browser.screenshot("settings-dark").await;
    browser.goto(&format!("{}/#/settings", pryx.url)).await;
    browser.wait_for("document.querySelector('.theme button.on')?.innerText === 'Dark'", "the choice kept").await;
    assert_eq!(browser.eval(background).await, "rgb(21, 24, 31)");
    // Back to the system's (light in headless chromium).
    browser.click_text(".theme button", "System").await;
    browser.wait_for("!document.documentElement.dataset.theme", "the system theme").await;
    assert_eq!(browser.eval(background).await, "rgb(255, 255, 255)");
    assert_clean(&browser);
}

/// Decode the QR code the page shows, from its pixels on screen, as a phone camera would.
async fn scan_qr(browser: &Browser, selector: &str) -> String {
    let (width, height, grey) = browser.capture(selector).await;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| grey[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {selector} ({width}×{height} px)");
    grids[0].decode().expect("the QR code decodes").1
}

#[tokio::test(flavor = "multi_thread")]
async fn pairing_telegram_from_the_connections_screen_shows_a_qr_code_that_scans() {
    use crate::support::telegram::{text_update, FakeTelegram, BOT_USERNAME, TOKEN};
    const OWNER: i64 = 777;
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let telegram = FakeTelegram::start().await;
    let config = format!("[telegram]\napi_base = \"{}\"", telegram.api_base());
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring).config(&config)).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/connections']").await;
    let card = "[data-channel=telegram]";
    browser
        .wait_for(&format!("document.querySelector('{card} .status')?.innerText === 'not connected'"), "Telegram off")
        .await;

    // A token Telegram refuses: its words on the card, nothing kept.
    browser.fill(&format!("{card} input[name=bot_token]"), "123456:not-the-token").await;
    browser.click_text(&format!("{card} button"), "Check and connect").await;
    browser
        .wait_for(
            &format!("document.querySelector('{card} .error-box')?.innerText.includes('Unauthorized')"),
            "the refusal",
        )
        .await;
    browser.screenshot("connections-telegram-refused").await;
    assert_eq!(keyring.lookup("telegram/bot").await, None);

    // The right one: connected as the bot, live.
    browser.eval(&format!("document.querySelector('{card} input[name=bot_token]').select()")).await;
    browser.type_text(TOKEN).await;
    browser.click_text(&format!("{card} button"), "Check and connect").await;
    browser
        .wait_for(
            &format!("document.querySelector('{card} .status.idle')?.innerText.includes('@{BOT_USERNAME}')"),
            "Telegram connected",
        )
        .await;
    assert_eq!(keyring.lookup("telegram/bot").await.as_deref(), Some(TOKEN));

    // Pair: the QR code on screen scans to the link shown, which carries the code.
    browser.click_text(&format!("{card} button"), "Pair a chat").await;
    browser.wait_for("document.querySelector('.pairing svg.qr path')", "the QR code").await;
    let link = browser.text(".pairing-link").await;
    let code = browser.text(".pairing-code").await;
    assert_eq!(link, format!("https://t.me/{BOT_USERNAME}?start={code}"));
    assert_eq!(scan_qr(&browser, ".pairing svg.qr").await, link, "the camera reads the link");
    browser.screenshot("connections-telegram-pairing").await;

    // The phone opens it: Telegram sends `/start CODE`; the chat is paired and the card
    // counts it, live.
    telegram.push_update(text_update(1, OWNER, &format!("/start {code}")));
    browser
        .wait_for(
            &format!("document.querySelectorAll('{card} .facts dd')[1]?.innerText === '1'"),
            "the pairing counted",
        )
        .await;
    eventually("the welcome", || async { telegram.texts_to(OWNER).first().is_some_and(|t| t.starts_with("Paired")) })
        .await;
    browser.screenshot("connections-telegram").await;

    // The owner writes: the chat shows in the sidebar with its badge while it is answered.
    llm.script([slow(&["Hello ", "from ", "your ", "agent."], 150)]);
    telegram.push_update(text_update(2, OWNER, "hello from my phone"));
    browser.click(".rail a[href='#/']").await;
    browser
        .wait_for("document.querySelector('.sessions .badge.channel.telegram')", "the Telegram chat in the sidebar")
        .await;
    eventually("the answer on Telegram", || async {
        telegram.texts_to(OWNER).iter().any(|t| t.contains("Hello from your agent."))
    })
    .await;
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_whatsapp_shows_the_webhook_url_to_give_meta() {
    use crate::support::whatsapp::{
        FakeWhatsApp, ACCESS_TOKEN, APP_SECRET, NUMBER_DIGITS, PHONE_NUMBER_ID, VERIFY_TOKEN,
    };
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let whatsapp = FakeWhatsApp::start().await;
    let config = format!("[whatsapp]\napi_base = \"{}\"", whatsapp.api_base());
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring).config(&config)).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/connections']").await;
    let card = "[data-channel=whatsapp]";
    for (name, value) in [
        ("phone_number_id", PHONE_NUMBER_ID),
        ("access_token", ACCESS_TOKEN),
        ("app_secret", APP_SECRET),
        ("verify_token", VERIFY_TOKEN),
        ("public_url", "https://pryx.example.org"),
    ] {
        browser.fill(&format!("{card} input[name={name}]"), value).await;
    }
    browser.click_text(&format!("{card} button"), "Check and connect").await;
    browser
        .wait_for(
            &format!("document.querySelector('{card} .status.idle')?.innerText.includes('Pryx Test')"),
            "connected",
        )
        .await;
    let webhook_url = browser.eval(&format!("document.querySelectorAll('{card} .facts dd')[0].innerText")).await;
    assert_eq!(webhook_url, "https://pryx.example.org/webhooks/whatsapp");
    assert_eq!(keyring.lookup("whatsapp/verify").await.as_deref(), Some(VERIFY_TOKEN));
    browser.click_text(&format!("{card} button"), "Pair a chat").await;
    browser.wait_for("document.querySelector('.pairing svg.qr path')", "the QR code").await;
    let code = browser.text(".pairing-code").await;
    assert_eq!(scan_qr(&browser, ".pairing svg.qr").await, format!("https://wa.me/{NUMBER_DIGITS}?text={code}"));
    browser.screenshot("connections-whatsapp").await;

    // Disconnect asks first, then forgets the tokens.
    browser.click_text(&format!("{card} button"), "Disconnect").await;
    browser.click_text(&format!("{card} .confirm button"), "Disconnect").await;
    browser
        .wait_for(&format!("document.querySelector('{card} .status')?.innerText === 'not connected'"), "disconnected")
        .await;
    assert_eq!(keyring.lookup("whatsapp/token").await, None);
    assert_clean(&browser);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_workspace_and_telemetry_are_changed_from_settings() {
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let llm = MockLlm::start().await;
    let pryx = Pryx::start(Options::with_llm(&llm).keychain(&keyring)).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/settings']").await;
    browser.wait_for("document.querySelector('table.facts')", "the facts").await;
    let workspace = tempfile::tempdir().unwrap();

    // A relative folder is refused in words; nothing restarts.
    browser.fill("input[name=workspace]", "projects").await;
    browser.click_text("form button", "Save").await;
    browser.wait_for("document.querySelector('.banner.error')?.innerText.includes('absolute')", "the refusal").await;

    browser.eval("document.querySelector('input[name=workspace]').select()").await;
    browser.type_text(&workspace.path().display().to_string()).await;
    browser.fill("input[name=export_endpoint]", "http://127.0.0.1:4318").await;
    browser.fill("input[name=export_authorization]", "Bearer settings-9").await;
    browser.click("input[name=capture_content]").await;
    browser.click_text("form button", "Save").await;
    // The agent restarts; the page reconnects by itself and shows the new settings.
    browser
        .wait_for(
            &format!(
                "document.querySelector('table.facts')?.innerText.includes({})",
                json!(workspace.path().display().to_string())
            ),
            "the new workspace in use",
        )
        .await;
    browser
        .wait_for("document.querySelector('table.facts')?.innerText.includes('to http://127.0.0.1:4318')", "export on")
        .await;
    assert_eq!(browser.eval("document.querySelector('input[name=capture_content]').checked").await, true);
    browser.screenshot("settings").await;
    let file = std::fs::read_to_string(pryx.home.join("config.toml")).unwrap();
    assert!(file.contains("capture_content = true") && !file.contains("settings-9"), "{file}");
    assert_eq!(keyring.lookup("otlp/header/authorization").await.as_deref(), Some("Bearer settings-9"));
    assert_clean(&browser);
}

/// "Log in with GitHub" on the model's card: the code large and copyable with its time
/// left, a QR code of the link that scans, then GitHub Models in use with no key; a code
/// denied on the provider is said in words on the card.
#[tokio::test(flavor = "multi_thread")]
async fn logging_in_with_github_from_the_model_card() {
    use crate::support::control_plane::{answer_on_the_provider, control_plane};
    let keyring = crate::support::keyring::KeyringSession::start().await;
    let (server, worker) = control_plane("pryx-github").await;
    let models = MockLlm::start().await;
    let config = format!(
        "[secrets]\nbackend = \"keychain\"\n[llm]\nautodetect_local = false\n[cloud]\nurl = \"{}\"\ngithub_models_url = \"{}\"\n",
        worker.info["url"].as_str().unwrap(),
        models.base_url()
    );
    let pryx = Pryx::start(Options { llm_url: None, config, env: keyring.env() }).await;
    let browser = open_signed_in(&pryx).await;
    browser.click(".rail a[href='#/connections']").await;
    let visible_login = "document.querySelector('.github-login:not([hidden])')";
    browser.wait_for(visible_login, "the GitHub login button").await;
    assert!(browser.text(".connection .status").await.contains("no model connected"));

    browser.click(".github-login").await;
    browser.wait_for("document.querySelector('.login-code')", "the code").await;
    let code = browser.text(".login-code").await;
    assert!(code.len() >= 8 && code.contains('-'), "{code:?}");
    let expiry = browser.text(".device-login .code-until").await;
    assert!(expiry.starts_with("The code expires in ") && expiry.contains(':'), "{expiry}");
    let issuer = server.info["issuer"].as_str().unwrap();
    let link = browser.text(".device-login .pairing-link").await;
    assert!(link.starts_with(&format!("{issuer}/device")), "{link}");
    // A click selects the whole code, ready to copy.
    browser.click(".login-code").await;
    assert_eq!(browser.eval("String(getSelection())").await, code);
    let scanned = scan_qr(&browser, ".device-login .qr").await;
    assert_eq!(scanned, link, "the camera reads the link");
    browser.screenshot("github-login-code").await;

    answer_on_the_provider(&server, "approve", &code).await;
    browser
        .wait_for("document.querySelector('.login-note')?.innerText.includes('Logged in to GitHub')", "logged in")
        .await;
    assert!(browser.eval("!document.querySelector('.device-login')").await.as_bool().unwrap(), "the code is gone");
    browser
        .wait_for(
            "document.querySelector('.connection .status.idle')?.innerText.includes('openai/gpt-4o-mini')",
            "GitHub Models in use",
        )
        .await;
    browser.screenshot("github-login-done").await;
    let token = keyring.lookup("auth/github").await.expect("the token in the keychain");

    browser.click(".rail a[href='#/']").await;
    browser.wait_for("document.querySelector('.composer textarea')", "the chat").await;
    browser.click(".composer textarea").await;
    browser.type_line("hello github").await;
    browser
        .wait_for("document.querySelector('.messages')?.innerText.includes('Echo: hello github')", "the answer")
        .await;
    assert_eq!(models.auth_headers().last().cloned().flatten(), Some(format!("Bearer {token}")));

    // Log out, try again, and say no on the provider: the card says so.
    browser.click(".rail a[href='#/connections']").await;
    browser.wait_for("document.querySelector('.login-row button')", "the log-out button").await;
    browser.click_text(".login-row button", "Log out").await;
    browser.wait_for(visible_login, "logged out").await;
    assert_eq!(keyring.lookup("auth/github").await, None);
    browser.click(".github-login").await;
    browser.wait_for("document.querySelector('.login-code')", "a new code").await;
    let code = browser.text(".login-code").await;
    answer_on_the_provider(&server, "deny", &code).await;
    browser.wait_for("document.querySelector('.login-failed:not([hidden])')", "the refusal").await;
    assert_eq!(browser.text(".login-failed").await, "The login was denied on GitHub.");
    assert!(browser.eval("!document.querySelector('.login-code')").await.as_bool().unwrap());
    assert_clean(&browser);
}
