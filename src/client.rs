//! The typed client: a jsonrpsee WebSocket client authenticated with the bearer token.
//! `pryx chat`, the end-to-end tests and the benchmarks all connect through [`connect`], and
//! call the methods of the generated `PryxApiClient` trait on it.

use std::time::Duration;

use anyhow::Context;
use jsonrpsee::ws_client::{HeaderMap, HeaderValue, WsClient, WsClientBuilder};
pub use pryx_api::PryxApiClient;

use crate::datadir::DataDir;

/// The URL and token of the `pryx --serve` running on `data`, if one answers `/healthz`.
pub async fn find_running(data: &DataDir, token: Option<String>) -> Option<(String, String)> {
    let info = data.read_server_file()?;
    let healthy = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .ok()?
        .get(format!("{}/healthz", info.url))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !healthy {
        return None;
    }
    let token = token.or_else(|| data.read_token().ok())?;
    Some((info.url, token))
}

/// Connect to `http://host:port` (or `ws://…`) with `token`.
pub async fn connect(base_url: &str, token: &str) -> anyhow::Result<WsClient> {
    let ws_url = format!("{}/rpc", base_url.trim_end_matches('/').replacen("http://", "ws://", 1));
    let mut headers = HeaderMap::new();
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).context("the token has characters a header cannot carry")?,
    );
    WsClientBuilder::default()
        .set_headers(headers)
        .request_timeout(Duration::from_secs(60))
        .max_response_size(64 * 1024 * 1024)
        .build(&ws_url)
        .await
        .with_context(|| format!("cannot connect to {ws_url}"))
}
