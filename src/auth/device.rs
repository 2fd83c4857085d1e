//! The client side of RFC 8628: ask for a code, then poll the token endpoint at the
//! interval the provider set, slowing down when told to, until a token, a refusal or the
//! code's expiry.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::session::Session;
use super::{form_body, http_client, AuthError, CloudConfig, Endpoints, Provider};
use crate::secrets::SecretString;

/// RFC 8628 section 3.4.
const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 section 3.5: each `slow_down` adds five seconds to the interval.
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);

/// A login waiting for its user: what to show them, and what polling needs.
#[derive(Debug)]
pub struct DeviceLogin {
    pub provider: Provider,
    /// The code the user types (e.g. `WDJB-MJHT`).
    pub user_code: String,
    /// Where they type it.
    pub verification_uri: String,
    /// The same link with the code filled in, when the provider offers one (GitHub does not).
    pub verification_uri_complete: Option<String>,
    /// When the code stops working.
    pub expires_at: Instant,
    interval: Duration,
    device_code: SecretString,
    endpoints: Endpoints,
    install_id: String,
}

/// What one poll found.
#[derive(Debug)]
pub enum Poll {
    /// The user has not answered yet; poll again after `wait`.
    Pending { wait: Duration },
    /// Logged in; the tokens are not stored yet ([`super::session::Session::store`]).
    Done(Box<Session>),
}

/// The answer's fields as a JSON object, whether the server sent JSON or a form.
async fn answer_of(
    response: reqwest::Response,
    what: &str,
) -> Result<(u16, serde_json::Map<String, Value>), AuthError> {
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|e| AuthError::Unreachable(what.to_owned(), e.to_string()))?;
    if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
        return Ok((status, map));
    }
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(text.as_bytes()).into_owned().collect();
    if pairs.is_empty() || !pairs.iter().any(|(k, _)| k == "error" || k == "access_token" || k == "device_code") {
        return Err(AuthError::Garbled(what.to_owned(), status));
    }
    Ok((status, pairs.into_iter().map(|(k, v)| (k, Value::String(v))).collect()))
}

fn provider_error(provider: Provider, answer: &serde_json::Map<String, Value>) -> Option<AuthError> {
    let code = answer.get("error")?.as_str()?.to_owned();
    Some(match code.as_str() {
        "expired_token" => AuthError::Expired,
        "access_denied" => AuthError::Denied(provider.title()),
        _ => AuthError::Provider {
            provider: provider.title(),
            code,
            description: answer.get("error_description").and_then(Value::as_str).map(str::to_owned),
        },
    })
}

