//! The device authorization grant (RFC 8628), passed through to GitHub or Google.
//!
//! A client asks `POST /auth/{provider}/device` for a code, shows it to its user, then
//! polls `POST /auth/{provider}/token`. The Worker adds what only it holds (the client id,
//! and Google's client secret, which must never ship in a binary), forwards a whitelisted
//! set of parameters, and answers RFC 8628 / RFC 6749 JSON whatever the provider answered:
//! GitHub answers form-encoded unless asked for JSON and reports errors with status 200;
//! Google calls the link `verification_url`. Error codes (`authorization_pending`,
//! `slow_down` with its larger `interval`, `expired_token`, `access_denied`) pass unchanged.
//! Refresh tokens go through the token endpoint too.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::http::{media_type, Reply};

/// The device-code grant type from RFC 8628 section 3.4.
pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// Client requests are a handful of short parameters.
pub const MAX_BODY: usize = 4 * 1024;
pub const CONTENT_TYPES: &[&str] = &["application/x-www-form-urlencoded", "application/json"];

/// The providers the Worker logs in to; anything else is a 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    GitHub,
    Google,
}

impl Provider {
    pub fn from_path(segment: &str) -> Option<Provider> {
        match segment {
            "github" => Some(Provider::GitHub),
            "google" => Some(Provider::Google),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Google => "google",
        }
    }

    /// The provider's public endpoints; configuration may point them elsewhere (tests do).
    pub fn default_device_url(self) -> &'static str {
        match self {
            Provider::GitHub => "https://github.com/login/device/code",
            Provider::Google => "https://oauth2.googleapis.com/device/code",
        }
    }

    pub fn default_token_url(self) -> &'static str {
        match self {
            Provider::GitHub => "https://github.com/login/oauth/access_token",
            Provider::Google => "https://oauth2.googleapis.com/token",
        }
    }

    /// What a login asks for when the client names no scope: GitHub Models needs no scope
    /// for public use; Google's device flow only allows identity scopes.
    pub fn default_scope(self) -> &'static str {
        match self {
            Provider::GitHub => "read:user",
            Provider::Google => "openid email profile",
        }
    }
}

/// One provider's settings, from the Worker's vars and secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    pub device_url: String,
    pub token_url: String,
    pub client_id: String,
    /// Google's device flow needs it; GitHub's does not.
    pub client_secret: Option<String>,
}

/// The one outbound request the Worker makes for a client request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub url: String,
    /// `application/x-www-form-urlencoded`, as RFC 8628 prescribes.
    pub form: String,
}

/// Which endpoint is being answered, so the success shape can be checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Device,
    Token,
}

/// An RFC 6749 error answer: `{"error": ..., "error_description": ...}`.
pub fn error_reply(status: u16, error: &str, description: &str) -> Reply {
    Reply::json(status, &json!({ "error": error, "error_description": description }))
}

