//! The one port: `/healthz`, JSON-RPC at `/rpc` (WebSocket, or plain HTTP POST), the page at
//! `/` (`crate::server::assets`), the OAuth callback and the webhooks. axum on hyper; jsonrpsee's tower
//! service mounted at `/rpc`.
//!
//! Every request passes [`guard`] first:
//! - `Host` must name this machine (loopback names, the bind address, configured extras),
//!   so a DNS-rebinding page cannot reach the agent under a foreign name;
//! - `Origin`, when a browser sends one, must be the agent's own origin or a configured one;
//! - everything but `/healthz`, the Control Center's files (`crate::server::assets`, which hold nothing
//!   private) and `/oauth/callback` (where a browser returns from an MCP server's sign-in,
//!   honoured only with the one-time `state` of a sign-in started here) needs the bearer
//!   token (webhooks bring their platform's secret or signature instead): an `Authorization: Bearer` header, a
//!   `Sec-WebSocket-Protocol` entry `pryx.token.<token>` (browsers cannot set headers on a
//!   WebSocket; offer `pryx` too and it is echoed back), or a `token` query parameter.
//!
//! The token is compared in constant time and never logged.

pub mod assets;
mod connections;
pub mod rpc;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use jsonrpsee::server::{stop_channel, StopHandle, TowerServiceBuilder};
use jsonrpsee::Methods;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;
use tower::layer::util::Identity;
use tower::Service;

use crate::config::ServerConfig;

/// The WebSocket subprotocol browsers offer alongside their `pryx.token.` entry.
pub const WS_PROTOCOL: &str = "pryx";
const WS_TOKEN_PREFIX: &str = "pryx.token.";
/// Paths served without the bearer token: the health check, and the OAuth callback a
/// browser is redirected to (it is only honoured with the `state` of a sign-in started here).
/// Webhooks authenticate with the platform's own secret or signature instead.
const TOKEN_FREE_PATHS: &[&str] = &["/healthz", "/oauth/callback", "/webhooks/telegram", "/webhooks/whatsapp"];
/// Largest response the API sends (a long session's history).
const MAX_RESPONSE_BYTES: u32 = 64 * 1024 * 1024;

/// The bearer token; `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(value: String) -> Self {
        Token(value.into())
    }
    #[cfg(feature = "desktop")]
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Constant-time comparison (the length is not secret: tokens are fixed-size).
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.as_bytes().ct_eq(candidate.as_bytes()).into()
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// Host names that change while Pryx runs: the public addresses the messaging platforms
/// post to, set from the Connections screen.
pub type SharedHosts = Arc<std::sync::RwLock<Vec<String>>>;

/// Who may talk to the server, by `Host` and `Origin`.
#[derive(Debug, Clone)]
struct Allowlist {
    port: u16,
    bind: IpAddr,
    hosts: Vec<String>,
    public_hosts: SharedHosts,
    origins: Vec<String>,
}

impl Allowlist {
    fn host_allowed(&self, host_header: &str) -> bool {
        let host = strip_port(host_header).to_ascii_lowercase();
        if host == "localhost" || self.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return true;
        }
        let public = self.public_hosts.read().unwrap_or_else(|p| p.into_inner());
        if public.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.bind || self.bind.is_unspecified(),
            Err(_) => false,
        }
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        if self.origins.iter().any(|o| o.trim_end_matches('/') == origin) {
            return true;
        }
        let Ok(url) = url::Url::parse(origin) else {
            return false;
        };
        let loopback = match url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        url.scheme() == "http" && loopback && url.port() == Some(self.port)
    }
}

/// `host:port`, `[v6]:port` or `host` → the host part.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

struct AppState {
    token: Token,
    allow: Allowlist,
    rpc: TowerServiceBuilder<Identity, Identity>,
    methods: Methods,
    stop: StopHandle,
    /// Fired when this server stops: from then on it takes no new API connection, so a
    /// client reconnecting during a runtime restart reaches the next runtime, not this one.
    stopping: CancellationToken,
}

/// Serve until `shutdown` fires, then close every connection, WebSockets included.
/// `public` holds the few routes a browser reaches without the token (each authenticates
/// its own way, like the OAuth callback's one-time `state`); Host and Origin still apply.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServerConfig,
    public_hosts: SharedHosts,
    token: Token,
    methods: impl Into<Methods>,
    public: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let local: SocketAddr = listener.local_addr()?;
    let rpc_config = jsonrpsee::server::ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(MAX_RESPONSE_BYTES)
        .max_connections(config.max_connections)
        .build();
    let limits = connections::Limits {
        max_connections: config.max_connections as usize,
        header_timeout: std::time::Duration::from_secs(config.header_timeout_secs),
        body_timeout: std::time::Duration::from_secs(config.body_timeout_secs),
        max_body_bytes: config.max_request_bytes as usize,
    };
    let (stop, server_handle) = stop_channel();
    let state = Arc::new(AppState {
        token,
        allow: Allowlist {
            port: local.port(),
            bind: config.bind,
            hosts: config.allowed_hosts.clone(),
            public_hosts,
            origins: config.allowed_origins.clone(),
        },
        rpc: jsonrpsee::server::Server::builder().set_config(rpc_config).to_service_builder(),
        methods: methods.into(),
        stop,
        stopping: shutdown.clone(),
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/rpc", any(rpc))
        .with_state(state.clone())
        .merge(crate::server::assets::router())
        .merge(public)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(limits, connections::read_body_in_time))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .layer(axum::extract::DefaultBodyLimit::max(config.max_request_bytes as usize));

    let ws_shutdown = shutdown.clone();
    tokio::spawn(async move {
        ws_shutdown.cancelled().await;
        let _ = server_handle.stop();
    });
    connections::serve(listener, app, limits, shutdown).await
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "no such endpoint")
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": message}))).into_response()
}

