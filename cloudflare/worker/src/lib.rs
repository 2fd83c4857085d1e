//! The Worker: routes, settings and the one outbound fetch per request.
//!
//! Everything that decides something lives in `pryx-control`; this file only moves bytes
//! between Cloudflare's types and that crate's. It binds nothing stateful (no KV, D1, R2,
//! Durable Objects or queues) and logs no request or response body: the only log lines are
//! a provider's or backend's status code when it fails.
//!
//! Settings (see `wrangler.toml` and the README): `GITHUB_CLIENT_ID`, `GOOGLE_CLIENT_ID`,
//! `*_DEVICE_URL` / `*_TOKEN_URL` (tests point them at local servers), `OTLP_FORWARD_URL`,
//! `OTLP_FORWARD_HEADER`, `OTLP_ALLOW_CONTENT`; secrets `GOOGLE_CLIENT_SECRET`,
//! `GITHUB_CLIENT_SECRET` (optional), `INGEST_TOKEN_KEY`, `OTLP_FORWARD_AUTH`.
#![cfg(target_arch = "wasm32")]

use pryx_control::device::{self, Provider, ProviderConfig, Step};
use pryx_control::http::{check, Head, Refusal};
use pryx_control::otlp::{self, Encoding, Policy};
use pryx_control::{ingest_token, Reply};
use worker::js_sys::Uint8Array;
use worker::{
    console_error, event, Context, Date, Env, Fetch, Headers, Method, Request, RequestInit, Response, Result,
    RouteContext, Router,
};

#[event(fetch)]
async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    Router::new()
        .get("/healthz", |_, _| Response::ok("ok"))
        .on_async("/auth/:provider/device", |req, ctx| auth(req, ctx, Step::Device))
        .on_async("/auth/:provider/token", |req, ctx| auth(req, ctx, Step::Token))
        .on_async("/v1/traces", traces)
        .run(req, env)
        .await
}

/// A var or a secret (both are strings to the Worker); empty counts as unset.
fn setting(env: &Env, name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.to_string())
        .or_else(|_| env.secret(name).map(|s| s.to_string()))
        .ok()
        .filter(|v| !v.is_empty())
}

fn provider_config(env: &Env, provider: Provider) -> ProviderConfig {
    let prefix = provider.name().to_ascii_uppercase();
    let get = |suffix: &str| setting(env, &format!("{prefix}_{suffix}"));
    ProviderConfig {
        device_url: get("DEVICE_URL").unwrap_or_else(|| provider.default_device_url().into()),
        token_url: get("TOKEN_URL").unwrap_or_else(|| provider.default_token_url().into()),
        client_id: get("CLIENT_ID").unwrap_or_default(),
        client_secret: get("CLIENT_SECRET"),
    }
}

fn now_secs() -> u64 {
    Date::now().as_millis() / 1000
}

fn head<'a>(req: &Request, method: &'a str, origin: &'a Option<String>, content_type: &'a Option<String>) -> Head<'a> {
    Head {
        method,
        origin: origin.as_deref(),
        content_type: content_type.as_deref(),
        content_length: req.headers().get("content-length").ok().flatten().and_then(|v| v.parse().ok()),
    }
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn respond(reply: Reply) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", reply.content_type)?;
    for (name, value) in &reply.headers {
        headers.set(name, value)?;
    }
    Ok(Response::from_bytes(reply.body)?.with_status(reply.status).with_headers(headers))
}

fn refused(refusal: Refusal, reply: Reply) -> Result<Response> {
    let reply = if refusal == Refusal::Method { reply.with_header("allow", "POST") } else { reply };
    respond(reply)
}

/// POSTs `body` to `url`; the answer's status, content type and body.
async fn post(url: &str, headers: Headers, body: Vec<u8>) -> Result<(u16, Option<String>, Vec<u8>)> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_headers(headers).with_body(Some(Uint8Array::from(body.as_slice()).into()));
    let mut response = Fetch::Request(Request::new_with_init(url, &init)?).send().await?;
    let content_type = response.headers().get("content-type")?;
    Ok((response.status_code(), content_type, response.bytes().await?))
}

