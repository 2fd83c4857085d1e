//! Starting the release `pryx --serve` for a benchmark: config written into `home`, the LLM
//! stand-in's address in the environment, and the listening line read (and timed).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Running {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub exec_to_listening: Duration,
}

/// Start Pryx on `home` with `config`; `env` adds to (or overrides) the environment.
pub async fn spawn_pryx(home: &Path, llm_base_url: &str, config: &str, env: &[(&str, &str)]) -> Running {
    std::fs::write(home.join("config.toml"), config).expect("config");
    // To profile, `PRYX_BENCH_COMMAND` runs another command in its place, for example
    // `heaptrack -o /tmp/pryx /path/to/pryx` (its pryx arguments follow).
    let command = std::env::var("PRYX_BENCH_COMMAND").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pryx").to_owned());
    let mut words = command.split_whitespace();
    let exec = Instant::now();
    let mut child = Command::new(words.next().expect("a command"))
        .args(words)
        .args(["--serve", "--port", "0", "--data-dir"])
        .arg(home.join("data"))
        .arg("--config")
        .arg(home.join("config.toml"))
        .env("PRYX_LLM_BASE_URL", llm_base_url)
        .env("PRYX_LLM_MODEL", crate::mock_llm::MODEL)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pryx");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // (A profiler in front may print lines of its own first.)
    let url = loop {
        let line = lines.next_line().await.expect("read").expect("listening line");
        if let Some(url) = line.strip_prefix("pryx listening on ") {
            break url.to_owned();
        }
    };
    let exec_to_listening = exec.elapsed();
    let token = std::fs::read_to_string(home.join("data/token")).expect("token").trim().to_owned();
    Running { child, url, token, exec_to_listening }
}

/// Resident memory of process `pid`, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
