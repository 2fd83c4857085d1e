//! Desktop figures for issue 8, on a private Xvfb screen and session bus:
//! - exec → first paint of the window (the page's first frame, its static app frame,
//!   reported over the webview's IPC), cold (first run) and warm (the rest);
//! - exec → the Control Center ready (its WebAssembly loaded and mounted);
//! - memory of Pryx plus its WebKit processes, idle, as RSS and as PSS (shared pages
//!   counted once, the fair total);
//! - SIGTERM → exit (target: all stopped within 2 s);
//! - the release binary's size.
//!
//! `cargo bench --bench desktop` (`./x bench` runs it too).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: usize = 8;

#[path = "../tests/e2e/support/virtual_screen.rs"]
#[allow(dead_code)] // the tests use more of it
mod virtual_screen;

use virtual_screen::{descendants, VirtualScreen as Screen};

/// A `kB` field of /proc/PID/smaps_rollup.
fn memory_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Run {
    first_paint: Duration,
    /// The Control Center mounted (its WebAssembly loaded and ran).
    app_ready: Duration,
    rss_kib: u64,
    pss_kib: u64,
    pryx_rss_kib: u64,
    processes: usize,
    exit: Duration,
}

fn run_once(screen: &Screen, home: &Path) -> Run {
    let exec = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pryx"))
        .args(["--port", "0", "--data-dir"])
        .arg(home.join("data"))
        .arg("--config")
        .arg(home.join("config.toml"))
        .env("DISPLAY", &screen.display)
        .env("DBUS_SESSION_BUS_ADDRESS", &screen.bus)
        .env("XDG_DATA_HOME", home.join("xdg-data"))
        .env("XDG_CONFIG_HOME", home.join("xdg-config"))
        .env("PRYX_LLM_BASE_URL", "http://127.0.0.1:9/v1")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pryx");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let first_paint = wait_for_log(&mut stderr, "first paint of the window", exec);
    let app_ready = wait_for_log(&mut stderr, "the app is ready in the window", exec);
    // Keep draining the log so Pryx never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    std::thread::sleep(Duration::from_secs(3));
    let pid = child.id();
    let mut all: Vec<u32> = descendants(pid as i32).into_iter().map(|p| p as u32).collect();
    all.push(pid);
    let rss_kib = all.iter().map(|&p| memory_kib(p, "Rss:")).sum();
    let pss_kib = all.iter().map(|&p| memory_kib(p, "Pss:")).sum();
    let pryx_rss_kib = memory_kib(pid, "Rss:");
    let stop = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    let exit = stop.elapsed();
    assert!(status.success(), "pryx exited with {status}");
    Run { first_paint, app_ready, rss_kib, pss_kib, pryx_rss_kib, processes: all.len(), exit }
}

/// Read Pryx's log until a line contains `needle`; the time since `since`.
fn wait_for_log(log: &mut impl BufRead, needle: &str, since: Instant) -> Duration {
    let mut line = String::new();
    loop {
        line.clear();
        if log.read_line(&mut line).expect("read") == 0 {
            panic!("pryx exited before logging \"{needle}\"");
        }
        if line.contains(needle) {
            return since.elapsed();
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let screen = Screen::start();
    let home = tempfile::Builder::new().prefix("pryx-bench-desktop-").tempdir().expect("tempdir");
    std::fs::write(home.path().join("config.toml"), "").expect("config");
    let runs: Vec<Run> = (0..RUNS).map(|_| run_once(&screen, home.path())).collect();
    let (cold, warm) = runs.split_first().expect("runs");
    println!("desktop: exec → first paint, cold (first run, fresh data dir): {:.0} ms", ms(cold.first_paint));
    let paints: Vec<f64> = warm.iter().map(|r| ms(r.first_paint)).collect();
    println!(
        "desktop: exec → first paint, warm ({} runs): median {:.0} ms, min {:.0} ms, max {:.0} ms",
        warm.len(),
        median(paints.clone()),
        paints.iter().copied().fold(f64::MAX, f64::min),
        paints.iter().copied().fold(0.0, f64::max)
    );
    let ready: Vec<f64> = runs.iter().map(|r| ms(r.app_ready)).collect();
    println!(
        "desktop: exec → the app ready in the window (its WebAssembly loaded and mounted): cold {:.0} ms, warm median {:.0} ms",
        ready[0],
        median(ready[1..].to_vec())
    );
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "desktop: idle memory 3 s after start ({} processes): RSS {:.0} MiB in total (Pryx itself {:.0} MiB), PSS {:.0} MiB",
        warm[0].processes,
        mib(median(warm.iter().map(|r| r.rss_kib as f64).collect()) as u64),
        mib(median(warm.iter().map(|r| r.pryx_rss_kib as f64).collect()) as u64),
        mib(median(warm.iter().map(|r| r.pss_kib as f64).collect()) as u64),
    );
    let exits: Vec<f64> = runs.iter().map(|r| ms(r.exit)).collect();
    println!(
        "desktop: SIGTERM → exit 0: median {:.0} ms, max {:.0} ms",
        median(exits.clone()),
        exits.iter().copied().fold(0.0, f64::max)
    );
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_pryx")).expect("binary").len();
    println!("desktop: release binary {:.1} MB ({size} bytes)", size as f64 / 1e6);
}
