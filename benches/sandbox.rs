//! What the sandbox adds to a command's start (`./x bench`, or `cargo bench --bench
//! sandbox`): `/bin/sh -c :` from start to exit, started
//! - by `tokio::process` with no sandbox (the floor),
//! - by `sandbox::start_uncontained` (Pryx's own clone, no namespaces),
//! - as a shell command: user, mount, PID and network namespaces, Pryx's dirs hidden, a
//!   private /tmp, Landlock (what `shell_execute` does), also with network on,
//! - the same while this process holds 300 MiB of touched memory (a desktop app's
//!   footprint and more: the clone copies page tables, so a bigger parent costs more).
//!
//! The figure that matters is "shell command" minus the floor. Before this design each
//! command re-executed the pryx binary as a helper, which in the desktop build loads WebKit
//! and GTK: see docs/benchmarks.md for those figures. Printed, not asserted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pryx::sandbox::{start_uncontained, CommandJail, PrivatePaths, Program, Sandbox};

const RUNS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn measure(what: &str, mut start_and_wait: impl AsyncFnMut()) {
    for _ in 0..20 {
        start_and_wait().await;
    }
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        start_and_wait().await;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "{what:<52} p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.9).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let home = tempfile::tempdir().expect("tempdir");
    let data = home.path().join("data");
    let workspace = data.join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(data.join("token"), "0".repeat(64)).expect("token");
    let sandbox = Sandbox::new(PrivatePaths::of_pryx(&data, None, None));
    println!("sandbox here: {}", sandbox.protection(false).describe());
    let program = {
        let mut program = Program::new("/bin/sh", ["-c", ":"], &workspace);
        program.env("PATH", "/usr/bin:/bin");
        program
    };
    let roots: Vec<PathBuf> = vec![workspace.clone()];

    let sections = async |label: &str| {
        measure(&format!("tokio::process, no sandbox{label}"), async || {
            let status = tokio::process::Command::new("/bin/sh")
                .args(["-c", ":"])
                .current_dir(&workspace)
                .status()
                .await
                .expect("sh");
            assert!(status.success());
        })
        .await;
        measure(&format!("uncontained (Pryx's clone){label}"), async || {
            let status = start_uncontained(&program).expect("start").wait().await.expect("wait");
            assert!(status.success());
        })
        .await;
        for network in [false, true] {
            let name = format!("shell command, network {}{label}", if network { "on" } else { "off" });
            measure(&name, async || {
                let jail = CommandJail { write_roots: &roots, network };
                let status = sandbox.start_command(&program, &jail).expect("start").wait().await.expect("wait");
                assert!(status.success());
            })
            .await;
        }
    };
    sections("").await;
    // A big parent: 300 MiB touched, as a long-running desktop app might hold.
    let ballast: Vec<u8> = vec![1; 300 << 20];
    std::hint::black_box(&ballast);
    sections(", 300 MiB parent").await;
    drop(ballast);
}
