//! Logging in with GitHub or Google: the OAuth device authorization grant (RFC 8628).
//!
//! The user sees a short code and a link (and a QR code), types the code on any device, and
//! Pryx polls until the provider says yes or no. Logins go through the control plane
//! (`[cloud] url`, the Worker in `cloudflare/`) when one is configured: it holds the OAuth
//! client credentials, including Google's secret, which must never ship in a binary, and
//! mints a telemetry ingest token. Without one, GitHub still works directly with a
//! configured client id (GitHub's device flow needs no secret); Google does not.
//!
//! Tokens live in the keychain: `auth/github` holds the access token alone, so MCP servers
//! can use it as `secret:auth/github`; `auth/github/session` holds what refreshing needs;
//! `auth/ingest` the ingest token as an Authorization value. A GitHub login makes GitHub
//! Models the model provider when no other is configured (`llm` asks [`access_token`]).

mod device;
mod session;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use device::{DeviceLogin, Poll};

pub use session::{access_token, logged_in, logout, Session, INGEST_SECRET};

use crate::secrets::SecretError;

/// Where GitHub's device flow lives.
pub const GITHUB_URL: &str = "https://github.com";
/// GitHub Models' OpenAI-compatible inference endpoint.
pub const GITHUB_MODELS_URL: &str = "https://models.github.ai/inference";
pub const GITHUB_MODELS_MODEL: &str = "openai/gpt-4o-mini";

/// `[cloud]` in the config file: logging in, and the control plane that helps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// The control plane (the Worker in `cloudflare/`) you or your organisation deployed,
    /// e.g. `https://control.example.com`. Logins go through it; telemetry can too
    /// (`[telemetry.otlp] via_cloud = true`).
    pub url: Option<String>,
    /// Without `url`: log in to GitHub directly with this OAuth app's client id (GitHub's
    /// device flow needs no secret). Google always needs `url`.
    pub github_client_id: Option<String>,
    /// Where GitHub's device flow lives (only tests change it).
    pub github_url: String,
    /// GitHub Models' endpoint, the model provider after a GitHub login when no other is set.
    pub github_models_url: String,
    /// The model used on GitHub Models.
    pub github_models_model: String,
}

impl Default for CloudConfig {
    fn default() -> Self {
        CloudConfig {
            url: None,
            github_client_id: None,
            github_url: GITHUB_URL.into(),
            github_models_url: GITHUB_MODELS_URL.into(),
            github_models_model: GITHUB_MODELS_MODEL.into(),
        }
    }
}

/// An identity provider Pryx logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    GitHub,
    Google,
}

impl Provider {
    pub const ALL: [Provider; 2] = [Provider::GitHub, Provider::Google];

    pub fn parse(name: &str) -> Result<Provider, AuthError> {
        match name.to_ascii_lowercase().as_str() {
            "github" => Ok(Provider::GitHub),
            "google" => Ok(Provider::Google),
            other => Err(AuthError::UnknownProvider(other.to_owned())),
        }
    }

    /// The lower-case name used in URLs and keychain entries.
    pub fn id(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::Google => "google",
        }
    }

    /// The name people know.
    pub fn title(self) -> &'static str {
        match self {
            Provider::GitHub => "GitHub",
            Provider::Google => "Google",
        }
    }

    /// What a login asks for: GitHub Models needs no scope beyond the user's identity;
    /// Google's device flow allows only identity scopes.
    fn scope(self) -> &'static str {
        match self {
            Provider::GitHub => "read:user",
            Provider::Google => "openid email",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown login provider `{0}`: use github or google")]
    UnknownProvider(String),
    #[error(
        "{0} login needs a control plane: set [cloud] url to the Worker you deployed (cloudflare/README.md says how){1}"
    )]
    NoControlPlane(&'static str, &'static str),
    #[error("the code expired before it was entered; start the login again")]
    Expired,
    #[error("the login was denied on {0}")]
    Denied(&'static str),
    #[error("{provider} answered `{code}`{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Provider { provider: &'static str, code: String, description: Option<String> },
    #[error("cannot reach {0}: {1}")]
    Unreachable(String, String),
    #[error("{0} answered something that is not an OAuth answer (HTTP {1})")]
    Garbled(String, u16),
    #[error("the keychain: {0}")]
    Keychain(#[from] SecretError),
}

/// The endpoints one login talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoints {
    device: String,
    token: String,
    /// Sent as `client_id`; the control plane replaces it with its own.
    client_id: String,
    /// Through the control plane (which can mint an ingest token), or to GitHub directly.
    via_control_plane: bool,
}

