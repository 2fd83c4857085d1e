//! Logins started from the Control Center: each runs as a task that polls the provider
//! (`auth::DeviceLogin`) and reports through a watch channel, so a page can follow it,
//! reload, and follow it again. At most one login per provider waits at a time; a new one
//! replaces it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pryx_api::{LoginProvider, LoginStarted, LoginState, LoginStatus, LoginUpdate};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{Agent, AgentError};
use crate::auth::{self, AuthError, DeviceLogin, Poll, Provider};

/// How often stored logins are checked for tokens about to expire.
const REFRESH_CHECK: Duration = Duration::from_secs(60);

/// The logins waiting for their users, by login id.
#[derive(Default)]
pub(crate) struct Logins {
    waiting: Mutex<HashMap<String, Waiting>>,
}

struct Waiting {
    provider: Provider,
    updates: watch::Receiver<LoginUpdate>,
    stop: CancellationToken,
}

fn provider_of(provider: LoginProvider) -> Provider {
    match provider {
        LoginProvider::Github => Provider::GitHub,
        LoginProvider::Google => Provider::Google,
    }
}

fn wire(provider: Provider) -> LoginProvider {
    match provider {
        Provider::GitHub => LoginProvider::Github,
        Provider::Google => LoginProvider::Google,
    }
}

impl Agent {
    // ---- logging in (GitHub, Google) ----

    /// Which providers are logged in, and which can be logged in to here.
    pub async fn login_status(&self) -> Result<Vec<LoginStatus>, AgentError> {
        let logged_in = self
            .secrets
            .run(auth::logged_in)
            .await
            .map_err(|e| AgentError::InvalidInput(format!("cannot read the keychain: {e}")))?;
        let waiting = self.logins.waiting.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Provider::ALL
            .into_iter()
            .map(|provider| {
                let reason = auth::can_log_in(&self.config.cloud, provider).err().map(|e| e.to_string());
                let failure = waiting
                    .values()
                    .filter(|w| w.provider == provider)
                    .map(|w| w.updates.borrow().clone())
                    .find(|update| update.state == LoginState::Failed)
                    .and_then(|update| update.message);
                LoginStatus {
                    provider: wire(provider),
                    logged_in: logged_in.contains(&provider),
                    available: reason.is_none(),
                    reason,
                    failure,
                }
            })
            .collect())
    }

    /// Start a device-flow login; its progress comes from [`Agent::login_updates`].
    pub async fn login_start(&self, provider: LoginProvider) -> Result<LoginStarted, AgentError> {
        let provider = provider_of(provider);
        let mut login = DeviceLogin::start(&self.config.cloud, provider).await.map_err(|e| match e {
            AuthError::NoControlPlane(..) | AuthError::UnknownProvider(_) => AgentError::InvalidInput(e.to_string()),
            other => AgentError::Conflict(format!("cannot start the {} login: {other}", provider.title())),
        })?;
        let login_id = uuid::Uuid::new_v4().to_string();
        let started = LoginStarted {
            login_id: login_id.clone(),
            provider: wire(provider),
            user_code: login.user_code.clone(),
            verification_uri: login.verification_uri.clone(),
            verification_uri_complete: login.verification_uri_complete.clone(),
            qr: None,
            expires_at: crate::store::now_ms()
                + login.expires_at.saturating_duration_since(std::time::Instant::now()).as_millis() as i64,
        };
        let (report, updates) =
            watch::channel(LoginUpdate { login_id: login_id.clone(), state: LoginState::Waiting, message: None });
        let stop = CancellationToken::new();
        {
            let mut waiting = self.logins.waiting.lock().unwrap_or_else(|p| p.into_inner());
            // A new login replaces one still waiting for the same provider; finished ones go.
            waiting.retain(|_, w| {
                let replaced = w.provider == provider;
                if replaced {
                    w.stop.cancel();
                }
                !replaced && w.updates.borrow().state == LoginState::Waiting
            });
            waiting.insert(login_id.clone(), Waiting { provider, updates, stop: stop.clone() });
        }
        let secrets = self.secrets.clone();
        let llm = self.llm.clone();
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = poll_until_done(&mut login) => outcome,
                _ = stop.cancelled() => Err(AuthError::Provider {
                    provider: provider.title(),
                    code: "cancelled".into(),
                    description: Some("a newer login replaced this one".into()),
                }),
            };
            let (state, message) = match outcome {
                // The model may now be GitHub Models: resolved again from the next request on.
                Ok(session) => match llm.around(secrets.run(move |s| session.store(s))).await {
                    Ok(()) => (LoginState::LoggedIn, Some(format!("Logged in to {}.", provider.title()))),
                    Err(e) => (LoginState::Failed, Some(format!("cannot keep the tokens in the keychain: {e}"))),
                },
                Err(e) => (LoginState::Failed, Some(sentence(&e))),
            };
            let _ = report.send(LoginUpdate { login_id, state, message });
        });
        Ok(started)
    }

    /// A login's progress, for `auth.login_subscribe`.
    pub fn login_updates(&self, login_id: &str) -> Result<watch::Receiver<LoginUpdate>, AgentError> {
        let waiting = self.logins.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting
            .get(login_id)
            .map(|w| w.updates.clone())
            .ok_or_else(|| AgentError::NotFound(format!("login {login_id}")))
    }

    /// Forget a provider's tokens; whether it was logged in.
    pub async fn logout(&self, provider: LoginProvider) -> Result<bool, AgentError> {
        let provider = provider_of(provider);
        self.llm
            .around(self.secrets.run(move |s| auth::logout(s, provider)))
            .await
            .map_err(|e| AgentError::Conflict(format!("cannot change the keychain: {e}")))
    }
}

impl Agent {
    /// Refreshes every login's access token shortly before it expires, at start and then
    /// every minute, so whatever reads it from the keychain (MCP servers through
    /// `secret:auth/github`, the model provider) never gets a stale one.
    ///
    /// Without `[cloud]` settings no login can be refreshed, and the keychain is left alone:
    /// with the kernel keyring, listing it while the agent's first secrets are read made
    /// that read miss now and then (seen in `secrets::the_kernel_keyring_works_for_headless_servers`).
    pub async fn keep_logins_fresh(self: Arc<Self>, stop: CancellationToken) {
        if !auth::Provider::ALL.iter().any(|&p| auth::can_log_in(&self.config.cloud, p).is_ok()) {
            return;
        }
        loop {
            if let Ok(providers) = self.secrets.run(auth::logged_in).await {
                for provider in providers {
                    if let Err(e) = auth::access_token(&self.config.cloud, &self.secrets, provider).await {
                        tracing::warn!(provider = provider.id(), "cannot refresh the login: {e}");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(REFRESH_CHECK) => {}
            }
        }
    }
}

async fn poll_until_done(login: &mut DeviceLogin) -> Result<auth::Session, AuthError> {
    let mut wait = login.interval();
    loop {
        tokio::time::sleep(wait).await;
        match login.poll().await? {
            Poll::Pending { wait: next } => wait = next,
            Poll::Done(session) => return Ok(*session),
        }
    }
}

/// An error as the page shows it: a sentence.
fn sentence(error: &AuthError) -> String {
    let text = error.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str().trim_end_matches('.')),
        None => text,
    }
}
