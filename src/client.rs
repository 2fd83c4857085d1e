//! The typed client: a jsonrpsee WebSocket client authenticated with the bearer token.
//! `pryx chat`, the end-to-end tests and the benchmarks all connect through [`connect`], and
//! call the methods of the generated `PryxApiClient` trait on it.

use std::time::Duration;

use anyhow::Context;
use jsonrpsee::ws_client::{HeaderMap, HeaderValue, WsClient, WsClientBuilder};
pub use pryx_api::PryxApiClient;

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
