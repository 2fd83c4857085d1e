//! A login's tokens in the keychain, and keeping the access token fresh.
//!
//! `auth/<provider>` holds the access token alone (so `secret:auth/github` works anywhere a
//! secret does); `auth/<provider>/session` holds a small JSON record with the refresh token
//! and the expiry; `auth/ingest` the control plane's telemetry ingest token, as the
//! `Authorization` value an OTLP exporter sends.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::device::number;
use super::{form_body, http_client, AuthError, CloudConfig, Endpoints, Provider};
use crate::secrets::{SecretError, SecretName, SecretString, Secrets, SecretsHandle};

/// The keychain entry of the ingest token (`Bearer pit1…`).
pub const INGEST_SECRET: &str = "auth/ingest";
/// Refresh this long before the access token expires.
const REFRESH_AHEAD: Duration = Duration::from_secs(5 * 60);

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

fn token_name(provider: Provider) -> SecretName {
    // The names are fixed and valid.
    SecretName::parse(&format!("auth/{}", provider.id())).expect("a valid secret name")
}

fn session_name(provider: Provider) -> SecretName {
    SecretName::parse(&format!("auth/{}/session", provider.id())).expect("a valid secret name")
}

fn ingest_name() -> SecretName {
    SecretName::parse(INGEST_SECRET).expect("a valid secret name")
}

/// What refreshing needs, kept beside the access token.
#[derive(Serialize, Deserialize)]
struct Record {
    refresh_token: Option<String>,
    /// Sent with refreshes through the control plane, which then mints a new ingest token.
    #[serde(default)]
    install_id: Option<String>,
    /// Unix seconds.
    expires_at: Option<u64>,
    scope: Option<String>,
    logged_in_at: u64,
}

/// A provider's answer to a successful token request.
pub struct Session {
    pub provider: Provider,
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    /// Unix seconds; `None` for tokens that do not expire (GitHub OAuth apps).
    pub expires_at: Option<u64>,
    pub scope: Option<String>,
    ingest_token: Option<SecretString>,
    install_id: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("provider", &self.provider)
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .field("refreshable", &self.refresh_token.is_some())
            .field("has_ingest_token", &self.ingest_token.is_some())
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(super) fn from_token_answer(
        provider: Provider,
        answer: &serde_json::Map<String, Value>,
        via_control_plane: bool,
    ) -> Option<Session> {
        let text = |key: &str| answer.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        let access_token = text("access_token")?;
        Some(Session {
            provider,
            access_token: SecretString::new(access_token.to_owned()),
            refresh_token: text("refresh_token").map(|t| SecretString::new(t.to_owned())),
            expires_at: answer.get("expires_in").and_then(number).map(|secs| now_secs() + secs),
            scope: text("scope").map(str::to_owned),
            // Only the control plane mints ingest tokens; nobody else's field is trusted.
            ingest_token: text("pryx_ingest_token")
                .filter(|_| via_control_plane)
                .map(|t| SecretString::new(format!("Bearer {t}"))),
            install_id: None,
        })
    }

    /// The install id the control plane minted the ingest token for.
    pub(super) fn with_install_id(mut self, install_id: Option<String>) -> Session {
        self.install_id = install_id;
        self
    }

    /// Whether the control plane sent a telemetry ingest token.
    pub fn has_ingest_token(&self) -> bool {
        self.ingest_token.is_some()
    }

    /// Writes the session to the keychain (blocking).
    pub fn store(&self, secrets: &Secrets) -> Result<(), SecretError> {
        let record = Record {
            refresh_token: self.refresh_token.as_ref().map(|t| t.expose().to_owned()),
            install_id: self.install_id.clone(),
            expires_at: self.expires_at,
            scope: self.scope.clone(),
            logged_in_at: now_secs(),
        };
        let json = serde_json::to_string(&record).map_err(|e| SecretError::Keychain(e.to_string()))?;
        secrets.set(&token_name(self.provider), &self.access_token)?;
        secrets.set(&session_name(self.provider), &SecretString::new(json))?;
        if let Some(ingest) = &self.ingest_token {
            secrets.set(&ingest_name(), ingest)?;
        }
        Ok(())
    }
}

fn missing(error: &SecretError) -> bool {
    matches!(error, SecretError::Missing(_))
}

/// The providers with a stored login (blocking).
pub fn logged_in(secrets: &Secrets) -> Result<Vec<Provider>, SecretError> {
    let names = secrets.list()?;
    Ok(Provider::ALL.into_iter().filter(|p| names.contains(&token_name(*p))).collect())
}