async fn auth(mut req: Request, ctx: RouteContext<()>, step: Step) -> Result<Response> {
    let Some(provider) = ctx.param("provider").and_then(|p| Provider::from_path(p)) else {
        return respond(device::error_reply(404, "invalid_request", "unknown provider; use github or google"));
    };
    let method = req.method().to_string();
    let (origin, content_type) = (header(&req, "origin"), header(&req, "content-type"));
    if let Err(refusal) = check(&head(&req, &method, &origin, &content_type), device::MAX_BODY, device::CONTENT_TYPES) {
        let reply = device::error_reply(refusal.status(), "invalid_request", &refusal.to_string());
        return refused(refusal, reply);
    }
    let body = req.bytes().await?;
    let params = match device::client_params(content_type.as_deref(), &body) {
        Ok(params) => params,
        Err(reply) => return respond(reply),
    };
    let config = provider_config(&ctx.env, provider);
    let upstream = match step {
        Step::Device => device::device_request(provider, &config, &params),
        Step::Token => device::token_request(provider, &config, &params),
    };
    let upstream = match upstream {
        Ok(upstream) => upstream,
        Err(reply) => return respond(reply),
    };
    let headers = Headers::new();
    headers.set("content-type", "application/x-www-form-urlencoded")?;
    headers.set("accept", "application/json")?;
    headers.set("user-agent", "pryx-control")?;
    let (status, answer_type, answer) = match post(&upstream.url, headers, upstream.form.into_bytes()).await {
        Ok(answer) => answer,
        Err(_) => {
            console_error!("{} {:?}: the provider could not be reached", provider.name(), step);
            return respond(device::error_reply(502, "temporarily_unavailable", "the provider could not be reached"));
        }
    };
    if status >= 500 {
        console_error!("{} {:?}: the provider answered {status}", provider.name(), step);
    }
    let mut reply = device::translate(step, status, answer_type.as_deref(), &answer);
    if step == Step::Token && reply.status == 200 {
        let key = setting(&ctx.env, "INGEST_TOKEN_KEY");
        if let (Some(key), Some(install_id)) = (key, params.get("install_id")) {
            if let Ok((token, expires_at)) = ingest_token::mint(key.as_bytes(), install_id, now_secs()) {
                device::add_ingest_token(&mut reply, &token, expires_at);
            }
        }
    }
    respond(reply)
}

async fn traces(mut req: Request, ctx: RouteContext<()>) -> Result<Response> {
    let method = req.method().to_string();
    let (origin, content_type) = (header(&req, "origin"), header(&req, "content-type"));
    // Errors are answered in the request's encoding; JSON when it named none we know.
    let encoding = Encoding::from_content_type(content_type.as_deref()).unwrap_or(Encoding::Json);
    if let Err(refusal) = check(&head(&req, &method, &origin, &content_type), otlp::MAX_BODY, otlp::CONTENT_TYPES) {
        let reply = otlp::error_reply(encoding, refusal.status(), &refusal.to_string());
        return refused(refusal, reply);
    }
    let Some(key) = setting(&ctx.env, "INGEST_TOKEN_KEY") else {
        return respond(otlp::error_reply(encoding, 503, "this control plane does not accept telemetry"));
    };
    let token = header(&req, "authorization").unwrap_or_default();
    let token = token.strip_prefix("Bearer ").or_else(|| token.strip_prefix("bearer ")).unwrap_or_default();
    if let Err(error) = ingest_token::verify(key.as_bytes(), token.trim(), now_secs()) {
        return respond(otlp::error_reply(encoding, 401, &error.to_string()));
    }
    let Some(forward_url) = setting(&ctx.env, "OTLP_FORWARD_URL") else {
        return respond(otlp::error_reply(encoding, 503, "this control plane has no telemetry backend configured"));
    };
    let body = req.bytes().await?;
    let policy = Policy { allow_content: setting(&ctx.env, "OTLP_ALLOW_CONTENT").as_deref() == Some("true") };
    let (forward, outcome) = match otlp::ingest(encoding, header(&req, "content-encoding").as_deref(), &body, &policy) {
        Ok(done) => done,
        Err(error) => return respond(otlp::error_reply(encoding, error.status(), &error.to_string())),
    };
    let headers = Headers::new();
    headers.set("content-type", "application/x-protobuf")?;
    if let Some(auth) = setting(&ctx.env, "OTLP_FORWARD_AUTH") {
        let name = setting(&ctx.env, "OTLP_FORWARD_HEADER").unwrap_or_else(|| "authorization".into());
        headers.set(&name, &auth)?;
    }
    let status = match post(&forward_url, headers, forward).await {
        Ok((status, _, _)) => status,
        Err(_) => 0,
    };
    match status {
        200..=299 => respond(otlp::success_reply(encoding, &outcome)),
        // Retryable for the exporter, as the OTLP specification lists them.
        0 | 429 | 502..=504 => {
            console_error!("telemetry backend answered {status}");
            respond(
                otlp::error_reply(encoding, 503, "the telemetry backend is unavailable; retry later")
                    .with_header("retry-after", "30"),
            )
        }
        _ => {
            console_error!("telemetry backend answered {status}");
            respond(otlp::error_reply(encoding, 502, &format!("the telemetry backend refused the spans ({status})")))
        }
    }
}
