//! Logging in with GitHub or Google (the OAuth device flow) from the Control Center.

use serde::{Deserialize, Serialize};

use crate::QrImage;

/// An identity provider Pryx logs in to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginProvider {
    Github,
    Google,
}

/// Whether a provider is logged in, and whether a login can start here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStatus {
    pub provider: LoginProvider,
    pub logged_in: bool,
    /// `false` when the configuration cannot log in to it (`reason` says what to set).
    pub available: bool,
    pub reason: Option<String>,
    /// Why the latest login failed (denied, expired…), in words; cleared by the next one.
    #[serde(default)]
    pub failure: Option<String>,
}

/// A login waiting for its user: the code to type and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginStarted {
    pub login_id: String,
    pub provider: LoginProvider,
    /// The code the user types (e.g. `WDJB-MJHT`).
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// The link with the code filled in, when the provider offers one (GitHub does not).
    pub verification_uri_complete: Option<String>,
    /// The link (complete when there is one) as a QR code.
    #[serde(default)]
    pub qr: Option<QrImage>,
    /// Unix ms after which the code no longer works.
    pub expires_at: i64,
}

/// Where a login stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    /// The code has not been entered (or approved) yet.
    Waiting,
    /// Logged in; the tokens are in the keychain.
    LoggedIn,
    /// Denied, expired or failed; `message` says which, in words.
    Failed,
}

/// A login's progress, as `auth.login_subscribe` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginUpdate {
    pub login_id: String,
    pub state: LoginState,
    pub message: Option<String>,
}