/// Forgets a login; `false` when there was none (blocking). The ingest token goes with the
/// last login.
pub fn logout(secrets: &Secrets, provider: Provider) -> Result<bool, SecretError> {
    let mut had = false;
    for name in [token_name(provider), session_name(provider)] {
        match secrets.delete(&name) {
            Ok(()) => had = true,
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    if logged_in(secrets)?.is_empty() {
        match secrets.delete(&ingest_name()) {
            Ok(()) => {}
            Err(e) if missing(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(had)
}

/// The provider's access token, refreshed first when it expires within five minutes;
/// `None` when not logged in.
pub async fn access_token(
    config: &CloudConfig,
    secrets: &SecretsHandle,
    provider: Provider,
) -> Result<Option<SecretString>, AuthError> {
    let stored = secrets
        .run(move |s| {
            let token = match s.get(&token_name(provider)) {
                Ok(token) => token,
                Err(e) if missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            let record =
                s.get(&session_name(provider)).ok().and_then(|r| serde_json::from_str::<Record>(r.expose()).ok());
            Ok(Some((token, record)))
        })
        .await?;
    let Some((token, record)) = stored else { return Ok(None) };
    let expiring =
        record.as_ref().and_then(|r| r.expires_at).is_some_and(|at| now_secs() + REFRESH_AHEAD.as_secs() >= at);
    if !expiring {
        return Ok(Some(token));
    }
    let Some(record) = record else { return Ok(Some(token)) };
    let Some(refresh_token) = record.refresh_token else {
        // Expired and nothing to refresh with: the provider will refuse it, which says more.
        return Ok(Some(token));
    };
    let session = refresh(config, provider, &refresh_token, record.install_id).await?;
    let access = session.access_token.expose().to_owned();
    secrets.run(move |s| session.store(s)).await?;
    tracing::info!(provider = provider.id(), "refreshed the login's access token");
    Ok(Some(SecretString::new(access)))
}

async fn refresh(
    config: &CloudConfig,
    provider: Provider,
    refresh_token: &str,
    install_id: Option<String>,
) -> Result<Session, AuthError> {
    let endpoints = Endpoints::of(config, provider)?;
    let install_id = install_id.filter(|_| endpoints.via_control_plane);
    let mut form = vec![
        ("client_id", endpoints.client_id.as_str()),
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    if let Some(id) = &install_id {
        form.push(("install_id", id.as_str()));
    }
    let response = http_client()?
        .post(&endpoints.token)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form_body(&form))
        .send()
        .await
        .map_err(|e| AuthError::Unreachable(endpoints.token.clone(), e.to_string()))?;
    let status = response.status().as_u16();
    let answer: serde_json::Map<String, Value> =
        response.json().await.map_err(|_| AuthError::Garbled(endpoints.token.clone(), status))?;
    if let Some(code) = answer.get("error").and_then(Value::as_str) {
        return Err(AuthError::Provider {
            provider: provider.title(),
            code: code.to_owned(),
            description: answer.get("error_description").and_then(Value::as_str).map(str::to_owned),
        });
    }
    let mut session = Session::from_token_answer(provider, &answer, endpoints.via_control_plane)
        .ok_or_else(|| AuthError::Garbled(endpoints.token.clone(), status))?
        .with_install_id(install_id);
    // Providers that do not rotate refresh tokens leave the old one valid.
    if session.refresh_token.is_none() {
        session.refresh_token = Some(SecretString::new(refresh_token.to_owned()));
    }
    Ok(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(json: &str) -> serde_json::Map<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_token_answer_becomes_a_session() {
        let session = Session::from_token_answer(
            Provider::Google,
            &answer(r#"{"access_token":"ya29.x","expires_in":3599,"refresh_token":"1//r","scope":"openid email","pryx_ingest_token":"pit1.a.1.b"}"#),
            true,
        )
        .unwrap();
        assert_eq!(session.access_token.expose(), "ya29.x");
        assert!(session.expires_at.unwrap() > now_secs() + 3500);
        assert_eq!(session.ingest_token.as_ref().unwrap().expose(), "Bearer pit1.a.1.b");
        // Form-encoded answers carry numbers as text (GitHub).
        let github = Session::from_token_answer(
            Provider::GitHub,
            &answer(r#"{"access_token":"gho_x","expires_in":"28800","pryx_ingest_token":"pit1.a.1.b"}"#),
            false,
        )
        .unwrap();
        assert!(github.expires_at.is_some());
        assert!(github.ingest_token.is_none(), "only the control plane's ingest token is taken");
        assert!(Session::from_token_answer(Provider::GitHub, &answer(r#"{"token_type":"bearer"}"#), true).is_none());
    }
}
