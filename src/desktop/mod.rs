//! The desktop shell (feature `desktop`): what `pryx` without `--serve` shows.
//!
//! The main thread runs the tao event loop: one wry webview window on the agent's loopback
//! server, a tray icon, the native menu and dialogs. The agent runs on its own thread under
//! the supervisor (`app::start`), exactly as with `--serve`; the shell is one more client of
//! its API ([`agent_link`]), so an agent restart after a panic only means "reconnecting".
//!
//! Invariants:
//! - The token never appears in a URL: an initialization script hands it to the page, and
//!   only when the page's origin is the agent's own.
//! - The webview never leaves the app: other URLs open in the system browser.
//! - Every way out (tray or menu Quit, closing the window when not kept in the tray,
//!   SIGTERM/SIGINT/SIGHUP, the display going away) runs [`Shell::quit`]: stop the agent
//!   (which ends MCP servers and shell commands and closes the database), then leave the
//!   event loop; WebKit's helper processes end with the process.

mod agent_link;
mod dialogs;
mod instance;
pub mod links;
mod register;
mod status;
mod window_state;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use pryx_api::{Approval, ApprovalStatus};
use tao::dpi::{LogicalSize, PhysicalPosition};
use tao::event::{Event, StartCause, WindowEvent};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tao::platform::run_return::EventLoopExtRunReturn;
use tao::window::{Fullscreen, Window, WindowBuilder};
use tokio::sync::mpsc::UnboundedSender;
use tray_icon::menu::accelerator::{Accelerator, Code, Modifiers};
use tray_icon::menu::{AboutMetadata, CheckMenuItem, Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem, Submenu};
use tray_icon::{TrayIcon, TrayIconBuilder, TrayIconEvent};
use wry::{WebView, WebViewBuilder};

use crate::config::Config;
use crate::datadir::DataDir;
use crate::runtime::{self, RunningAgent};
use crate::server::Token;
use agent_link::{FromAgent, LinkOptions, ToAgent};
use links::DeepLink;
use status::Shown;
use window_state::WindowState;

/// What `main` hands the shell.
pub struct DesktopOptions {
    pub config: Config,
    pub config_path: PathBuf,
    pub data: DataDir,
    pub token: Token,
    /// A `pryx://` link given on the command line.
    pub link: Option<String>,
    /// When the process started (for the time-to-first-paint figure).
    pub started: Instant,
}

/// Everything that reaches the event loop from other threads.
#[derive(Debug)]
enum UserEvent {
    Agent(Box<FromAgent>),
    Menu(MenuEvent),
    Tray(TrayIconEvent),
    /// A second launch handed over (maybe with a link).
    Handoff(instance::Handoff),
    PageTitle(String),
    /// The page drew its first frame.
    Painted,
    /// The page's app mounted (its code loaded and ran).
    Ready,
    /// A link the webview must not follow; opened in the system browser.
    OpenExternal(String),
    /// SIGTERM, SIGINT or SIGHUP.
    Quit,
}

/// What every way out must stop. A static because one way out is a C callback: Xlib's I/O
/// error handler, called when the display is gone and the event loop will never run again.
static TO_STOP: Mutex<Option<ToStop>> = Mutex::new(None);

struct ToStop {
    agent: RunningAgent,
    instance: instance::InstanceGuard,
}

/// Stop the agent (MCP servers, commands, the database, in order) and give up the
/// single-instance socket. The first call does it; later ones find nothing to do.
fn stop_everything() -> anyhow::Result<()> {
    let taken = TO_STOP.lock().unwrap_or_else(|p| p.into_inner()).take();
    let Some(ToStop { agent, instance }) = taken else { return Ok(()) };
    tracing::info!("quitting");
    let stopped = agent.stop();
    drop(instance);
    stopped
}

