//! A private X server (Xvfb) and D-Bus session bus, and a /proc walk for the processes a
//! program started. Shared by the desktop tests and the desktop benchmark (which includes
//! this file by path), so it uses nothing else of the test support.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub struct VirtualScreen {
    xvfb: Child,
    dbus: Child,
    /// `:N`, for `DISPLAY`.
    pub display: String,
    /// For `DBUS_SESSION_BUS_ADDRESS`.
    pub bus: String,
}

impl VirtualScreen {
    pub fn start() -> VirtualScreen {
        // `-displayfd 1`: Xvfb picks a free display and prints its number when ready.
        let mut xvfb = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (apt install xvfb; ./x setup for-tests installs it)");
        let display = format!(":{}", first_line(&mut xvfb, "Xvfb"));
        let mut dbus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dbus-daemon");
        let bus = first_line(&mut dbus, "dbus-daemon");
        VirtualScreen { xvfb, dbus, display, bus }
    }

    /// End the X server, as a logout does: every window loses its display at once.
    pub fn end_display(&mut self) {
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

impl Drop for VirtualScreen {
    fn drop(&mut self) {
        let _ = self.dbus.kill();
        let _ = self.xvfb.kill();
        let _ = self.dbus.wait();
        let _ = self.xvfb.wait();
    }
}

fn first_line(child: &mut Child, what: &str) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    assert!(!line.trim().is_empty(), "{what} did not start");
    line.trim().to_owned()
}

/// Every process descending from `pid` (children, grandchildren…), from /proc.
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut parents = std::collections::HashMap::<i32, Vec<i32>>::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`; comm may contain spaces and parentheses.
        let Some(after) = stat.rsplit_once(')').map(|(_, rest)| rest) else { continue };
        if let Some(ppid) = after.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.entry(ppid).or_default().push(child);
        }
    }
    let mut found = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        for &child in parents.get(&parent).map(Vec::as_slice).unwrap_or_default() {
            found.push(child);
            queue.push(child);
        }
    }
    found
}
