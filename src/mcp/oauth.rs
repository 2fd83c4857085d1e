//! OAuth sign-in for streamable-HTTP MCP servers, on the SDK's OAuth state machine.
//!
//! A server that answers 401 is shown as `needs_auth`. Signing in (`mcp.login`, `pryx mcp
//! login`) discovers the authorization server (protected-resource and authorization-server
//! metadata), registers Pryx (pre-registered client, or dynamic registration), and returns
//! an authorization URL with PKCE for the user's browser. The browser comes back to
//! `http://127.0.0.1:PORT/oauth/callback` on Pryx's own port (RFC 8252 loopback redirect);
//! the `state` parameter must match a login started here in the last ten minutes, once.
//! Tokens are kept in the keychain (`mcp/oauth/SERVER`, never in the config file or the
//! log) and refreshed by the SDK when the server rejects them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pryx_api::McpServerConfig;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationRequest, CredentialStore, OAuthState, StoredCredentials,
};

use crate::secrets::{SecretName, SecretString, SecretsHandle};

/// How long a started sign-in waits for the browser to come back.
const LOGIN_LIFETIME: Duration = Duration::from_secs(600);

/// Where servers' OAuth credentials are kept.
#[derive(Clone)]
pub enum CredentialsAt {
    /// The OS keychain (what Pryx uses).
    Keychain(SecretsHandle),
    /// Memory only (the conformance probe, which must not touch the user's keychain).
    Memory(Arc<Mutex<HashMap<String, String>>>),
}

impl CredentialsAt {
    pub fn memory() -> Self {
        CredentialsAt::Memory(Arc::default())
    }

    /// The store for one server's credentials.
    pub fn for_server(&self, server: &str) -> ServerCredentials {
        ServerCredentials { key: format!("mcp/oauth/{server}"), at: self.clone() }
    }
}

/// One server's credentials as the SDK's [`CredentialStore`] (JSON under one secret name).
#[derive(Clone)]
pub struct ServerCredentials {
    key: String,
    at: CredentialsAt,
}

fn store_error(e: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(e.to_string())
}

impl ServerCredentials {
    async fn read(&self) -> Result<Option<String>, AuthError> {
        match &self.at {
            CredentialsAt::Memory(map) => Ok(map.lock().unwrap_or_else(|p| p.into_inner()).get(&self.key).cloned()),
            CredentialsAt::Keychain(secrets) => {
                let name = SecretName::parse(&self.key).map_err(store_error)?;
                match secrets.run(move |s| s.get(&name)).await {
                    Ok(value) => Ok(Some(value.expose().to_owned())),
                    Err(crate::secrets::SecretError::Missing(_)) => Ok(None),
                    Err(e) => Err(store_error(e)),
                }
            }
        }
    }

    async fn write(&self, value: Option<String>) -> Result<(), AuthError> {
        match &self.at {
            CredentialsAt::Memory(map) => {
                let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
                match value {
                    Some(value) => map.insert(self.key.clone(), value),
                    None => map.remove(&self.key),
                };
                Ok(())
            }
            CredentialsAt::Keychain(secrets) => {
                let name = SecretName::parse(&self.key).map_err(store_error)?;
                match value {
                    Some(value) => secrets.run(move |s| s.set(&name, &SecretString::new(value))).await,
                    None => match secrets.run(move |s| s.delete(&name)).await {
                        Err(crate::secrets::SecretError::Missing(_)) => Ok(()),
                        other => other,
                    },
                }
                .map_err(store_error)
            }
        }
    }

    /// Forget the server's tokens (sign out).
    pub async fn forget(&self) -> Result<(), AuthError> {
        self.write(None).await
    }
}

#[async_trait]
impl CredentialStore for ServerCredentials {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        match self.read().await? {
            Some(json) => Ok(Some(serde_json::from_str(&json).map_err(store_error)?)),
            None => Ok(None),
        }
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        self.write(Some(serde_json::to_string(&credentials).map_err(store_error)?)).await
    }

    async fn clear(&self) -> Result<(), AuthError> {
        self.write(None).await
    }
}

/// A signed-in manager for `url` if tokens are stored for it, else `None`.
pub async fn stored_authorization(
    url: &str,
    credentials: ServerCredentials,
) -> Result<Option<AuthorizationManager>, AuthError> {
    if credentials.read().await?.is_none() {
        return Ok(None);
    }
    let mut manager = AuthorizationManager::new(url).await?;
    manager.set_credential_store(credentials);
    Ok(manager.initialize_from_store().await?.then_some(manager))
}

/// Sign-ins waiting for the browser, by their `state` parameter.
#[derive(Default)]
pub struct PendingLogins {
    by_state: Mutex<HashMap<String, PendingLogin>>,
}

struct PendingLogin {
    server: String,
    oauth: OAuthState,
    started: Instant,
}

/// Why signing in failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("this sign-in link is unknown or expired; start again with `pryx mcp login SERVER`")]
    UnknownState,
    #[error("the authorization server said no: {0}")]
    Denied(String),
    #[error("{0}")]
    Failed(String),
}