impl DeviceLogin {
    /// Asks the provider (or the control plane) for a code.
    pub async fn start(config: &CloudConfig, provider: Provider) -> Result<DeviceLogin, AuthError> {
        let endpoints = Endpoints::of(config, provider)?;
        let response = http_client()?
            .post(&endpoints.device)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&[("client_id", endpoints.client_id.as_str()), ("scope", provider.scope())]))
            .send()
            .await
            .map_err(|e| AuthError::Unreachable(endpoints.device.clone(), e.to_string()))?;
        let (status, answer) = answer_of(response, &endpoints.device).await?;
        if let Some(error) = provider_error(provider, &answer) {
            return Err(error);
        }
        // Form-encoded answers carry numbers as text; Google calls the link `verification_url`.
        let text = |key: &str| answer.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let garbled = || AuthError::Garbled(endpoints.device.clone(), status);
        let device_code = text("device_code").ok_or_else(garbled)?;
        let user_code = text("user_code").ok_or_else(garbled)?;
        // The links are shown as links (the Control Center, a QR code): only web addresses,
        // never `javascript:` or anything else a provider or control plane might send.
        let web =
            |link: String| url::Url::parse(&link).ok().filter(|u| matches!(u.scheme(), "https" | "http")).map(|_| link);
        let verification_uri =
            text("verification_uri").or_else(|| text("verification_url")).and_then(web).ok_or_else(garbled)?;
        let expires_in = answer.get("expires_in").and_then(number).ok_or_else(garbled)?;
        let interval = answer.get("interval").and_then(number).unwrap_or(5).max(1);
        Ok(DeviceLogin {
            provider,
            user_code,
            verification_uri,
            verification_uri_complete: text("verification_uri_complete").and_then(web),
            expires_at: Instant::now() + Duration::from_secs(expires_in),
            interval: Duration::from_secs(interval),
            device_code: SecretString::new(device_code),
            endpoints,
            install_id: format!("pryx-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// How long to wait before the next poll.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The link a QR code should hold: the one with the code when there is one.
    pub fn link(&self) -> &str {
        self.verification_uri_complete.as_deref().unwrap_or(&self.verification_uri)
    }

    /// One poll of the token endpoint.
    pub async fn poll(&mut self) -> Result<Poll, AuthError> {
        if Instant::now() >= self.expires_at {
            return Err(AuthError::Expired);
        }
        let mut form = vec![
            ("client_id", self.endpoints.client_id.as_str()),
            ("grant_type", DEVICE_CODE_GRANT),
            ("device_code", self.device_code.expose()),
        ];
        if self.endpoints.via_control_plane {
            form.push(("install_id", self.install_id.as_str()));
        }
        let response = http_client()?
            .post(&self.endpoints.token)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form_body(&form))
            .send()
            .await
            .map_err(|e| AuthError::Unreachable(self.endpoints.token.clone(), e.to_string()))?;
        let (status, answer) = answer_of(response, &self.endpoints.token).await?;
        match answer.get("error").and_then(Value::as_str) {
            Some("authorization_pending") => return Ok(Poll::Pending { wait: self.interval }),
            Some("slow_down") => {
                // The provider may name the new interval (GitHub does); never less than +5 s.
                let named = answer.get("interval").and_then(number).map(Duration::from_secs);
                self.interval = named.unwrap_or_default().max(self.interval + SLOW_DOWN_STEP);
                return Ok(Poll::Pending { wait: self.interval });
            }
            _ => {}
        }
        if let Some(error) = provider_error(self.provider, &answer) {
            return Err(error);
        }
        let install_id = self.endpoints.via_control_plane.then(|| self.install_id.clone());
        let session = Session::from_token_answer(self.provider, &answer, self.endpoints.via_control_plane)
            .ok_or_else(|| AuthError::Garbled(self.endpoints.token.clone(), status))?
            .with_install_id(install_id);
        Ok(Poll::Done(Box::new(session)))
    }
}

/// A number that a form-encoded answer sent as text.
pub(super) fn number(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::routing::post;
    use axum::Router;

    use super::*;

    /// A GitHub-like endpoint: form-encoded answers, errors with status 200, the token
    /// answers taken from `script` in order.
    async fn github_like(script: Vec<&'static str>) -> (String, Arc<Mutex<Vec<String>>>) {
        crate::install_tls_provider();
        let script = Arc::new(Mutex::new(script.into_iter().rev().collect::<Vec<_>>()));
        let forms = Arc::new(Mutex::new(Vec::new()));
        let seen = forms.clone();
        let app = Router::new()
            .route(
                "/login/device/code",
                post(|| async {
                    "device_code=dc-1&user_code=WDJB-MJHT&verification_uri=https%3A%2F%2Fgithub.com%2Flogin%2Fdevice&expires_in=900&interval=1"
                }),
            )
            .route(
                "/login/oauth/access_token",
                post(move |body: String| {
                    let script = script.clone();
                    let seen = seen.clone();
                    async move {
                        seen.lock().unwrap().push(body);
                        script.lock().unwrap().pop().unwrap_or("error=expired_token")
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{address}"), forms)
    }

    fn direct(url: &str) -> CloudConfig {
        CloudConfig { github_url: url.into(), github_client_id: Some("Iv1.test".into()), ..Default::default() }
    }

    #[tokio::test]
    async fn slow_down_lengthens_the_interval_and_the_token_arrives() {
        let (url, forms) = github_like(vec![
            "error=authorization_pending",
            "error=slow_down&error_description=Too+many+requests&interval=7",
            "error=slow_down",
            "access_token=gho_abc&token_type=bearer&scope=read%3Auser",
        ])
        .await;
        let mut login = DeviceLogin::start(&direct(&url), Provider::GitHub).await.unwrap();
        assert_eq!((login.user_code.as_str(), login.interval()), ("WDJB-MJHT", Duration::from_secs(1)));
        assert_eq!(login.link(), "https://github.com/login/device", "GitHub offers no pre-filled link");
        assert!(matches!(login.poll().await.unwrap(), Poll::Pending { wait } if wait == Duration::from_secs(1)));
        // GitHub names the new interval; at least five seconds more than before.
        assert!(matches!(login.poll().await.unwrap(), Poll::Pending { wait } if wait == Duration::from_secs(7)));
        // Without a named interval, five seconds more (RFC 8628 section 3.5).
        assert!(matches!(login.poll().await.unwrap(), Poll::Pending { wait } if wait == Duration::from_secs(12)));
        let Poll::Done(session) = login.poll().await.unwrap() else { panic!("expected a token") };
        assert_eq!(session.scope.as_deref(), Some("read:user"));
        assert!(!session.has_ingest_token());
        let forms = forms.lock().unwrap();
        assert!(forms[0].contains("client_id=Iv1.test"), "{forms:?}");
        assert!(forms[0].contains("device_code=dc-1"));
        assert!(!forms[0].contains("install_id"), "only the control plane gets an install id");
    }

    #[tokio::test]
    async fn a_link_that_is_not_a_web_address_is_refused() {
        crate::install_tls_provider();
        let app = Router::new().route(
            "/login/device/code",
            post(|| async { "device_code=d&user_code=AB-CD&verification_uri=javascript%3Aalert(1)&expires_in=900" }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let error = DeviceLogin::start(&direct(&url), Provider::GitHub).await.unwrap_err();
        assert!(matches!(error, AuthError::Garbled(..)), "{error}");
    }

    #[tokio::test]
    async fn denial_and_expiry_are_errors_in_words() {
        let (url, _) = github_like(vec!["error=access_denied", "error=expired_token"]).await;
        let mut login = DeviceLogin::start(&direct(&url), Provider::GitHub).await.unwrap();
        assert_eq!(login.poll().await.unwrap_err().to_string(), "the login was denied on GitHub");
        assert!(login.poll().await.unwrap_err().to_string().contains("the code expired"));
        let (url, _) = github_like(vec!["error=unsupported_grant_type&error_description=Bad+grant"]).await;
        let mut login = DeviceLogin::start(&direct(&url), Provider::GitHub).await.unwrap();
        assert_eq!(login.poll().await.unwrap_err().to_string(), "GitHub answered `unsupported_grant_type`: Bad grant");
    }
}