/// When the X display goes away (the session ends), stop properly and exit 0 instead of
/// GDK's immediate `exit(1)`.
///
/// Xlib calls the handler on every thread whose connection breaks (GDK's, and others the
/// toolkit opened), and it must not return. The first caller stops everything and leaves
/// with `_exit` (atexit handlers of the toolkit would touch the dead display, with its lock
/// held elsewhere); any other caller waits for that.
#[cfg(target_os = "linux")]
fn stop_when_the_display_goes() {
    use std::sync::atomic::{AtomicBool, Ordering};
    static LEAVING: AtomicBool = AtomicBool::new(false);
    unsafe extern "C" fn display_lost(_display: *mut x11_dl::xlib::Display) -> std::os::raw::c_int {
        if LEAVING.swap(true, Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
        tracing::info!("the display closed; stopping");
        let code = if stop_everything().is_ok() { 0 } else { 1 };
        use std::io::Write;
        let _ = std::io::stderr().flush();
        // SAFETY: ends the process at once; everything worth keeping was stopped above.
        unsafe { libc::_exit(code) }
    }
    match x11_dl::xlib::Xlib::open() {
        // SAFETY: installs a handler with the signature Xlib expects; it never returns.
        Ok(xlib) => unsafe {
            (xlib.XSetIOErrorHandler)(Some(display_lost));
        },
        Err(e) => tracing::debug!("no Xlib, so no display-loss handler: {e}"),
    }
}

/// Run the desktop app until it quits. A second launch hands over and returns at once.
pub fn run(options: DesktopOptions) -> anyhow::Result<ExitCode> {
    let data_dir = PathBuf::from(options.data.path());
    options.data.ensure()?;
    // tao would panic without a display; say what to do instead.
    #[cfg(target_os = "linux")]
    gtk::init().map_err(|e| {
        anyhow::anyhow!("cannot open a window ({e}); on a machine without a display run `pryx --serve`")
    })?;
    let handoff = instance::Handoff { link: options.link.clone() };
    let primary = match instance::claim(&data_dir, &handoff).context("cannot check for a running Pryx")? {
        instance::Claim::HandedOver => {
            tracing::info!("Pryx is already running; it takes it from here");
            return Ok(ExitCode::SUCCESS);
        }
        instance::Claim::Primary(primary) => primary,
    };
    // No desktop runs here, but a headless Pryx on the same data dir would share the
    // database and the chats.
    if let Some(server) = options.data.read_server_file().filter(|s| process_alive(s.pid)) {
        primary.abandon();
        anyhow::bail!(
            "Pryx already runs headless on this data dir ({}, pid {}); stop it first, or use another --data-dir",
            server.url,
            server.pid
        );
    }

    let mut event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let proxy = event_loop.create_proxy();
    let agent = runtime::start(
        options.config.clone(),
        Some(options.config_path.clone()),
        options.data.clone(),
        options.token.clone(),
        true,
    )
    .context("cannot start the agent")?;
    let base_url = format!("http://{}", crate::runtime::supervisor::loopback_address(agent.address));

    let to_loop = move |event| {
        let _ = proxy.send_event(event);
    };
    let send = to_loop.clone();
    let instance = primary.serve(move |handoff| send(UserEvent::Handoff(handoff)))?;
    *TO_STOP.lock().unwrap_or_else(|p| p.into_inner()) = Some(ToStop { agent, instance });
    let send = to_loop.clone();
    runtime::on_signals(move || send(UserEvent::Quit));
    let send = to_loop.clone();
    MenuEvent::set_event_handler(Some(move |event| send(UserEvent::Menu(event))));
    let send = to_loop.clone();
    TrayIconEvent::set_event_handler(Some(move |event| send(UserEvent::Tray(event))));
    #[cfg(target_os = "linux")]
    if options.config.desktop.register_links {
        register::register_in_background();
    }

    let window_state = WindowState::load(&data_dir);
    let built = build_window(&event_loop, &window_state).and_then(|window| {
        let menu = AppMenu::attach(&window)?;
        let webview = build_webview(&window, &base_url, &options.token, to_loop.clone())?;
        Ok((window, menu, webview))
    });
    let (window, menu, webview) = match built {
        Ok(built) => built,
        Err(e) => {
            // The agent is already running: stop it properly before reporting.
            let _ = stop_everything();
            return Err(e);
        }
    };
    // The AppIndicator library panics when it is missing, instead of failing.
    let tray = std::panic::catch_unwind(ShellTray::new)
        .map_err(|_| anyhow::anyhow!("the tray library is missing (libayatana-appindicator3-1)"))
        .and_then(|tray| tray)
        .inspect_err(|e| tracing::warn!("no tray icon ({e:#}); closing the window will quit Pryx"))
        .ok();
    // Without a tray there would be no way back to a hidden window.
    let close_to_tray = options.config.desktop.close_to_tray && tray.is_some();
    let send = to_loop.clone();
    let link = agent_link::start(
        LinkOptions {
            url: base_url.clone(),
            token: options.token.expose().to_owned(),
            approval_dialogs: options.config.desktop.approval_dialogs,
        },
        move |news| send(UserEvent::Agent(Box::new(news))),
    );

    let mut shell = Shell {
        window,
        webview,
        tray,
        _menu: menu,
        link,
        running: true,
        data_dir,
        window_state,
        close_to_tray,
        shown: Shown::Connecting,
        page_title: "Pryx".into(),
        pending: Vec::new(),
        started: options.started,
        painted: false,
        ready: false,
        early_link: options.link,
        result: Ok(()),
    };
    shell.refresh_status();
    // Last, so no toolkit set-up replaces the handler.
    #[cfg(target_os = "linux")]
    stop_when_the_display_goes();
    let code = event_loop.run_return(|event, _target, control_flow| {
        *control_flow = ControlFlow::Wait;
        shell.handle(event, control_flow);
    });
    // The loop can also end without Quit (the display went away under Wayland).
    shell.quit();
    shell.result.map(|()| if code == 0 || code == 1 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The state of the running shell; the event loop calls [`Shell::handle`].
struct Shell {
    window: Window,
    webview: WebView,
    /// None when the desktop has no tray (the AppIndicator library is missing).
    tray: Option<ShellTray>,
    /// Kept alive: dropping it removes the menu bar.
    _menu: AppMenu,
    link: UnboundedSender<ToAgent>,
    /// False once [`Shell::quit`] ran.
    running: bool,
    data_dir: PathBuf,
    window_state: WindowState,
    close_to_tray: bool,
    shown: Shown,
    page_title: String,
    /// Approvals waiting, oldest first.
    pending: Vec<Approval>,
    started: Instant,
    painted: bool,
    /// The Control Center has mounted (after its WebAssembly loaded).
    ready: bool,
    /// A link from the command line, opened once the page has loaded.
    early_link: Option<String>,
    result: anyhow::Result<()>,
}

impl Shell {
    fn handle(&mut self, event: Event<'_, UserEvent>, control_flow: &mut ControlFlow) {
        match event {
            Event::NewEvents(StartCause::Init) => {}
            Event::WindowEvent { event: WindowEvent::CloseRequested, .. } => {
                if self.close_to_tray {
                    self.hide();
                } else {
                    self.quit();
                    *control_flow = ControlFlow::Exit;
                }
            }
            Event::WindowEvent { event: WindowEvent::Moved(_) | WindowEvent::Resized(_), .. } => {
                self.remember_geometry()
            }
            Event::UserEvent(UserEvent::Quit) => {
                self.quit();
                *control_flow = ControlFlow::Exit;
            }
            Event::UserEvent(UserEvent::Menu(event)) if event.id == ids::QUIT => {
                self.quit();
                *control_flow = ControlFlow::Exit;
            }
            Event::UserEvent(UserEvent::Menu(event)) => self.menu_event(&event.id),
            Event::UserEvent(UserEvent::Tray(TrayIconEvent::Click { .. } | TrayIconEvent::DoubleClick { .. })) => {
                self.show()
            }
            Event::UserEvent(UserEvent::Tray(_)) => {}
            Event::UserEvent(UserEvent::Agent(news)) => self.agent_news(*news),
            Event::UserEvent(UserEvent::Handoff(handoff)) => match handoff.link {
                Some(link) => self.open_link(&link),
                None => self.show(),
            },
            Event::UserEvent(UserEvent::PageTitle(title)) => {
                self.page_title = title;
                self.refresh_status();
            }
            Event::UserEvent(UserEvent::Ready) if !self.ready => {
                self.ready = true;
                tracing::info!(
                    elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0,
                    "the app is ready in the window"
                );
            }
            Event::UserEvent(UserEvent::Painted) if !self.painted => {
                self.painted = true;
                tracing::info!(elapsed_ms = self.started.elapsed().as_secs_f64() * 1000.0, "first paint of the window");
                if let Some(link) = self.early_link.take() {
                    self.open_link(&link);
                }
            }
            Event::UserEvent(UserEvent::OpenExternal(url)) => open_external(&url),
            _ => {}
        }
    }

    /// Every menu item but Quit (which the event loop handles).
    fn menu_event(&mut self, id: &MenuId) {
        match id.as_ref() {
            ids::OPEN => self.show(),
            ids::NEW_CHAT => {
                self.navigate("#/new");
                self.show();
            }
            ids::CLOSE_WINDOW => self.hide(),
            ids::RELOAD => {
                let _ = self.webview.reload();
            }
            ids::FULLSCREEN => {
                let fullscreen = self.window.fullscreen().is_some();
                self.window.set_fullscreen((!fullscreen).then_some(Fullscreen::Borderless(None)));
            }
            ids::APPROVALS => {
                if let Some(first) = self.pending.first() {
                    self.navigate(&DeepLink::Approval(first.id.clone()).page_route());
                    self.show();
                }
            }
            ids::PAUSE => {
                let paused = !self.shown.paused();
                let _ = self.link.send(ToAgent::Pause(paused));
            }
            _ => {}
        }
    }

    fn agent_news(&mut self, news: FromAgent) {
        match news {
            FromAgent::Activity(activity) => self.shown = Shown::Activity(activity),
            FromAgent::Lost => self.shown = Shown::Reconnecting,
            FromAgent::ApprovalPending(approval) => {
                if !self.pending.iter().any(|a| a.id == approval.id) {
                    self.pending.push(approval);
                }
            }
            FromAgent::ApprovalSettled(approval) => self.pending.retain(|a| a.id != approval.id),
            FromAgent::LinkTargetMissing(message) => {
                dialogs::notice("Pryx cannot open this link", &message, rfd::MessageLevel::Warning)
            }
        }
        self.pending.retain(|a| a.status == ApprovalStatus::Pending);
        self.refresh_status();
    }

    /// Window title, tray icon, tooltip and menu follow the agent's state.
    fn refresh_status(&mut self) {
        self.window.set_title(&self.shown.window_title(&self.page_title));
        if let Some(tray) = &mut self.tray {
            tray.show(&self.shown, self.pending.len());
        }
    }

    fn open_link(&mut self, link: &str) {
        match DeepLink::parse(link) {
            Ok(deep_link) => {
                // The route may carry text to prefill, which stays out of the log.
                tracing::info!(link = deep_link.kind(), "opening a pryx:// link");
                if let DeepLink::Session(id) = &deep_link {
                    let _ = self.link.send(ToAgent::CheckSession(id.clone()));
                }
                self.navigate(&deep_link.page_route());
                self.show();
            }
            Err(e) => {
                tracing::warn!("refused a pryx:// link: {e}");
                dialogs::notice("Pryx cannot open this link", &e.to_string(), rfd::MessageLevel::Warning);
            }
        }
    }

    /// Show a route of the page (a fragment: no reload, and the page's own router runs).
    fn navigate(&self, route: &str) {
        let script =
            format!("location.hash = {};", serde_json::Value::String(route.trim_start_matches('#').to_owned()));
        if let Err(e) = self.webview.evaluate_script(&script) {
            tracing::warn!("cannot open {route} in the window: {e}");
        }
    }

    fn show(&self) {
        self.window.set_visible(true);
        self.window.set_minimized(false);
        self.window.set_focus();
    }

    fn hide(&mut self) {
        self.remember_geometry();
        self.window.set_visible(false);
        if !self.window_state.told_about_tray {
            self.window_state.told_about_tray = true;
            dialogs::notice(
                "Pryx is still running",
                "Pryx keeps running in the tray, so your agent can still answer on Telegram and \
                 WhatsApp and finish what it is doing. Open it again from the tray icon; quit it \
                 from the tray menu or with File → Quit (Ctrl+Q).",
                rfd::MessageLevel::Info,
            );
        }
        self.save_window_state();
    }

    fn remember_geometry(&mut self) {
        if !self.window.is_visible() || self.window.fullscreen().is_some() {
            return;
        }
        self.window_state.maximized = self.window.is_maximized();
        if !self.window_state.maximized {
            if let Ok(position) = self.window.outer_position() {
                self.window_state.position = Some((position.x, position.y));
            }
            let size = self.window.inner_size().to_logical::<f64>(self.window.scale_factor());
            self.window_state.size = (size.width, size.height);
        }
    }

    fn save_window_state(&self) {
        if let Err(e) = self.window_state.save(&self.data_dir) {
            tracing::warn!("cannot remember the window's place: {e}");
        }
    }

    /// Stop everything in order; the caller then leaves the event loop.
    fn quit(&mut self) {
        if !std::mem::replace(&mut self.running, false) {
            return;
        }
        self.remember_geometry();
        self.save_window_state();
        self.window.set_visible(false);
        if let Some(tray) = &self.tray {
            tray.hide();
        }
        if let Err(e) = stop_everything() {
            self.result = Err(e);
        }
    }
}

/// Menu item ids shared by the window menu and the tray menu.
mod ids {
    pub const OPEN: &str = "open";
    pub const NEW_CHAT: &str = "new-chat";
    pub const CLOSE_WINDOW: &str = "close-window";
    pub const QUIT: &str = "quit";
    pub const RELOAD: &str = "reload";
    pub const FULLSCREEN: &str = "fullscreen";
    pub const APPROVALS: &str = "approvals";
    pub const PAUSE: &str = "pause";
    pub const STATE: &str = "state";
}

fn build_window(event_loop: &tao::event_loop::EventLoop<UserEvent>, state: &WindowState) -> anyhow::Result<Window> {
    let icon = tao::window::Icon::from_rgba(status::draw_icon(64, None), 64, 64).ok();
    let mut builder = WindowBuilder::new()
        .with_title("Pryx")
        .with_window_icon(icon)
        .with_inner_size(LogicalSize::new(state.size.0, state.size.1))
        .with_min_inner_size(LogicalSize::new(480.0, 360.0))
        .with_maximized(state.maximized);
    let monitors: Vec<_> = event_loop
        .available_monitors()
        .map(|m| ((m.position().x, m.position().y), (m.size().width, m.size().height)))
        .collect();
    if let (Some((x, y)), true) = (state.position, state.visible_on(&monitors)) {
        builder = builder.with_position(PhysicalPosition::new(x, y));
    }
    builder.build(event_loop).context("cannot open the window")
}

/// The webview: the agent's page, the token handed over by script, no way out of the app.
/// `native_approvals` tells the page that this shell asks in native dialogs, so it does
/// not pop up a second prompt of its own.
fn build_webview(
    window: &Window,
    base_url: &str,
    token: &Token,
    to_loop: impl Fn(UserEvent) + Clone + 'static,
) -> anyhow::Result<WebView> {
    let origin = base_url.to_owned();
    let init = format!(
        "(function () {{ if (location.origin !== {origin}) return; \
         Object.defineProperty(window, '__PRYX__', {{ value: Object.freeze({{ token: {token}, native_approvals: true }}), \
         writable: false, configurable: false }}); }})();",
        origin = serde_json::Value::String(origin.clone()),
        token = serde_json::Value::String(token.expose().to_owned()),
    );
    let (navigate_out, window_out) = (to_loop.clone(), to_loop.clone());
    let (titles, ipc) = (to_loop.clone(), to_loop);
    let app = origin.clone();
    // No URL yet: the engine is tuned first (see `tune_webkit`), then the page loads.
    let builder = WebViewBuilder::new()
        .with_initialization_script(init)
        .with_incognito(true)
        .with_devtools(cfg!(debug_assertions))
        .with_navigation_handler(move |url| {
            if stays_in_app(&app, &url) {
                return true;
            }
            navigate_out(UserEvent::OpenExternal(url));
            false
        })
        .with_new_window_req_handler(move |url, _features| {
            if !stays_in_app(&origin, &url) {
                window_out(UserEvent::OpenExternal(url));
            }
            wry::NewWindowResponse::Deny
        })
        .with_document_title_changed_handler(move |title| titles(UserEvent::PageTitle(title)))
        .with_ipc_handler(move |request| match request.body().as_str() {
            // The page's static frame is on screen (boot.js), then the app itself.
            "painted" => ipc(UserEvent::Painted),
            "ready" => ipc(UserEvent::Ready),
            _ => {}
        });
    #[cfg(target_os = "linux")]
    let webview = {
        use tao::platform::unix::WindowExtUnix;
        use wry::WebViewBuilderExtUnix;
        let vbox = window.default_vbox().context("the window has no GTK container")?;
        builder.build_gtk(vbox)
    };
    #[cfg(not(target_os = "linux"))]
    let webview = builder.build(window);
    let webview = webview.context("cannot create the webview")?;
    #[cfg(target_os = "linux")]
    tune_webkit(&webview);
    webview.load_url(&format!("{base_url}/")).context("cannot load the page")?;
    Ok(webview)
}

/// WebKitGTK settings for one local page: no GPU compositing (measured here: the web
/// process's PSS 170 → 94 MiB and first paint about 130 ms sooner; a chat page gains
/// nothing from it) and the smallest cache model (everything is on loopback).
#[cfg(target_os = "linux")]
fn tune_webkit(webview: &WebView) {
    use webkit2gtk::{CacheModel, HardwareAccelerationPolicy, SettingsExt, WebContextExt, WebViewExt};
    use wry::WebViewExtUnix;
    let engine = webview.webview();
    if let Some(settings) = WebViewExt::settings(&engine) {
        settings.set_hardware_acceleration_policy(HardwareAccelerationPolicy::Never);
    }
    if let Some(context) = engine.context() {
        context.set_cache_model(CacheModel::DocumentViewer);
    }
}

/// Whether another process with this pid runs (a stale `server.json` names a dead one).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 only checks that the process exists.
    pid != std::process::id() as libc::pid_t && unsafe { libc::kill(pid, 0) } == 0
}

/// Whether the webview may show `url`: only pages of the agent's own origin.
fn stays_in_app(origin: &str, url: &str) -> bool {
    url == origin || url.strip_prefix(origin).is_some_and(|rest| rest.starts_with(['/', '#', '?']))
}

/// Open a link the app will not show itself in the system browser (web and mail only).
fn open_external(url: &str) {
    let Ok(parsed) = url::Url::parse(url) else { return };
    if !matches!(parsed.scheme(), "http" | "https" | "mailto") {
        tracing::warn!(scheme = parsed.scheme(), "not opening a link of this kind");
        return;
    }
    #[cfg(target_os = "linux")]
    let opener = "xdg-open";
    #[cfg(target_os = "macos")]
    let opener = "open";
    #[cfg(target_os = "windows")]
    let opener = "explorer";
    let spawned = std::process::Command::new(opener)
        .arg(parsed.as_str())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    match spawned {
        // Reap it on a thread so it does not linger as a zombie.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => tracing::warn!("cannot open the link in the browser: {e}"),
    }
}

/// The window's menu bar: File, Edit, View, Help.
struct AppMenu {
    _menu: Menu,
}

impl AppMenu {
    fn attach(window: &Window) -> anyhow::Result<AppMenu> {
        let ctrl = |code| Some(Accelerator::new(Modifiers::CONTROL, code));
        let file = Submenu::with_items(
            "&File",
            true,
            &[
                &MenuItem::with_id(ids::NEW_CHAT, "&New chat", true, ctrl(Code::KeyN)),
                &PredefinedMenuItem::separator(),
                &MenuItem::with_id(ids::CLOSE_WINDOW, "&Close window", true, ctrl(Code::KeyW)),
                &MenuItem::with_id(ids::QUIT, "&Quit", true, ctrl(Code::KeyQ)),
            ],
        )?;
        let edit = Submenu::with_items(
            "&Edit",
            true,
            &[
                &PredefinedMenuItem::undo(None),
                &PredefinedMenuItem::redo(None),
                &PredefinedMenuItem::separator(),
                &PredefinedMenuItem::cut(None),
                &PredefinedMenuItem::copy(None),
                &PredefinedMenuItem::paste(None),
                &PredefinedMenuItem::select_all(None),
            ],
        )?;
        let view = Submenu::with_items(
            "&View",
            true,
            &[
                &MenuItem::with_id(ids::RELOAD, "&Reload", true, ctrl(Code::KeyR)),
                &MenuItem::with_id(
                    ids::FULLSCREEN,
                    "&Full screen",
                    true,
                    Some(Accelerator::new(Modifiers::empty(), Code::F11)),
                ),
            ],
        )?;
        let about = AboutMetadata {
            name: Some("Pryx".into()),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            comments: Some("Your own AI agent, in one binary.".into()),
            license: Some(env!("CARGO_PKG_LICENSE").into()),
            ..Default::default()
        };
        let help = Submenu::with_items("&Help", true, &[&PredefinedMenuItem::about(Some("&About Pryx"), Some(about))])?;
        let menu = Menu::with_items(&[&file, &edit, &view, &help])?;
        #[cfg(target_os = "linux")]
        {
            use tao::platform::unix::WindowExtUnix;
            menu.init_for_gtk_window(window.gtk_window(), window.default_vbox())?;
        }
        #[cfg(target_os = "macos")]
        menu.init_for_nsapp();
        #[cfg(target_os = "windows")]
        {
            use tao::platform::windows::WindowExtWindows;
            // SAFETY: the HWND is the live window's.
            unsafe { menu.init_for_hwnd(window.hwnd() as _)? };
        }
        let _ = window;
        Ok(AppMenu { _menu: menu })
    }
}

/// The tray icon and its menu: the state (Linux panels show no tooltips), Open, New chat,
/// approvals waiting, Pause, Quit.
struct ShellTray {
    icon: TrayIcon,
    state: MenuItem,
    approvals: MenuItem,
    pause: CheckMenuItem,
    /// What the icon shows now (redrawn only on change).
    colour: Option<[u8; 3]>,
}

impl ShellTray {
    fn new() -> anyhow::Result<ShellTray> {
        let state = MenuItem::with_id(ids::STATE, "Pryx: Starting…", false, None);
        let approvals = MenuItem::with_id(ids::APPROVALS, "No approvals waiting", false, None);
        let pause = CheckMenuItem::with_id(ids::PAUSE, "&Pause agent", true, false, None);
        let menu = Menu::with_items(&[
            &state,
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(ids::OPEN, "&Open Pryx", true, None),
            &MenuItem::with_id(ids::NEW_CHAT, "&New chat", true, None),
            &PredefinedMenuItem::separator(),
            &approvals,
            &PredefinedMenuItem::separator(),
            &pause,
            &PredefinedMenuItem::separator(),
            &MenuItem::with_id(ids::QUIT, "&Quit Pryx", true, None),
        ])?;
        let icon = TrayIconBuilder::new()
            .with_id("pryx")
            .with_menu(Box::new(menu))
            .with_tooltip("Pryx")
            .with_icon(tray_icon::Icon::from_rgba(status::draw_icon(32, None), 32, 32)?)
            .build()
            .context("cannot create the tray icon")?;
        Ok(ShellTray { icon, state, approvals, pause, colour: None })
    }

    fn show(&mut self, shown: &Shown, pending: usize) {
        let colour = shown.colour();
        if self.colour != Some(colour) {
            self.colour = Some(colour);
            match tray_icon::Icon::from_rgba(status::draw_icon(32, Some(colour)), 32, 32) {
                Ok(icon) => {
                    if let Err(e) = self.icon.set_icon(Some(icon)) {
                        tracing::debug!("cannot update the tray icon: {e}");
                    }
                }
                Err(e) => tracing::debug!("cannot draw the tray icon: {e}"),
            }
        }
        let _ = self.icon.set_tooltip(Some(shown.tooltip()));
        self.state.set_text(shown.tooltip());
        self.approvals.set_text(match pending {
            0 => "No approvals waiting".to_owned(),
            1 => "1 approval waiting…".to_owned(),
            n => format!("{n} approvals waiting…"),
        });
        self.approvals.set_enabled(pending > 0);
        self.pause.set_checked(shown.paused());
    }

    fn hide(&self) {
        let _ = self.icon.set_visible(false);
    }
}

#[cfg(test)]
mod tests {
    use super::stays_in_app;

    #[test]
    fn the_webview_stays_on_the_agents_origin() {
        let origin = "http://127.0.0.1:4000";
        for url in ["http://127.0.0.1:4000", "http://127.0.0.1:4000/", "http://127.0.0.1:4000/#/new?text=x"] {
            assert!(stays_in_app(origin, url), "{url}");
        }
        for url in [
            "http://127.0.0.1:40001/",
            "http://127.0.0.1:4000.evil.example/",
            "http://127.0.0.1:4000@evil.example/",
            "https://example.com/",
            "file:///etc/passwd",
            "about:blank",
        ] {
            assert!(!stays_in_app(origin, url), "{url}");
        }
    }
}
