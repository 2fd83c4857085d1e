//! The desktop app under Xvfb: the real binary, a real WebKit window, the tray menu driven
//! over D-Bus as a panel would, native dialogs answered with the keyboard (xdotool), deep
//! links through a second launch, and every way out checked in /proc for leftovers.
//! Screenshots land in `<target>/artifacts/desktop/` for people to look at.

use std::time::Duration;

use pryx::client::PryxApiClient;
use pryx_api::{error_code, Approval, ApprovalStatus, TurnEvent, TurnStatus};

use crate::support::desktop::{self, Screen, Tray};
use crate::support::{eventually, follow, peers, MockLlm, Options, Reply, PATIENCE};

/// Wait until the app window's title satisfies `check`; the title.
async fn window_title(screen: &Screen, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let titles: Vec<String> = screen.windows("").into_iter().map(|(_, t)| t).collect();
        if let Some(title) = titles.iter().find(|t| check(t)) {
            return title.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: no window title matched; titles are {titles:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn pending_approval(client: &jsonrpsee::ws_client::WsClient) -> Approval {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(approval) = client.approval_list(None).await.unwrap().into_iter().next() {
            return approval;
        }
        assert!(tokio::time::Instant::now() < deadline, "no approval was requested");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The page's accent colour (`--accent` in frontend/style/app.css).
const ACCENT: &str = "#4f6bed";
/// The background of the page's notice banner (`.banner` in frontend/style/app.css).
const BANNER: &str = "#fef3c7";
/// The background of the page's navigation rail (`--rail` in frontend/style/app.css).
const RAIL: &str = "#f0f2f7";

fn delete_call(path: &str) -> Reply {
    Reply::tool_call("call_del", "fs_delete", &format!("{{\"path\": \"{path}\"}}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_shows_the_app_and_the_tray_follows_and_pauses_the_agent() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let pryx = desktop::start(&screen, Options::with_llm(&llm)).await;

    // The page connected with the token the shell handed it: only then does it show a view.
    window_title(&screen, "the app page", |t| t == "New chat — Pryx").await;
    // The page's own look on screen: the accent colour of its Send button and logo.
    let shot = desktop::screenshot_until(&screen, "window", "the window shows the app", |shot| {
        desktop::pixels_of(shot, ACCENT) > 2_000
    })
    .await;
    assert!(desktop::colours(&shot) > 50, "the window looks blank: {}", shot.display());
    assert!(pryx.stderr().contains("first paint of the window"), "{}", pryx.stderr());

    let tray = Tray::find(&screen, pryx.pid()).await;
    eventually("the tray shows the agent idle", || async { tray.item("Pryx: ").label == "Pryx: Idle" }).await;
    let labels: Vec<String> = tray.menu().into_iter().map(|i| i.label).collect();
    assert_eq!(
        labels,
        ["Pryx: Idle", "Open Pryx", "New chat", "No approvals waiting", "Pause agent", "Quit Pryx"],
        "the tray menu"
    );
    assert!(!tray.item("No approvals").enabled);
    assert!(desktop::pixel(&tray.icon(), 25, 25).starts_with("srgba(22,163,74"), "a green dot for idle");

    // Pause from the tray: the agent refuses new turns, every surface shows it.
    tray.click("Pause agent");
    window_title(&screen, "paused", |t| t == "New chat — Pryx · Paused").await;
    eventually("the tray shows the pause", || async { tray.item("Pause agent").checked == Some(true) }).await;
    assert!(desktop::pixel(&tray.icon(), 25, 25).starts_with("srgba(156,163,175"), "a grey dot while paused");
    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    let refused = client.message_send(session.id.clone(), "hello".into()).await.unwrap_err();
    assert!(
        matches!(&refused, jsonrpsee::core::ClientError::Call(e) if e.code() == error_code::UNAVAILABLE && e.message().contains("paused")),
        "{refused:?}"
    );
    tray.click("Pause agent");
    window_title(&screen, "resumed", |t| t == "New chat — Pryx").await;
    llm.script([Reply::text(&["Hi there."])]);
    let turn = client.message_send(session.id.clone(), "hello".into()).await.unwrap();
    assert!(matches!(
        follow(&client, &turn.turn_id).await.last(),
        TurnEvent::Done { status: TurnStatus::Completed, .. }
    ));

    // The agent's runtime panics and restarts: the window reconnects by itself and says so.
    client.debug_fault("runtime_panic".into()).await.unwrap();
    eventually("the agent to go down", || async { !client.is_connected() }).await;
    pryx.reconnect().await;
    desktop::screenshot_until(&screen, "reconnected", "the page tells the agent restarted", |shot| {
        desktop::pixels_of(shot, BANNER) > 5_000
    })
    .await;
    let tray = Tray::find(&screen, pryx.pid()).await;
    eventually("the tray is back to idle", || async { tray.item("Pryx: ").label == "Pryx: Idle" }).await;
    window_title(&screen, "reconnected", |t| t.ends_with("— Pryx")).await;

    assert_eq!(pryx.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_native_dialog_asks_before_a_delete_and_its_answer_counts_everywhere() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let pryx = desktop::start(&screen, Options::with_llm(&llm)).await;
    let workspace = pryx.data_dir().join("workspace");
    std::fs::create_dir_all(&workspace).unwrap();
    for name in ["allowed.txt", "denied.txt", "elsewhere.txt"] {
        std::fs::write(workspace.join(name), "data").unwrap();
    }
    let client = pryx.client().await;
    let session = client.session_create(None).await.unwrap();
    let store = pryx::store::Store::open(&pryx.data_dir().join("pryx.db")).await.unwrap();

    // Allow: the dialog's default button is "Allow once".
    llm.script([delete_call("allowed.txt"), Reply::text(&["Deleted."])]);
    let turn = client.message_send(session.id.clone(), "delete allowed.txt".into()).await.unwrap();
    let approval = pending_approval(&client).await;
    let (dialog, title) = screen.wait_for_window("Pryx: allow fs_delete?").await;
    assert!(title.ends_with(&format!("[{}]", &approval.id[..8])), "{title}");
    window_title(&screen, "waiting", |t| t.ends_with("· Waiting for your approval")).await;
    desktop::screenshot_until(&screen, "approval-dialog", "the app behind the dialog", |shot| {
        desktop::pixels_of(shot, RAIL) > 20_000
    })
    .await;
    // The tray counts it and opens it in the window.
    let tray = Tray::find(&screen, pryx.pid()).await;
    eventually("the tray counts the approval", || async { tray.item("1 approval waiting").enabled }).await;
    tray.click("1 approval waiting");
    window_title(&screen, "the approval in the window", |t| t.starts_with("Approval: fs_delete — Pryx")).await;
    screen.keys(&dialog, &["Return"]);
    follow(&client, &turn.turn_id).await;
    eventually("the tray count clears", || async { !tray.item("No approvals waiting").enabled }).await;
    let settled = pryx::approvals::Broker::new(store.clone(), Duration::from_secs(60)).get(&approval.id).await.unwrap();
    assert_eq!((settled.status, settled.answered_by.as_deref()), (ApprovalStatus::Allowed, Some("desktop")));
    assert!(!workspace.join("allowed.txt").exists());

    // Deny: Escape closes the dialog, and closing it is a no.
    llm.script([delete_call("denied.txt"), Reply::text(&["Kept it."])]);
    let turn = client.message_send(session.id.clone(), "delete denied.txt".into()).await.unwrap();
    let approval = pending_approval(&client).await;
    let (dialog, _) = screen.wait_for_window("Pryx: allow fs_delete?").await;
    screen.keys(&dialog, &["Escape"]);
    follow(&client, &turn.turn_id).await;
    let settled = pryx::approvals::Broker::new(store.clone(), Duration::from_secs(60)).get(&approval.id).await.unwrap();
    assert_eq!((settled.status, settled.answered_by.as_deref()), (ApprovalStatus::Denied, Some("desktop")));
    assert!(workspace.join("denied.txt").exists());

    // Answered elsewhere: the dialog goes away by itself and adds nothing to the record.
    llm.script([delete_call("elsewhere.txt"), Reply::text(&["Deleted."])]);
    let turn = client.message_send(session.id.clone(), "delete elsewhere.txt".into()).await.unwrap();
    let approval = pending_approval(&client).await;
    screen.wait_for_window("Pryx: allow fs_delete?").await;
    client
        .approval_answer(approval.id.clone(), pryx_api::ApprovalDecision::AllowOnce, None, Some("cli".into()))
        .await
        .unwrap();
    follow(&client, &turn.turn_id).await;
    eventually("the dialog closes", || async { screen.windows("Pryx: allow").is_empty() }).await;
    let trail = pryx::approvals::audit_trail(&store).await.unwrap();
    let answers: Vec<_> = trail.iter().filter(|e| e.approval_id == approval.id).map(|e| e.actor.as_str()).collect();
    assert_eq!(answers, ["cli"], "only the real answer is on record: {trail:?}");
    window_title(&screen, "idle again (still showing the approval opened from the tray)", |t| {
        t == "Approval: fs_delete — Pryx"
    })
    .await;

    assert_eq!(pryx.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_launch_hands_its_link_to_the_running_app() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let pryx = desktop::start(&screen, Options::with_llm(&llm)).await;
    window_title(&screen, "the app page", |t| t == "New chat — Pryx").await;
    let client = pryx.client().await;
    let session = client.session_create(Some("Trip plans".into())).await.unwrap();

    let (code, stderr) =
        desktop::second_launch(&screen, &pryx.home, &[&format!("pryx://session/{}", session.id)]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("already running"), "{stderr}");
    window_title(&screen, "the linked session", |t| t == "Trip plans — Pryx").await;

    // A prefilled new chat is shown, never sent.
    let (code, _) = desktop::second_launch(&screen, &pryx.home, &["pryx://new?text=book%20a%20table"]).await;
    assert_eq!(code, 0);
    window_title(&screen, "the new chat", |t| t == "New chat — Pryx").await;
    desktop::screenshot_until(&screen, "deep-link-new-chat", "the prefilled composer", |shot| {
        desktop::pixels_of(shot, ACCENT) > 2_000
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sessions = client.session_list().await.unwrap();
    assert_eq!(sessions.len(), 1, "nothing was sent: {sessions:?}");
    assert!(llm.requests().is_empty());
    assert!(!pryx.stderr().contains("book a table"), "a link's text stays out of the log");

    // Links Pryx does not know, or to things that do not exist, explain themselves and do nothing.
    for link in ["pryx://delete/everything", "pryx://session/00000000-dead-beef-0000-000000000000"] {
        let (code, _) = desktop::second_launch(&screen, &pryx.home, &[link]).await;
        assert_eq!(code, 0);
        let (dialog, _) = screen.wait_for_window("Pryx cannot open this link").await;
        screen.screenshot("deep-link-refused");
        screen.keys(&dialog, &["Return"]);
        eventually("the notice closes", || async { screen.windows("Pryx cannot open").is_empty() }).await;
    }
    assert_eq!(client.session_list().await.unwrap().len(), 1);

    // A plain second launch only brings the window forward; there is still one app.
    let (code, _) = desktop::second_launch(&screen, &pryx.home, &[]).await;
    assert_eq!(code, 0);
    assert_eq!(screen.windows("").into_iter().filter(|(_, t)| t.ends_with("— Pryx")).count(), 1);
    assert_eq!(pryx.terminate().await, 0);
}

/// The ways a person (or their session) ends the app.
#[derive(Debug, Clone, Copy)]
enum WayOut {
    TrayQuit,
    MenuShortcut,
    Signal(i32),
    /// The X server goes away (the end of a session).
    DisplayLost,
}

/// Start the app with an MCP server and a running shell command, end it `way`, and check
/// it exits 0 with no process of its own left.
async fn leaves_nothing_behind(way: WayOut) {
    let mut screen = Screen::start();
    let llm = MockLlm::start().await;
    let server = peers().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let options = Options::with_llm(&llm).config(&format!(
        "[policy.tools]\nshell_execute = \"allow\"\n\n[mcp.servers.everything]\ncommand = \"node\"\nargs = [\"{}\", \"stdio\"]\n",
        server.display()
    ));
    let pryx = desktop::start(&screen, options).await;
    let (window, _) = screen.wait_for_window("New chat — Pryx").await;
    let client = pryx.client().await;
    eventually("the MCP server is ready", || async {
        client.mcp_list().await.unwrap().servers.iter().any(|s| s.state == pryx_api::McpServerState::Ready)
    })
    .await;
    llm.script([Reply::tool_call("call_sleep", "shell_execute", r#"{"command": "sleep 600"}"#)]);
    let session = client.session_create(None).await.unwrap();
    client.message_send(session.id, "wait a while".into()).await.unwrap();
    let pid = pryx.pid();
    eventually("WebKit, the MCP server and the command run", || async {
        let all: Vec<String> = desktop::descendants(pid)
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect();
        ["WebKitWebProcess", "WebKitNetworkProcess", "server-everything", "sleep"]
            .iter()
            .all(|needle| all.iter().any(|c| c.contains(needle)))
    })
    .await;
    let children = desktop::descendants(pid);
    // No helper sits between Pryx and what it runs: the command's shell and the MCP
    // server are its own children, and nothing it started but WebKit's processes maps
    // WebKit (a re-executed desktop binary would).
    for child in &children {
        let cmdline = std::fs::read_to_string(format!("/proc/{child}/cmdline")).unwrap_or_default().replace('\0', " ");
        if cmdline.contains("WebKit") {
            continue;
        }
        let maps = std::fs::read_to_string(format!("/proc/{child}/maps")).unwrap_or_default();
        assert!(!maps.contains("libwebkit2gtk"), "{cmdline} maps WebKit");
        if cmdline.starts_with("/bin/sh -c sleep 600") || cmdline.contains("server-everything") {
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let parent = stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().nth(1));
            assert_eq!(parent, Some(pid.to_string().as_str()), "{cmdline} is Pryx's own child");
        }
    }
    drop(client);

    let tray = Tray::find(&screen, pid).await;
    let asked = std::time::Instant::now();
    let code = match way {
        WayOut::TrayQuit => {
            tray.click("Quit Pryx");
            pryx.exited(PATIENCE).await
        }
        WayOut::MenuShortcut => {
            screen.keys(&window, &["ctrl+q"]);
            pryx.exited(PATIENCE).await
        }
        WayOut::Signal(libc::SIGKILL) => {
            pryx.kill9().await;
            0
        }
        WayOut::Signal(signal) => pryx.signal_and_wait(signal).await,
        WayOut::DisplayLost => {
            screen.end_display();
            pryx.exited(PATIENCE).await
        }
    };
    eprintln!("{way:?}: exited {code} after {:?}", asked.elapsed());
    assert_eq!(code, 0, "{way:?}");
    eventually(&format!("{way:?} leaves no process behind"), || async { desktop::survivors(&children).is_empty() })
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quitting_from_the_tray_or_the_menu_leaves_nothing_behind() {
    leaves_nothing_behind(WayOut::TrayQuit).await;
    leaves_nothing_behind(WayOut::MenuShortcut).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn signals_and_logout_leave_nothing_behind() {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGKILL] {
        leaves_nothing_behind(WayOut::Signal(signal)).await;
    }
    leaves_nothing_behind(WayOut::DisplayLost).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_window_hides_to_the_tray_remembers_its_place_and_registers_links() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let home = tempfile::Builder::new().prefix("pryx-desktop-").tempdir().unwrap().keep();
    std::fs::create_dir_all(home.join("data")).unwrap();
    std::fs::write(
        home.join("data/window.json"),
        r#"{"position": [120, 90], "size": [900, 600], "maximized": false, "told_about_tray": false}"#,
    )
    .unwrap();
    let pryx = desktop::start_in(&screen, &home, Options::with_llm(&llm), &[]).await;
    let (window, _) = screen.wait_for_window("New chat — Pryx").await;
    let geometry = screen_geometry(&screen, &window);
    assert!(geometry.contains("Position: 120,90") && geometry.contains("Geometry: 900x600"), "{geometry}");

    // Ctrl+W closes the window; Pryx stays in the tray and says so, once.
    screen.keys(&window, &["ctrl+w"]);
    let (notice, _) = screen.wait_for_window("Pryx is still running").await;
    assert!(screen.windows("New chat — Pryx").is_empty(), "the window is hidden");
    screen.keys(&notice, &["Return"]);
    let tray = Tray::find(&screen, pryx.pid()).await;
    tray.click("Open Pryx");
    screen.wait_for_window("New chat — Pryx").await;
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.join("data/window.json")).unwrap()).unwrap();
    assert_eq!(state["told_about_tray"], true);

    // pryx:// links open this binary (no package installed it).
    let entry = home.join("xdg-data/applications/pryx.desktop");
    eventually("the link handler is registered", || async { entry.exists() }).await;
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(text.contains(&format!("Exec=\"{}\" %u", crate::support::pryx_bin())), "{text}");
    let handler = std::process::Command::new("xdg-mime")
        .args(["query", "default", "x-scheme-handler/pryx"])
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&handler.stdout).trim(), "pryx.desktop");
    assert_eq!(pryx.terminate().await, 0);
}

fn screen_geometry(screen: &Screen, window: &str) -> String {
    let out = std::process::Command::new("xdotool")
        .env("DISPLAY", &screen.display)
        .args(["getwindowgeometry", window])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_copy_and_paste_work_in_the_window() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let pryx = desktop::start(&screen, Options::with_llm(&llm)).await;
    window_title(&screen, "the app page", |t| t == "New chat — Pryx").await;
    let (window, _) = screen.wait_for_window("New chat — Pryx").await;
    desktop::screenshot_until(&screen, "typing", "the composer is drawn", |shot| {
        desktop::pixels_of(shot, ACCENT) > 2_000
    })
    .await;
    llm.script([Reply::text(&["Noted."])]);
    // Type, select all, cut, paste twice, send with Enter: the keyboard, the clipboard and
    // the composer all work inside the webview (the menu's shortcuts do not swallow them).
    screen.keys(&window, &["n", "o", "t", "e", "space", "ctrl+a", "ctrl+x", "ctrl+v", "ctrl+v", "Return"]);
    let client = pryx.client().await;
    eventually("the message is sent", || async { !client.session_list().await.unwrap().is_empty() }).await;
    let session = client.session_list().await.unwrap().remove(0);
    let detail = client.session_get(session.id).await.unwrap();
    assert_eq!(detail.messages[0].content, "note note ");
    window_title(&screen, "the new session", |t| t == "note note — Pryx").await;
    assert_eq!(pryx.terminate().await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_app_refuses_a_data_dir_a_headless_pryx_is_serving() {
    let screen = Screen::start();
    let llm = MockLlm::start().await;
    let server = crate::support::Pryx::start(Options::with_llm(&llm)).await;
    let (code, stderr) = desktop::second_launch(&screen, &server.home, &[]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("already runs headless") && stderr.contains(&server.url), "{stderr}");
    assert!(!server.data_dir().join("desktop.sock").exists(), "nothing claimed");
    assert!(server.client().await.session_list().await.is_ok(), "the server is untouched");
}
