//! Test support for the desktop shell: a private X server (Xvfb) and session bus per test,
//! the real `pryx` in desktop mode on it, and the tools a person's hands would be
//! (screenshots with ImageMagick `import`, keys with `xdotool`, the tray menu over D-Bus
//! with `gdbus`, as a panel would drive it).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use super::virtual_screen::descendants;
use super::virtual_screen::VirtualScreen;
use super::{base_command, Options, Pryx, PATIENCE};

/// An X display and a D-Bus session bus of our own, with the tools to look and type.
pub struct Screen {
    virtual_screen: VirtualScreen,
    pub display: String,
    pub bus: String,
    runtime_dir: tempfile::TempDir,
}

impl Screen {
    pub fn start() -> Screen {
        let virtual_screen = VirtualScreen::start();
        let runtime_dir = tempfile::Builder::new().prefix("pryx-xdg-runtime-").tempdir().expect("tempdir");
        let (display, bus) = (virtual_screen.display.clone(), virtual_screen.bus.clone());
        Screen { virtual_screen, display, bus, runtime_dir }
    }

    /// End the X server, as a logout does.
    pub fn end_display(&mut self) {
        self.virtual_screen.end_display();
    }

    /// Point a command at this screen and bus.
    pub fn apply(&self, command: &mut tokio::process::Command) {
        command
            .env("DISPLAY", &self.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .env("XDG_RUNTIME_DIR", self.runtime_dir.path())
            .env_remove("WAYLAND_DISPLAY");
    }

    fn tool(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.env("DISPLAY", &self.display).env("DBUS_SESSION_BUS_ADDRESS", &self.bus);
        command
    }

    fn output(&self, program: &str, args: &[&str]) -> Option<String> {
        let out = self.tool(program).args(args).stderr(Stdio::null()).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Save a screenshot of the whole screen as `<artifacts>/desktop/NAME.png`; its path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir).expect("artifacts dir");
        let path = dir.join(format!("{name}.png"));
        let status = self.tool("import").args(["-window", "root"]).arg(&path).status().expect("ImageMagick import");
        assert!(status.success(), "import failed");
        path
    }

    /// Titles of the visible top-level windows whose title starts with `prefix`, by X id.
    pub fn windows(&self, prefix: &str) -> Vec<(String, String)> {
        let ids = self.output("xdotool", &["search", "--onlyvisible", "--name", &format!("^{}", regex_quote(prefix))]);
        ids.unwrap_or_default()
            .lines()
            .filter_map(|id| Some((id.to_owned(), self.output("xdotool", &["getwindowname", id])?.trim().to_owned())))
            .collect()
    }

    /// Wait for a visible window whose title starts with `prefix`; its id and title.
    pub async fn wait_for_window(&self, prefix: &str) -> (String, String) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(found) = self.windows(prefix).into_iter().next() {
                return found;
            }
            assert!(tokio::time::Instant::now() < deadline, "no window titled {prefix:?} appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Focus a window and type keys into it (`xdotool key` names: Return, Tab, ctrl+q…).
    /// There is no window manager: focus is set directly and keys go through XTEST, as from
    /// a keyboard.
    pub fn keys(&self, window: &str, keys: &[&str]) {
        let focus = self.tool("xdotool").args(["windowfocus", "--sync", window]).output().expect("xdotool");
        assert!(focus.status.success(), "cannot focus {window}: {}", String::from_utf8_lossy(&focus.stderr));
        let typed = self.tool("xdotool").args(["key", "--delay", "80"]).args(keys).output().expect("xdotool");
        assert!(typed.status.success(), "xdotool key {keys:?}: {}", String::from_utf8_lossy(&typed.stderr));
    }
}

fn regex_quote(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == ' ' { c.to_string() } else { format!("\\{c}") }).collect()
}

/// Where screenshots go for people to look at (CI keeps them).
pub fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../artifacts/desktop")
}

/// How many distinct colours an image has (1 means blank).
pub fn colours(png: &Path) -> usize {
    let out = Command::new("convert").arg(png).args(["-format", "%k", "info:"]).output().expect("ImageMagick convert");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("a colour count")
}

/// How many pixels of an image have exactly the colour `hex` (`#4f6bed`).
pub fn pixels_of(png: &Path, hex: &str) -> u64 {
    let out = Command::new("convert")
        .arg(png)
        .args([
            "-fill",
            "black",
            "+opaque",
            hex,
            "-fill",
            "white",
            "-opaque",
            hex,
            "-format",
            "%[fx:mean*w*h]",
            "info:",
        ])
        .output()
        .expect("ImageMagick convert");
    String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().expect("a pixel count") as u64
}