impl Endpoints {
    fn of(config: &CloudConfig, provider: Provider) -> Result<Endpoints, AuthError> {
        if let Some(url) = config.url.as_deref().map(|u| u.trim_end_matches('/')).filter(|u| !u.is_empty()) {
            return Ok(Endpoints {
                device: format!("{url}/auth/{}/device", provider.id()),
                token: format!("{url}/auth/{}/token", provider.id()),
                client_id: "pryx".into(),
                via_control_plane: true,
            });
        }
        match (provider, &config.github_client_id) {
            (Provider::GitHub, Some(client_id)) => {
                let base = config.github_url.trim_end_matches('/');
                Ok(Endpoints {
                    device: format!("{base}/login/device/code"),
                    token: format!("{base}/login/oauth/access_token"),
                    client_id: client_id.clone(),
                    via_control_plane: false,
                })
            }
            (Provider::GitHub, None) => Err(AuthError::NoControlPlane(
                "GitHub",
                ", or [cloud] github_client_id to an OAuth app of yours with the device flow enabled",
            )),
            (Provider::Google, _) => Err(AuthError::NoControlPlane("Google", "")),
        }
    }
}

/// Whether this configuration can log in to `provider` (the error says what to set).
pub fn can_log_in(config: &CloudConfig, provider: Provider) -> Result<(), AuthError> {
    Endpoints::of(config, provider).map(|_| ())
}

/// One HTTP client for every auth request: short timeouts, no redirects followed (a token
/// endpoint that redirects is not one to send a code to).
fn http_client() -> Result<reqwest::Client, AuthError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("pryx/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| AuthError::Unreachable("the network".into(), e.to_string()))
}

/// An `application/x-www-form-urlencoded` body, as RFC 8628 and RFC 6749 prescribe.
fn form_body(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_go_through_the_control_plane_when_there_is_one() {
        let config = CloudConfig { url: Some("https://control.example.com/".into()), ..Default::default() };
        let github = Endpoints::of(&config, Provider::GitHub).unwrap();
        assert_eq!(github.device, "https://control.example.com/auth/github/device");
        assert_eq!(github.token, "https://control.example.com/auth/github/token");
        assert!(github.via_control_plane);
        assert_eq!(
            Endpoints::of(&config, Provider::Google).unwrap().token,
            "https://control.example.com/auth/google/token"
        );
    }

    #[test]
    fn without_one_github_goes_direct_and_google_cannot() {
        let direct = CloudConfig { github_client_id: Some("Iv1.abc".into()), ..Default::default() };
        let github = Endpoints::of(&direct, Provider::GitHub).unwrap();
        assert_eq!(github.device, "https://github.com/login/device/code");
        assert_eq!(github.token, "https://github.com/login/oauth/access_token");
        assert_eq!(github.client_id, "Iv1.abc");
        let google = Endpoints::of(&direct, Provider::Google).unwrap_err().to_string();
        assert!(google.contains("[cloud] url"), "{google}");
        let nothing = Endpoints::of(&CloudConfig::default(), Provider::GitHub).unwrap_err().to_string();
        assert!(nothing.contains("github_client_id"), "{nothing}");
    }

    #[test]
    fn provider_names() {
        assert_eq!(Provider::parse("GitHub").unwrap(), Provider::GitHub);
        assert!(Provider::parse("facebook").unwrap_err().to_string().contains("github or google"));
    }
}
