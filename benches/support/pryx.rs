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
    let exec = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pryx"))
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
    let line = lines.next_line().await.expect("read").expect("listening line");
    let exec_to_listening = exec.elapsed();
    let url = line.trim_start_matches("pryx listening on ").to_owned();
    let token = std::fs::read_to_string(home.join("data/token")).expect("token").trim().to_owned();
    Running { child, url, token, exec_to_listening }
}
