//! MCP benchmark (`./x bench`, or `cargo bench --bench mcp`): the latency Pryx's MCP layer
//! adds to a tool call, against calling the same server directly with the bare `rmcp` client.
//!
//! Both sides call `echo` of the reference server-everything (from `$PRYX_TEST_PEERS`, see
//! `./x setup for-tests`), each on its own server process, over stdio and over streamable
//! HTTP. "Through Pryx" is the path a turn takes: the live tool set, `McpTool::call`
//! (progress watch, cancel guard, the `mcp.tools_call` span, result rendering) and Pryx's
//! stdio pipe watcher. Rounds alternate between the two so machine noise hits both alike.
//! Figures are printed, not asserted.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use pryx::config::McpConfig;
use pryx::mcp::{McpEnvironment, McpManager};
use pryx::secrets::{BackendChoice, SecretsHandle};
use pryx::tools::{LiveTools, ToolContext, ToolRegistry};
use pryx_api::{McpServerConfig, McpServerState};
use rmcp::model::CallToolRequestParams;
use rmcp::ServiceExt;
use serde_json::json;

const WARM_UP: usize = 200;
const ROUNDS: usize = 20;
const CALLS_PER_ROUND: usize = 100;

fn server_js() -> String {
    let peers = std::env::var_os("PRYX_TEST_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/pryx-peers"));
    let js = peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(js.exists(), "{} is missing: run `./x setup for-tests`", js.display());
    js.display().to_string()
}

/// A bare rmcp client: the baseline.
struct Direct {
    service: rmcp::service::RunningService<rmcp::RoleClient, ()>,
    _child: Option<tokio::process::Child>,
}

impl Direct {
    async fn stdio() -> Direct {
        let mut child = tokio::process::Command::new("node")
            .args([server_js().as_str(), "stdio"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn server");
        let (stdout, stdin) = (child.stdout.take().expect("stdout"), child.stdin.take().expect("stdin"));
        let service = ().serve((stdout, stdin)).await.expect("handshake");
        Direct { service, _child: Some(child) }
    }

    async fn http(url: &str) -> Direct {
        let transport = rmcp::transport::StreamableHttpClientTransport::from_uri(url.to_owned());
        Direct { service: ().serve(transport).await.expect("handshake"), _child: None }
    }

    async fn call(&self) {
        let arguments = json!({"message": "ping"}).as_object().cloned().expect("object");
        let params = CallToolRequestParams::new("echo").with_arguments(arguments);
        self.service.call_tool(params).await.expect("call");
    }
}

/// The same server behind Pryx's MCP manager.
struct ThroughPryx {
    manager: Arc<McpManager>,
    live: Arc<LiveTools>,
}

impl ThroughPryx {
    async fn start(server: McpServerConfig) -> ThroughPryx {
        let live = Arc::new(LiveTools::new(ToolRegistry::default()));
        let config = McpConfig { servers: BTreeMap::from([("bench".to_owned(), server)]), ..McpConfig::default() };
        let environment = McpEnvironment {
            secrets: SecretsHandle::new(BackendChoice::Injected),
            credentials: pryx::mcp::oauth::CredentialsAt::memory(),
            roots: vec![std::env::temp_dir()],
            config_path: None,
            // Like a bare client: the server starts as it is.
            sandbox: None,
        };
        let manager = McpManager::start(&config, live.clone(), environment);
        let deadline = Instant::now() + Duration::from_secs(30);
        while manager.status("bench").map(|s| s.state).ok() != Some(McpServerState::Ready) {
            assert!(Instant::now() < deadline, "the server did not get ready: {:?}", manager.overview());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ThroughPryx { manager, live }
    }

    async fn call(&self) {
        let tools = self.live.current();
        let output =
            tools.call("bench__echo", json!({"message": "ping"}), &ToolContext::default()).await.expect("call");
        assert!(output.contains("ping"));
    }
}

async fn compare(transport: &str, direct: Direct, pryx: ThroughPryx) {
    for _ in 0..WARM_UP {
        direct.call().await;
        pryx.call().await;
    }
    let mut direct_times = Histogram::<u64>::new(3).expect("histogram");
    let mut pryx_times = Histogram::<u64>::new(3).expect("histogram");
    for _ in 0..ROUNDS {
        for _ in 0..CALLS_PER_ROUND {
            let start = Instant::now();
            direct.call().await;
            direct_times.record(start.elapsed().as_micros() as u64).expect("record");
        }
        for _ in 0..CALLS_PER_ROUND {
            let start = Instant::now();
            pryx.call().await;
            pryx_times.record(start.elapsed().as_micros() as u64).expect("record");
        }
    }
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "mcp {transport:<5}  direct p50 {:.3} ms p99 {:.3} ms | through Pryx p50 {:.3} ms p99 {:.3} ms | added p50 {:+.3} ms p99 {:+.3} ms  ({} calls each)",
        us(&direct_times, 0.5),
        us(&direct_times, 0.99),
        us(&pryx_times, 0.5),
        us(&pryx_times, 0.99),
        us(&pryx_times, 0.5) - us(&direct_times, 0.5),
        us(&pryx_times, 0.99) - us(&direct_times, 0.99),
        ROUNDS * CALLS_PER_ROUND,
    );
    pryx.manager.shutdown().await;
}

fn main() {
    pryx::install_tls_provider();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let stdio = McpServerConfig {
            command: Some("node".into()),
            args: vec![server_js(), "stdio".into()],
            ..McpServerConfig::default()
        };
        compare("stdio", Direct::stdio().await, ThroughPryx::start(stdio).await).await;

        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let mut server = tokio::process::Command::new("node")
            .args([server_js().as_str(), "streamableHttp"])
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn HTTP server");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the HTTP server did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("http://127.0.0.1:{port}/mcp");
        let http = McpServerConfig { url: Some(url.clone()), ..McpServerConfig::default() };
        compare("http", Direct::http(&url).await, ThroughPryx::start(http).await).await;
        let _ = server.kill().await;
    });
}