/// The client's parameters, from a form or a JSON object of strings (numbers allowed).
pub fn client_params(content_type: Option<&str>, body: &[u8]) -> Result<BTreeMap<String, String>, Reply> {
    if body.len() > MAX_BODY {
        return Err(error_reply(413, "invalid_request", "the request body is too large"));
    }
    let bad = |why: &str| error_reply(400, "invalid_request", why);
    if media_type(content_type) == "application/json" {
        let value: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not valid JSON"))?;
        let Value::Object(object) = value else {
            return Err(bad("the body must be a JSON object"));
        };
        object
            .into_iter()
            .map(|(key, value)| match value {
                Value::String(s) => Ok((key, s)),
                Value::Number(n) => Ok((key, n.to_string())),
                _ => Err(bad("parameters must be strings")),
            })
            .collect()
    } else {
        serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
            .map(|pairs| pairs.into_iter().collect())
            .map_err(|_| bad("the body is not a valid form"))
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// What the Worker adds to both requests: its client id, and its secret when it has one
/// (RFC 8628 section 3.1: a confidential client authenticates at both endpoints).
fn credentials(provider: Provider, config: &ProviderConfig) -> Result<Vec<(&'static str, &str)>, Reply> {
    if config.client_id.is_empty() {
        return Err(not_configured(provider));
    }
    let mut pairs = vec![("client_id", config.client_id.as_str())];
    if let Some(secret) = &config.client_secret {
        pairs.push(("client_secret", secret.as_str()));
    }
    Ok(pairs)
}

/// The device-authorization request to forward: the Worker's credentials and the scope.
pub fn device_request(
    provider: Provider,
    config: &ProviderConfig,
    params: &BTreeMap<String, String>,
) -> Result<Upstream, Reply> {
    let mut pairs = credentials(provider, config)?;
    let scope = params.get("scope").map(String::as_str).unwrap_or(provider.default_scope());
    if scope.len() > 512 || scope.chars().any(|c| c.is_control()) {
        return Err(error_reply(400, "invalid_scope", "the scope is not acceptable"));
    }
    pairs.push(("scope", scope));
    Ok(Upstream { url: config.device_url.clone(), form: form(&pairs) })
}

/// The token request to forward: a device-code poll or a refresh, never anything else.
pub fn token_request(
    provider: Provider,
    config: &ProviderConfig,
    params: &BTreeMap<String, String>,
) -> Result<Upstream, Reply> {
    let mut pairs = credentials(provider, config)?;
    let grant = params.get("grant_type").map(String::as_str).unwrap_or(DEVICE_CODE_GRANT);
    let (grant, field) = match grant {
        DEVICE_CODE_GRANT => (DEVICE_CODE_GRANT, "device_code"),
        "refresh_token" => ("refresh_token", "refresh_token"),
        _ => {
            return Err(error_reply(
                400,
                "unsupported_grant_type",
                "only the device_code and refresh_token grants are accepted",
            ))
        }
    };
    let Some(value) = params.get(field).filter(|v| !v.is_empty() && v.len() <= 2048) else {
        return Err(error_reply(400, "invalid_request", &format!("{field} is required")));
    };
    pairs.extend([("grant_type", grant), (field, value.as_str())]);
    Ok(Upstream { url: config.token_url.clone(), form: form(&pairs) })
}

fn not_configured(provider: Provider) -> Reply {
    error_reply(
        503,
        "temporarily_unavailable",
        &format!("this control plane has no {} client configured", provider.name()),
    )
}

/// The provider's answer, parsed whatever its encoding.
fn parse_answer(content_type: Option<&str>, body: &[u8]) -> Option<Map<String, Value>> {
    let looks_json = media_type(content_type).ends_with("json") || body.first() == Some(&b'{');
    if looks_json {
        match serde_json::from_slice(body).ok()? {
            Value::Object(map) => Some(map),
            _ => None,
        }
    } else {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
        (!pairs.is_empty()).then(|| pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
    }
}

/// A number that a form-encoded answer sent as text.
fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(value: Option<&Value>) -> Option<&str> {
    value?.as_str().filter(|s| !s.is_empty())
}

fn copy_text(from: &Map<String, Value>, to: &mut Map<String, Value>, key: &str) {
    if let Some(value) = text(from.get(key)) {
        to.insert(key.to_string(), Value::String(value.to_string()));
    }
}

fn copy_number(from: &Map<String, Value>, to: &mut Map<String, Value>, key: &str) {
    if let Some(value) = number(from.get(key)) {
        to.insert(key.to_string(), Value::from(value));
    }
}

/// Translates the provider's answer into RFC 8628 / RFC 6749 JSON.
pub fn translate(step: Step, status: u16, content_type: Option<&str>, body: &[u8]) -> Reply {
    let Some(answer) = parse_answer(content_type, body) else {
        return error_reply(
            502,
            "temporarily_unavailable",
            &format!("the provider answered {status} with a body that is neither JSON nor a form"),
        );
    };
    if let Some(error) = text(answer.get("error")) {
        let mut out = Map::new();
        out.insert("error".into(), Value::String(error.to_string()));
        copy_text(&answer, &mut out, "error_description");
        copy_text(&answer, &mut out, "error_uri");
        // slow_down carries the interval the client must now use (GitHub sends it).
        copy_number(&answer, &mut out, "interval");
        let status = match error {
            "invalid_client" => 401,
            _ if status >= 500 => 502,
            _ => 400,
        };
        return Reply::json(status, &Value::Object(out));
    }
    if status >= 400 {
        return error_reply(
            502,
            "temporarily_unavailable",
            &format!("the provider answered {status} without an error code"),
        );
    }
    match step {
        Step::Device => device_success(&answer),
        Step::Token => token_success(&answer),
    }
}

fn device_success(answer: &Map<String, Value>) -> Reply {
    let uri = text(answer.get("verification_uri")).or(text(answer.get("verification_url")));
    let (Some(device_code), Some(user_code), Some(uri), Some(expires_in)) =
        (text(answer.get("device_code")), text(answer.get("user_code")), uri, number(answer.get("expires_in")))
    else {
        return error_reply(502, "temporarily_unavailable", "the provider's device answer is incomplete");
    };
    let mut out = Map::new();
    out.insert("device_code".into(), device_code.into());
    out.insert("user_code".into(), user_code.into());
    out.insert("verification_uri".into(), uri.into());
    copy_text(answer, &mut out, "verification_uri_complete");
    out.insert("expires_in".into(), expires_in.into());
    // RFC 8628 section 3.2: the client waits 5 seconds when no interval is given.
    out.insert("interval".into(), number(answer.get("interval")).unwrap_or(5).into());
    Reply::json(200, &Value::Object(out))
}

fn token_success(answer: &Map<String, Value>) -> Reply {
    let Some(access_token) = text(answer.get("access_token")) else {
        return error_reply(502, "temporarily_unavailable", "the provider's token answer has no access token");
    };
    let mut out = Map::new();
    out.insert("access_token".into(), access_token.into());
    // GitHub says "bearer"; RFC 6750 clients compare case-insensitively.
    let token_type = text(answer.get("token_type")).unwrap_or("Bearer");
    out.insert("token_type".into(), token_type.into());
    copy_number(answer, &mut out, "expires_in");
    copy_text(answer, &mut out, "refresh_token");
    copy_number(answer, &mut out, "refresh_token_expires_in");
    copy_text(answer, &mut out, "scope");
    copy_text(answer, &mut out, "id_token");
    Reply::json(200, &Value::Object(out)).with_header("pragma", "no-cache")
}

/// Adds an ingest token to a successful token answer (see [`crate::ingest_token`]).
pub fn add_ingest_token(reply: &mut Reply, token: &str, expires_at: u64) {
    if reply.status != 200 {
        return;
    }
    if let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(&reply.body) {
        map.insert("pryx_ingest_token".into(), token.into());
        map.insert("pryx_ingest_token_expires_at".into(), expires_at.into());
        reply.body = serde_json::to_vec(&map).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github() -> ProviderConfig {
        ProviderConfig {
            device_url: "http://127.0.0.1:9/device".into(),
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "Iv1.pryx".into(),
            client_secret: None,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn body(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    #[test]
    fn the_device_request_adds_the_client_id_and_a_default_scope() {
        let up = device_request(Provider::GitHub, &github(), &params(&[])).unwrap();
        assert_eq!(up.url, "http://127.0.0.1:9/device");
        assert_eq!(up.form, "client_id=Iv1.pryx&scope=read%3Auser");
        let up =
            device_request(Provider::GitHub, &github(), &params(&[("scope", "repo"), ("client_id", "evil")])).unwrap();
        assert_eq!(up.form, "client_id=Iv1.pryx&scope=repo", "the client cannot choose another client id");
    }

    #[test]
    fn the_token_request_forwards_only_the_grant_and_adds_the_secret() {
        let google = ProviderConfig { client_secret: Some("s3cret".into()), ..github() };
        let up = token_request(
            Provider::Google,
            &google,
            &params(&[("device_code", "dc"), ("install_id", "install-0001"), ("redirect_uri", "http://evil")]),
        )
        .unwrap();
        assert_eq!(
            up.form,
            "client_id=Iv1.pryx&client_secret=s3cret&grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&device_code=dc"
        );
        let refresh = token_request(
            Provider::GitHub,
            &github(),
            &params(&[("grant_type", "refresh_token"), ("refresh_token", "r1")]),
        )
        .unwrap();
        assert_eq!(refresh.form, "client_id=Iv1.pryx&grant_type=refresh_token&refresh_token=r1");
    }

    #[test]
    fn bad_token_requests_are_refused_before_the_provider() {
        let no_code = token_request(Provider::GitHub, &github(), &params(&[])).unwrap_err();
        assert_eq!((no_code.status, body(&no_code)["error"].as_str()), (400, Some("invalid_request")));
        let password =
            token_request(Provider::GitHub, &github(), &params(&[("grant_type", "password"), ("device_code", "x")]))
                .unwrap_err();
        assert_eq!(body(&password)["error"], "unsupported_grant_type");
        let unconfigured = ProviderConfig { client_id: String::new(), ..github() };
        let reply = device_request(Provider::Google, &unconfigured, &params(&[])).unwrap_err();
        assert_eq!(reply.status, 503);
        assert!(reply.text().contains("no google client"));
    }

    #[test]
    fn client_parameters_come_as_a_form_or_json() {
        let form = client_params(Some("application/x-www-form-urlencoded"), b"device_code=a%2Bb&install_id=x").unwrap();
        assert_eq!(form["device_code"], "a+b");
        let json = client_params(Some("application/json; charset=utf-8"), br#"{"device_code":"abc","n":3}"#).unwrap();
        assert_eq!((json["device_code"].as_str(), json["n"].as_str()), ("abc", "3"));
        for (ct, bad) in [
            ("application/json", &b"[1,2]"[..]),
            ("application/json", b"{\"a\":{\"b\":1}}"),
            ("application/json", b"{not json"),
        ] {
            let reply = client_params(Some(ct), bad).unwrap_err();
            assert_eq!((reply.status, body(&reply)["error"].as_str()), (400, Some("invalid_request")));
        }
        let big = vec![b'a'; MAX_BODY + 1];
        assert_eq!(client_params(None, &big).unwrap_err().status, 413);
    }

    #[test]
    fn githubs_form_encoded_device_answer_becomes_rfc8628_json() {
        let answer = b"device_code=3584d83530557fdd1f46af8289938c8ef79f9dc5&expires_in=900&interval=5&user_code=WDJB-MJHT&verification_uri=https%3A%2F%2Fgithub.com%2Flogin%2Fdevice";
        let reply = translate(Step::Device, 200, Some("application/x-www-form-urlencoded"), answer);
        assert_eq!(reply.status, 200);
        assert_eq!(
            body(&reply),
            json!({"device_code": "3584d83530557fdd1f46af8289938c8ef79f9dc5", "user_code": "WDJB-MJHT",
                   "verification_uri": "https://github.com/login/device", "expires_in": 900, "interval": 5})
        );
    }

    #[test]
    fn googles_verification_url_is_renamed_and_a_missing_interval_defaults_to_five() {
        let answer = br#"{"device_code":"AH-1Ng","user_code":"GQVQ-JKEC","verification_url":"https://www.google.com/device","expires_in":1800}"#;
        let reply = translate(Step::Device, 200, Some("application/json"), answer);
        let value = body(&reply);
        assert_eq!(value["verification_uri"], "https://www.google.com/device");
        assert_eq!(value["interval"], 5);
        assert!(value.get("verification_url").is_none());
    }

    #[test]
    fn pending_slow_down_expired_and_denied_pass_through_as_400() {
        // GitHub reports errors with status 200, form-encoded unless asked for JSON.
        let pending = translate(Step::Token, 200, Some("application/x-www-form-urlencoded"),
            b"error=authorization_pending&error_description=The+authorization+request+is+still+pending.&error_uri=https%3A%2F%2Fdocs.github.com");
        assert_eq!(pending.status, 400);
        assert_eq!(body(&pending)["error"], "authorization_pending");
        assert_eq!(body(&pending)["error_description"], "The authorization request is still pending.");
        let slow = translate(
            Step::Token,
            200,
            Some("application/json"),
            br#"{"error":"slow_down","error_description":"Too many requests","interval":10}"#,
        );
        assert_eq!(
            (slow.status, body(&slow)["error"].as_str(), body(&slow)["interval"].as_u64()),
            (400, Some("slow_down"), Some(10))
        );
        for code in ["expired_token", "access_denied"] {
            let reply =
                translate(Step::Token, 428, Some("application/json"), format!(r#"{{"error":"{code}"}}"#).as_bytes());
            assert_eq!((reply.status, body(&reply)["error"].as_str()), (400, Some(code)));
        }
        let client = translate(Step::Token, 401, Some("application/json"), br#"{"error":"invalid_client"}"#);
        assert_eq!(client.status, 401);
    }

    #[test]
    fn a_token_answer_keeps_what_a_client_needs_and_nothing_else() {
        let answer = b"access_token=gho_16C7e42F292c6912E7710c838347Ae178B4a&scope=read%3Auser&token_type=bearer&expires_in=28800&refresh_token=ghr_1B4a&refresh_token_expires_in=15811200&extra=dropped";
        let reply = translate(Step::Token, 200, Some("application/x-www-form-urlencoded"), answer);
        assert_eq!(
            body(&reply),
            json!({"access_token": "gho_16C7e42F292c6912E7710c838347Ae178B4a", "token_type": "bearer", "expires_in": 28800,
                   "refresh_token": "ghr_1B4a", "refresh_token_expires_in": 15811200, "scope": "read:user"})
        );
        assert!(reply.headers.contains(&("cache-control", "no-store".into())));
    }

    #[test]
    fn provider_failures_become_a_retryable_error_without_echoing_the_body() {
        let html = translate(Step::Token, 503, Some("text/html"), b"<html>down, secret=abc</html>");
        assert_eq!(html.status, 502);
        assert_eq!(body(&html)["error"], "temporarily_unavailable");
        assert!(!html.text().contains("secret"));
        let incomplete = translate(Step::Device, 200, Some("application/json"), br#"{"user_code":"X"}"#);
        assert_eq!(incomplete.status, 502);
        let no_token = translate(Step::Token, 200, Some("application/json"), br#"{"token_type":"bearer"}"#);
        assert_eq!(no_token.status, 502);
    }

    #[test]
    fn an_ingest_token_joins_only_successful_answers() {
        let mut ok =
            translate(Step::Token, 200, Some("application/json"), br#"{"access_token":"t","token_type":"bearer"}"#);
        add_ingest_token(&mut ok, "pit1.x", 42);
        assert_eq!(body(&ok)["pryx_ingest_token"], "pit1.x");
        let mut pending = translate(Step::Token, 200, None, b"error=authorization_pending");
        add_ingest_token(&mut pending, "pit1.x", 42);
        assert!(body(&pending).get("pryx_ingest_token").is_none());
    }
}
