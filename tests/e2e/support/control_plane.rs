//! The control plane for end-to-end tests: the built Worker under workerd (Miniflare) in
//! front of a real device-flow authorization server (npm `oidc-provider`) standing in for
//! GitHub, both started by `cloudflare/tests/support.mjs`. The Worker must have been built
//! (`./x worker`; `./x test` does it first).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::PATIENCE;

const INGEST_KEY: &str = "test-ingest-key-0123456789abcdef0123456789";

fn support_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflare/tests/support.mjs")
}

/// A service from `cloudflare/tests/support.mjs`, with the JSON line it printed.
pub struct NodeService {
    _child: Child,
    pub info: Value,
}

pub async fn node_service(args: &[&str]) -> NodeService {
    let worker = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudflare/worker/build/index.js");
    assert!(worker.exists(), "the Worker is not built: run ./x worker (./x test does)");
    let mut child = Command::new("node")
        .arg(support_script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node (./x setup installs it)");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the service did not start in time")
        .expect("read")
        .expect("the service exited before printing its address");
    // Keep draining stdout so the service never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    NodeService { _child: child, info: serde_json::from_str(&line).expect("a JSON line") }
}

/// The authorization server and a Worker in front of it whose GitHub client is `client_id`.
pub async fn control_plane(client_id: &str) -> (NodeService, NodeService) {
    control_plane_with(client_id, json!({})).await
}

/// The same, with more Worker settings (`OTLP_FORWARD_URL`…).
pub async fn control_plane_with(client_id: &str, extra: Value) -> (NodeService, NodeService) {
    let server = node_service(&["authorization-server"]).await;
    let mut bindings = json!({
        "GITHUB_CLIENT_ID": client_id,
        "GITHUB_DEVICE_URL": server.info["device_url"],
        "GITHUB_TOKEN_URL": server.info["token_url"],
        "INGEST_TOKEN_KEY": INGEST_KEY,
    });
    if let (Some(bindings), Some(extra)) = (bindings.as_object_mut(), extra.as_object()) {
        bindings.extend(extra.clone());
    }
    let worker = node_service(&["worker", &bindings.to_string()]).await;
    (server, worker)
}

/// Answers a code on the authorization server as its user would: `approve` or `deny`.
pub async fn answer_on_the_provider(server: &NodeService, verb: &str, code: &str) {
    let issuer = server.info["issuer"].as_str().expect("issuer");
    let out = Command::new("node").arg(support_script()).args([verb, issuer, code]).output().await.expect("node");
    assert!(out.status.success(), "{verb} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The authorization server's own view of a token (RFC 7662 introspection).
pub async fn introspect(server: &NodeService, token: &str) -> Value {
    let url = format!("{}/token/introspection", server.info["issuer"].as_str().expect("issuer"));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("token", token), ("client_id", "pryx-google"), ("client_secret", "google-client-secret")])
        .finish();
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}