/// Take screenshots until `check` accepts one (WebKit draws a moment after the page says
/// it has); the last screenshot.
pub async fn screenshot_until(screen: &Screen, name: &str, what: &str, check: impl Fn(&Path) -> bool) -> PathBuf {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let shot = screen.screenshot(name);
        if check(&shot) {
            return shot;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: see {}", shot.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The colour of one pixel, as ImageMagick prints it (`srgba(r,g,b,a)` or `srgb(r,g,b)`).
pub fn pixel(png: &Path, x: u32, y: u32) -> String {
    let out = Command::new("convert")
        .arg(png)
        .args(["-format", &format!("%[pixel:p{{{x},{y}}}]"), "info:"])
        .output()
        .expect("ImageMagick convert");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Start `pryx` (desktop mode: no `--serve`) on `screen` in a fresh home.
pub async fn start(screen: &Screen, options: Options) -> Pryx {
    let home = tempfile::Builder::new().prefix("pryx-desktop-").tempdir().expect("tempdir").keep();
    start_in(screen, &home, options, &[]).await
}

/// Start the desktop app in `home` with extra arguments (a link).
pub async fn start_in(screen: &Screen, home: &Path, options: Options, args: &[&str]) -> Pryx {
    let mut command = base_command(home);
    command.args(["--port", "0"]).args(args);
    screen.apply(&mut command);
    Pryx::launch(command, home, options).await
}

/// A second `pryx` launch on the same data dir; returns its exit code and stderr.
pub async fn second_launch(screen: &Screen, home: &Path, args: &[&str]) -> (i32, String) {
    let mut command = base_command(home);
    screen.apply(&mut command);
    command.args(["--port", "0"]).args(args).stdin(Stdio::null());
    let out =
        tokio::time::timeout(PATIENCE, command.output()).await.expect("the second launch did not end").expect("run");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The tray icon as a status-notifier host (a panel) sees it on the session bus.
pub struct Tray {
    bus: String,
    service: String,
}

/// One entry of the tray menu.
#[derive(Debug, Clone)]
pub struct TrayItem {
    pub id: u32,
    pub label: String,
    pub enabled: bool,
    pub checked: Option<bool>,
}

const ITEM_PATH: &str = "/org/ayatana/NotificationItem/tray_icon_tray_app_pryx";

impl Tray {
    /// Find the tray icon `pid` exported on the screen's bus.
    pub async fn find(screen: &Screen, pid: i32) -> Tray {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(service) = Tray::owner(screen, pid) {
                return Tray { bus: screen.bus.clone(), service };
            }
            assert!(tokio::time::Instant::now() < deadline, "the tray icon never appeared on the bus");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn owner(screen: &Screen, pid: i32) -> Option<String> {
        let bus = |method: &str, args: &[&str]| {
            let mut call = vec!["call", "--session", "--dest", "org.freedesktop.DBus"];
            call.extend(["--object-path", "/org/freedesktop/DBus", "--method", method]);
            call.extend(args);
            screen.output("gdbus", &call)
        };
        let names = bus("org.freedesktop.DBus.ListNames", &[])?;
        for name in names.split('\'').filter(|n| n.starts_with(':')) {
            let owner = bus("org.freedesktop.DBus.GetConnectionUnixProcessID", &[name]);
            if owner.is_some_and(|o| o.contains(&format!("uint32 {pid},"))) {
                let tree =
                    screen.output("gdbus", &["introspect", "--session", "--dest", name, "--object-path", ITEM_PATH]);
                if tree.is_some_and(|t| t.contains("org.kde.StatusNotifierItem")) {
                    return Some(name.to_owned());
                }
            }
        }
        None
    }

    fn gdbus(&self, args: &[&str]) -> String {
        let out = Command::new("gdbus")
            .env("DBUS_SESSION_BUS_ADDRESS", &self.bus)
            .args(["call", "--session", "--dest", &self.service])
            .args(args)
            .output()
            .expect("gdbus");
        assert!(out.status.success(), "gdbus {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A call on the tray's menu object (com.canonical.dbusmenu).
    fn menu_call(&self, method: &str, args: &[&str]) -> String {
        let method = format!("com.canonical.dbusmenu.{method}");
        let path = format!("{ITEM_PATH}/Menu");
        let mut call = vec!["--object-path", &path, "--method", &method, "--"];
        call.extend(args);
        self.gdbus(&call)
    }

    /// The menu as the panel would show it.
    pub fn menu(&self) -> Vec<TrayItem> {
        let layout = self.menu_call("GetLayout", &["0", "-1", "@as []"]);
        // Children look like `<(5, {'enabled': <false>, 'label': <'No approvals waiting'>}, @av [])>`.
        layout
            .split("<(")
            .skip(1)
            .filter_map(|item| {
                let (id, props) = item.split_once(", {")?;
                let props = props.split("}, ").next()?;
                let value = |key: &str| {
                    let start = props.find(&format!("'{key}': <"))? + key.len() + 5;
                    let rest = &props[start..];
                    Some(rest[..rest.find('>')?].trim_matches('\'').to_owned())
                };
                if value("type").as_deref() == Some("separator") {
                    return None;
                }
                Some(TrayItem {
                    id: id.trim().parse().ok()?,
                    label: value("label")?.replace('_', ""),
                    enabled: value("enabled").as_deref() != Some("false"),
                    checked: value("toggle-state").map(|v| v == "1"),
                })
            })
            .collect()
    }

    pub fn item(&self, label_prefix: &str) -> TrayItem {
        let menu = self.menu();
        menu.iter()
            .find(|i| i.label.starts_with(label_prefix))
            .cloned()
            .unwrap_or_else(|| panic!("no tray item {label_prefix:?} in {menu:?}"))
    }

    /// Click a menu entry, as the panel does when the user picks it.
    pub fn click(&self, label_prefix: &str) {
        let id = self.item(label_prefix).id.to_string();
        self.menu_call("Event", &[&id, "clicked", "<0>", "0"]);
    }

    /// The icon file the panel is told to draw.
    pub fn icon(&self) -> PathBuf {
        let reply = self.gdbus(&[
            "--object-path",
            ITEM_PATH,
            "--method",
            "org.freedesktop.DBus.Properties.Get",
            "org.kde.StatusNotifierItem",
            "IconName",
        ]);
        PathBuf::from(reply.split('\'').nth(1).expect("an icon path"))
    }
}

/// Whether a process is still running (a zombie waiting to be reaped counts as gone).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

/// The command lines of `pids` that are still alive.
pub fn survivors(pids: &[i32]) -> Vec<String> {
    pids.iter()
        .filter(|&&pid| alive(pid))
        .map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " "))
        .collect()
}