/// Host, Origin and token checks for every request.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !state.allow.host_allowed(host) {
        tracing::warn!(host, "refused a request for a foreign Host");
        return error_response(StatusCode::FORBIDDEN, "this Host is not allowed (see server.allowed_hosts)");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state.allow.origin_allowed(origin) {
            tracing::warn!(origin, "refused a request from a foreign Origin");
            return error_response(StatusCode::FORBIDDEN, "this Origin is not allowed (see server.allowed_origins)");
        }
    }
    let path = request.uri().path();
    let token_free = TOKEN_FREE_PATHS.contains(&path) || crate::server::assets::is_asset_path(path);
    if !token_free && !presents_token(&state.token, headers, request.uri().query()) {
        let mut response = error_response(StatusCode::UNAUTHORIZED, "missing or wrong token (see <data-dir>/token)");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

fn presents_token(token: &Token, headers: &HeaderMap, query: Option<&str>) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .is_some_and(|t| token.matches(t.trim()));
    let protocol = offered_protocols(headers).filter_map(|p| p.strip_prefix(WS_TOKEN_PREFIX)).any(|t| token.matches(t));
    let query = query
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "token" && token.matches(&v)));
    bearer | protocol | query
}

fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(str::trim)
}

/// Hand the request to a fresh jsonrpsee service (one connection id per request).
async fn rpc(State(state): State<Arc<AppState>>, request: Request) -> Response {
    if state.stopping.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "Pryx is restarting; connect again").into_response();
    }
    let echo_protocol = offered_protocols(request.headers()).any(|p| p == WS_PROTOCOL);
    let mut service = state.rpc.clone().build(state.methods.clone(), state.stop.clone());
    match service.call(request).await {
        Ok(response) => {
            let mut response = response.map(Body::new);
            if echo_protocol && response.status() == StatusCode::SWITCHING_PROTOCOLS {
                response.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(WS_PROTOCOL));
            }
            response
        }
        Err(e) => {
            tracing::warn!("rpc service failed: {e}");
            error_response(StatusCode::INTERNAL_SERVER_ERROR, "the RPC service failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Allowlist {
        Allowlist {
            port: 4000,
            bind: IpAddr::from([127, 0, 0, 1]),
            hosts: vec!["pryx.home".into()],
            public_hosts: SharedHosts::new(std::sync::RwLock::new(vec!["hooks.example.com".into()])),
            origins: vec!["https://app.example".into()],
        }
    }

    #[test]
    fn loopback_hosts_pass_and_rebinding_names_do_not() {
        let a = allow();
        for ok in ["127.0.0.1:4000", "localhost:4000", "LOCALHOST", "[::1]:4000", "127.0.0.2", "pryx.home:4000"] {
            assert!(a.host_allowed(ok), "{ok}");
        }
        for bad in ["evil.example:4000", "", "192.168.1.5:4000", "localhost.evil.example"] {
            assert!(!a.host_allowed(bad), "{bad}");
        }
        // A public address set from the Connections screen counts at once, and stops
        // counting when it is removed.
        assert!(a.host_allowed("hooks.example.com"));
        a.public_hosts.write().unwrap().clear();
        assert!(!a.host_allowed("hooks.example.com"));
    }

    #[test]
    fn only_own_and_configured_origins_pass() {
        let a = allow();
        assert!(a.origin_allowed("http://127.0.0.1:4000"));
        assert!(a.origin_allowed("http://localhost:4000"));
        assert!(a.origin_allowed("https://app.example"));
        for bad in ["http://evil.example", "http://127.0.0.1:4001", "null", "https://127.0.0.1:4000", "file://"] {
            assert!(!a.origin_allowed(bad), "{bad}");
        }
    }

    #[test]
    fn token_is_accepted_from_header_protocol_or_query() {
        let token = Token::new("abc123".into());
        let mut headers = HeaderMap::new();
        assert!(!presents_token(&token, &headers, None));
        assert!(presents_token(&token, &headers, Some("x=1&token=abc123")));
        assert!(!presents_token(&token, &headers, Some("token=abc124")));
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("pryx, pryx.token.abc123"));
        assert!(presents_token(&token, &headers, None));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc123"));
        assert!(presents_token(&token, &headers, None));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer abc12"));
        assert!(!presents_token(&token, &headers, None));
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert!(!format!("{:?}", Token::new("s3cret".into())).contains("s3cret"));
    }
}