impl PendingLogins {
    /// Discover, register and build the authorization URL for `server`.
    pub async fn begin(
        &self,
        server: &str,
        config: &McpServerConfig,
        credentials: ServerCredentials,
        redirect_uri: &str,
        challenge: Option<String>,
        secrets: &SecretsHandle,
    ) -> Result<String, LoginError> {
        let failed = |e: AuthError| LoginError::Failed(e.to_string());
        let url = config.url.as_deref().ok_or_else(|| LoginError::Failed("only HTTP servers sign in".into()))?;
        let mut manager = AuthorizationManager::new(url).await.map_err(failed)?;
        manager.set_credential_store(credentials);
        let mut request = AuthorizationRequest::new(redirect_uri).with_client_name("Pryx");
        if !config.oauth_scopes.is_empty() {
            request = request.with_scopes(config.oauth_scopes.iter().cloned());
        }
        if let Some(client_id) = &config.oauth_client_id {
            request = request.with_preregistered_client(client_id.clone());
            if let Some(secret) = &config.oauth_client_secret {
                let secret = secret.clone();
                let value = secrets
                    .run(move |s| s.resolve(&secret))
                    .await
                    .map_err(|e| LoginError::Failed(format!("oauth_client_secret: {e}")))?;
                request = request.with_client_secret(value.expose().to_owned());
            }
        }
        if let Some(metadata_url) = &config.oauth_client_metadata_url {
            request = request.with_client_metadata_url(metadata_url.clone());
        }
        if let Some(challenge) = challenge {
            request = request.with_challenge(challenge);
        }
        let mut oauth = OAuthState::Unauthorized(manager);
        oauth.start_authorization(request).await.map_err(failed)?;
        let authorization_url = oauth.get_authorization_url().await.map_err(failed)?;
        let state = url::Url::parse(&authorization_url)
            .ok()
            .and_then(|u| u.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()))
            .ok_or_else(|| LoginError::Failed("the authorization URL carries no state".into()))?;
        let mut pending = self.by_state.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, login| login.started.elapsed() < LOGIN_LIFETIME && login.server != server);
        pending.insert(state, PendingLogin { server: server.to_owned(), oauth, started: Instant::now() });
        Ok(authorization_url)
    }

    /// Finish the sign-in the browser came back for; returns the server's name. The tokens
    /// are in the server's credential store afterwards.
    pub async fn complete(&self, query: &HashMap<String, String>) -> Result<String, LoginError> {
        let state = query.get("state").ok_or(LoginError::UnknownState)?;
        let login = {
            let mut pending = self.by_state.lock().unwrap_or_else(|p| p.into_inner());
            pending.remove(state).filter(|login| login.started.elapsed() < LOGIN_LIFETIME)
        };
        let Some(PendingLogin { server, mut oauth, .. }) = login else {
            return Err(LoginError::UnknownState);
        };
        if let Some(error) = query.get("error") {
            let detail = query.get("error_description").map(|d| format!(": {d}")).unwrap_or_default();
            return Err(LoginError::Denied(format!("{error}{detail}")));
        }
        let code = query.get("code").ok_or_else(|| LoginError::Denied("no code in the answer".into()))?;
        match query.get("iss") {
            Some(issuer) => oauth.handle_callback_with_issuer(code, state, Some(issuer)).await,
            None => oauth.handle_callback(code, state).await,
        }
        .map_err(|e| LoginError::Failed(e.to_string()))?;
        Ok(server)
    }
}

/// `GET /oauth/callback`: where the browser lands after signing in. Answers a small page
/// saying how it went; the query (with the one-time code) is never logged.
pub fn callback_router(manager: std::sync::Weak<super::McpManager>) -> axum::Router {
    use axum::extract::Query;
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let handler = move |Query(query): Query<HashMap<String, String>>| {
        let manager = manager.clone();
        async move {
            let outcome = match manager.upgrade() {
                Some(manager) => manager.complete_login(&query).await.map_err(|e| e.to_string()),
                None => Err("Pryx is restarting; sign in again in a moment".to_owned()),
            };
            let (status, title, text) = match outcome {
                Ok(server) => {
                    (StatusCode::OK, "Signed in", format!("Pryx is now signed in to {server}. You can close this tab."))
                }
                Err(why) => (StatusCode::BAD_REQUEST, "Sign-in failed", why),
            };
            let page = format!(
                "<!doctype html><meta charset=utf-8><title>{title}</title>\
                 <body style=\"font:16px system-ui;margin:4em auto;max-width:32em\"><h1>{title}</h1><p>{}</p>",
                crate::html::escape(&text)
            );
            let headers = [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, "default-src 'none'; style-src 'unsafe-inline'"),
                // The URL holds the one-time code: keep it out of any Referer.
                (header::REFERRER_POLICY, "no-referrer"),
                (header::CACHE_CONTROL, "no-store"),
            ];
            (status, headers, page).into_response()
        }
    };
    axum::Router::new().route("/oauth/callback", axum::routing::get(handler))
}
