//! The page the window (and a browser) shows at `/`: embedded static files, served without
//! the token (they hold nothing private; the page authenticates its WebSocket itself) under
//! a strict Content-Security-Policy.
//!
//! This is the interim page: sessions, a streaming chat, approvals and the views deep links
//! open. The Leptos Control Center (issue 9) replaces these files with its build.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Every path this module serves (the server lets them through without the token).
pub const PATHS: &[&str] = &["/", "/index.html", "/app.js", "/app.css", "/icon.svg"];

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

fn asset(path: &str) -> Option<Asset> {
    let (body, content_type): (&'static [u8], _) = match path {
        "/" | "/index.html" => (include_bytes!("../assets/ui/index.html"), "text/html; charset=utf-8"),
        "/app.js" => (include_bytes!("../assets/ui/app.js"), "text/javascript; charset=utf-8"),
        "/app.css" => (include_bytes!("../assets/ui/app.css"), "text/css; charset=utf-8"),
        "/icon.svg" => (include_bytes!("../assets/ui/icon.svg"), "image/svg+xml"),
        _ => return None,
    };
    Some(Asset { body, content_type })
}

/// The routes for [`PATHS`].
pub fn router() -> Router {
    PATHS.iter().fold(Router::new(), |router, path| router.route(path, get(serve)))
}

async fn serve(uri: axum::http::Uri, headers: HeaderMap) -> Response {
    let Some(asset) = asset(uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The guard already checked Host; the page may only talk to the agent it came from.
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let csp = content_security_policy(host);
    let mut response = asset.body.into_response();
    let out = response.headers_mut();
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    // File names are not hashed yet, so every load revalidates.
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    out.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        out.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// No inline script or style, nothing from elsewhere, no framing, no forms posting away;
/// the WebSocket only to this agent.
pub fn content_security_policy(host: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' ws://{host}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_has_an_asset() {
        for path in PATHS {
            assert!(asset(path).is_some_and(|a| !a.body.is_empty()), "{path}");
        }
        assert!(asset("/../Cargo.toml").is_none());
    }

    #[test]
    fn the_policy_allows_no_inline_script_and_only_this_agent() {
        let csp = content_security_policy("127.0.0.1:4000");
        assert!(csp.contains("script-src 'self';"));
        assert!(!csp.contains("unsafe-inline"));
        assert!(csp.contains("connect-src 'self' ws://127.0.0.1:4000;"));
    }
}
