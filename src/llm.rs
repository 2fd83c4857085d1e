//! The LLM provider: one streaming Chat Completions request at a time, over async-openai.
//!
//! async-openai does the HTTP, the SSE parsing and the retries (429 honouring `Retry-After`,
//! 5xx and refused connections, with exponential back-off). We use its "bring your own types"
//! calls with the small, lenient wire types below instead of its strict generated ones,
//! because "OpenAI-compatible" servers (Ollama, LM Studio, vLLM, proxies) differ in the
//! optional fields they send, and a missing `created` must not fail a user's chat.
//!
//! This module knows nothing of sessions or the store: it turns a [`ChatRequest`] into text
//! deltas and a [`Completion`], or an [`LlmError`] that says plainly what went wrong.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::retry::OpenAIRetryLayer;
use async_openai::middleware::ReqwestService;
use futures::StreamExt;
use pryx_api::{ErrorKind, ProviderInfo, ToolCall, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::auth::{self, CloudConfig};
use crate::config::LlmConfig;
use crate::secrets::{SecretString, SecretsHandle};

/// The default OpenAI endpoint, used when only an API key is configured.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const OPENAI_DEFAULT_MODEL: &str = "gpt-4o-mini";
/// Local servers probed when nothing is configured: (source name, base URL).
const LOCAL_SERVERS: [(&str, &str); 2] =
    [("ollama", "http://127.0.0.1:11434/v1"), ("lmstudio", "http://127.0.0.1:1234/v1")];
/// How long a failed local probe is trusted before probing again.
const PROBE_CACHE: Duration = Duration::from_secs(10);
/// A provider that signs in with a login's token is resolved again this often, so a token
/// that expires is refreshed (by `auth`) before the provider refuses it.
const LOGIN_RECHECK: Duration = Duration::from_secs(60);

/// A provider failure, classified for the user.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LlmError {
    pub kind: ErrorKind,
    pub message: String,
}

impl LlmError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        LlmError { kind, message: message.into() }
    }
}

/// One message in the wire format of the Chat Completions API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireMessage {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

impl WireMessage {
    pub fn system(text: &str) -> Self {
        Self { role: "system", content: text.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
    pub fn user(text: &str) -> Self {
        Self { role: "user", content: text.into(), tool_calls: Vec::new(), tool_call_id: None }
    }
    pub fn assistant(text: &str, calls: &[ToolCall]) -> Self {
        let tool_calls = calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        Self { role: "assistant", content: text.into(), tool_calls, tool_call_id: None }
    }
    pub fn tool(call_id: &str, output: &str) -> Self {
        Self { role: "tool", content: output.into(), tool_calls: Vec::new(), tool_call_id: Some(call_id.into()) }
    }

    /// A rough token estimate (4 characters a token, plus framing) for context trimming.
    pub fn estimated_tokens(&self) -> usize {
        let calls: usize = self.tool_calls.iter().map(|c| c.to_string().len()).sum();
        (self.content.len() + calls) / 4 + 4
    }
}

/// What to ask the model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub messages: Vec<WireMessage>,
    /// Tool definitions in the API's `{"type":"function","function":{...}}` shape.
    pub tools: std::sync::Arc<Vec<Value>>,
}

/// What the model answered in one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub finish_reason: String,
    pub usage: Option<Usage>,
}

/// A resolved, ready-to-use provider.
#[derive(Clone)]
pub struct Provider {
    client: async_openai::Client<OpenAIConfig>,
    pub info: ProviderInfo,
    model: String,
    max_output_tokens: Option<u32>,
}

impl Provider {
    fn new(
        config: &LlmConfig,
        api_key: Option<&SecretString>,
        source: &str,
        base_url: &str,
        model: String,
    ) -> Result<Self, LlmError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .read_timeout(Duration::from_secs(config.request_timeout_secs))
            .build()
            .map_err(|e| LlmError::new(ErrorKind::ConnectionFailed, format!("cannot build HTTP client: {e}")))?;
        let mut openai = OpenAIConfig::new().with_api_base(base_url.trim_end_matches('/'));
        if let Some(key) = api_key {
            openai = openai.with_api_key(key.expose());
        }
        let service = tower::ServiceBuilder::new()
            .layer(OpenAIRetryLayer::new(config.max_retries as usize))
            .service(ReqwestService::new(http));
        let client = async_openai::Client::with_config(openai).with_http_service(service);
        let info = ProviderInfo {
            source: source.into(),
            base_url: Some(base_url.into()),
            model: Some(model.clone()),
            has_api_key: api_key.is_some(),
        };
        Ok(Provider { client, info, model, max_output_tokens: config.max_output_tokens })
    }

    /// Run one streaming request. `on_text` sees each text delta as it arrives; the result
    /// has the whole text, the complete tool calls and the usage.
    pub async fn stream_chat(
        &self,
        request: &ChatRequest,
        mut on_text: impl FnMut(&str),
    ) -> Result<Completion, LlmError> {
        let mut body = json!({
            "model": self.model,
            "messages": request.messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if !request.tools.is_empty() {
            body["tools"] = Value::Array(request.tools.to_vec());
        }
        if let Some(max) = self.max_output_tokens {
            body["max_tokens"] = json!(max);
        }
        let mut stream =
            self.client.chat().create_stream_byot::<Value, WireChunk>(body).await.map_err(|e| self.classify(e))?;

        let mut completion = Completion::default();
        let mut calls: BTreeMap<u32, PartialCall> = BTreeMap::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.classify(e))?;
            if let Some(error) = chunk.error {
                let message =
                    error.get("message").and_then(Value::as_str).map_or_else(|| error.to_string(), str::to_owned);
                return Err(LlmError::new(
                    ErrorKind::ProviderUnavailable,
                    format!("the provider reported an error mid-answer: {message}"),
                ));
            }
            if let Some(u) = chunk.usage {
                completion.usage = Some(Usage {
                    prompt_tokens: u.prompt_tokens,
                    completion_tokens: u.completion_tokens,
                    total_tokens: u.total_tokens.unwrap_or(u.prompt_tokens + u.completion_tokens),
                });
            }
            for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
                if let Some(text) = choice.delta.content.filter(|t| !t.is_empty()) {
                    on_text(&text);
                    completion.text.push_str(&text);
                }
                for delta in choice.delta.tool_calls.unwrap_or_default() {
                    let call = calls.entry(delta.index).or_default();
                    if let Some(id) = delta.id {
                        call.id = id;
                    }
                    if let Some(f) = delta.function {
                        call.name.push_str(f.name.as_deref().unwrap_or(""));
                        call.arguments.push_str(f.arguments.as_deref().unwrap_or(""));
                    }
                }
                if let Some(reason) = choice.finish_reason {
                    completion.finish_reason = reason;
                }
            }
        }
        if completion.finish_reason.is_empty() {
            return Err(LlmError::new(
                ErrorKind::StreamBroken,
                "the provider closed the stream before the answer was finished",
            ));
        }
        completion.tool_calls = calls
            .into_iter()
            .map(|(index, c)| ToolCall {
                id: if c.id.is_empty() { format!("call_{index}") } else { c.id },
                name: c.name,
                arguments: c.arguments,
            })
            .collect();
        Ok(completion)
    }

    /// Turn an async-openai error into something a user can act on.
    fn classify(&self, error: OpenAIError) -> LlmError {
        let base = self.info.base_url.as_deref().unwrap_or("?");
        match error {
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                let detail = api.api_error.message;
                let (kind, what) = match status {
                    401 | 403 => (ErrorKind::ProviderAuth, format!("the provider at {base} refused the API key (HTTP {status}); set PRYX_LLM_API_KEY or llm.api_key")),
                    404 => (ErrorKind::ModelNotFound, format!("the provider at {base} does not know model `{}` (HTTP 404); set PRYX_LLM_MODEL or llm.model", self.model)),
                    429 => (ErrorKind::RateLimited, format!("the provider at {base} is rate-limiting requests (HTTP 429) and retries did not help")),
                    500..=599 => (ErrorKind::ProviderUnavailable, format!("the provider at {base} failed (HTTP {status}) and retries did not help")),
                    _ => (ErrorKind::ProviderRejected, format!("the provider at {base} rejected the request (HTTP {status})")),
                };
                LlmError::new(kind, if detail.is_empty() { what } else { format!("{what}: {}", clip(&detail)) })
            }
            OpenAIError::Reqwest(e) if e.is_connect() => LlmError::new(
                ErrorKind::ConnectionFailed,
                format!("cannot connect to the provider at {base}: is it running and is the URL right?"),
            ),
            OpenAIError::Reqwest(e) if e.is_timeout() => {
                LlmError::new(ErrorKind::StreamBroken, format!("the provider at {base} stopped answering (timed out)"))
            }
            OpenAIError::Reqwest(e) => {
                LlmError::new(ErrorKind::StreamBroken, format!("the connection to {base} broke: {e}"))
            }
            OpenAIError::StreamError(e) => LlmError::new(
                ErrorKind::StreamBroken,
                format!("the provider's stream broke before the answer was finished: {e}"),
            ),
            OpenAIError::JSONDeserialize(e, content) => LlmError::new(
                ErrorKind::MalformedResponse,
                format!(
                    "the provider at {base} sent data that is not a Chat Completions stream ({e}): {}",
                    clip(&content)
                ),
            ),
            other => LlmError::new(ErrorKind::ProviderRejected, other.to_string()),
        }
    }
}

fn clip(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// One `chat.completion.chunk`, with only the fields Pryx reads; everything is optional
/// because compatible servers omit different ones.
#[derive(Debug, Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Vec<WireChoice>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: WireDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCallDelta>>,
}

#[derive(Debug, Deserialize)]
struct WireToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunctionDelta>,
}

#[derive(Debug, Deserialize)]
struct WireFunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
}

/// Finds the provider to use, once configuration allows, and remembers it.
///
/// Resolution is lazy (first turn or `system.info`), so start-up never waits on the network.
/// When nothing is configured it probes the local servers; a miss is cached briefly so a
/// user who starts Ollama after Pryx gets it within seconds.
pub struct ProviderResolver {
    /// Replaced whole when the user changes the provider (`provider.set`).
    config: std::sync::RwLock<LlmConfig>,
    /// Where a GitHub login's models are (GitHub Models), when nothing else is configured.
    cloud: CloudConfig,
    secrets: SecretsHandle,
    state: Mutex<Resolution>,
}

enum Resolution {
    Unresolved,
    /// `recheck`: when to resolve again (a provider that uses a login's token).
    Ready {
        provider: Box<Provider>,
        recheck: Option<Instant>,
    },
    NotFound {
        at: Instant,
    },
}

impl ProviderResolver {
    pub fn new(config: LlmConfig, cloud: CloudConfig, secrets: SecretsHandle) -> Self {
        ProviderResolver {
            config: std::sync::RwLock::new(config),
            cloud,
            secrets,
            state: Mutex::new(Resolution::Unresolved),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> LlmConfig {
        self.config.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Runs `change` (a login stored or forgotten) while no request can resolve, then forgets
    /// what was resolved: whoever sees the change also sees the provider it makes.
    pub async fn around<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        let mut state = self.state.lock().await;
        let out = change.await;
        *state = Resolution::Unresolved;
        out
    }

    /// Use `config` from the next request on (turns already running keep their provider).
    pub async fn reconfigure(&self, config: LlmConfig) {
        let mut state = self.state.lock().await;
        *self.config.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        *state = Resolution::Unresolved;
    }

    /// Make one small real request with `config` (the user's "Test" button): the model
    /// that answered and how long it took, or the provider's error in words. No retries,
    /// so a wrong setting fails at once.
    pub async fn test(&self, config: LlmConfig) -> Result<(ProviderInfo, Duration), LlmError> {
        let config = LlmConfig { max_retries: 0, max_output_tokens: Some(16), ..config };
        let resolver = ProviderResolver::new(config, self.cloud.clone(), self.secrets.clone());
        let provider = resolver.provider().await?;
        let started = Instant::now();
        let request = ChatRequest {
            messages: vec![WireMessage::user("Reply with the single word OK.")],
            tools: std::sync::Arc::new(Vec::new()),
        };
        provider.stream_chat(&request, |_| {}).await?;
        Ok((provider.info, started.elapsed()))
    }

    /// The provider, or an error that tells the user how to configure one.
    pub async fn provider(&self) -> Result<Provider, LlmError> {
        let mut state = self.state.lock().await;
        match &*state {
            Resolution::Ready { provider, recheck } if recheck.is_none_or(|at| Instant::now() < at) => {
                return Ok((**provider).clone())
            }
            Resolution::NotFound { at } if at.elapsed() < PROBE_CACHE => return Err(not_configured()),
            _ => {}
        }
        match self.resolve().await? {
            Some(provider) => {
                let recheck = (provider.info.source == "github").then(|| Instant::now() + LOGIN_RECHECK);
                *state = Resolution::Ready { provider: Box::new(provider.clone()), recheck };
                Ok(provider)
            }
            None => {
                *state = Resolution::NotFound { at: Instant::now() };
                Err(not_configured())
            }
        }
    }

    /// What `system.info` shows, without failing when nothing is configured.
    pub async fn info(&self) -> ProviderInfo {
        match self.provider().await {
            Ok(p) => p.info,
            Err(_) => ProviderInfo { source: "none".into(), base_url: None, model: None, has_api_key: false },
        }
    }

    /// The API key, read from the keychain when the config names a `secret:` reference.
    async fn api_key(&self) -> Result<Option<SecretString>, LlmError> {
        let Some(value) = self.config().api_key else { return Ok(None) };
        self.secrets.run(move |secrets| secrets.resolve(&value)).await.map(Some).map_err(|e| {
            LlmError::new(ErrorKind::NotConfigured, format!("cannot read the LLM API key (llm.api_key): {e}"))
        })
    }

    async fn resolve(&self) -> Result<Option<Provider>, LlmError> {
        let c = &self.config();
        let api_key = self.api_key().await?;
        let key = api_key.as_ref();
        if let Some(base) = &c.base_url {
            let model = match &c.model {
                Some(m) => m.clone(),
                None => first_model(base, key.map(SecretString::expose)).await.ok_or_else(|| {
                    LlmError::new(
                        ErrorKind::NotConfigured,
                        format!("no model is set and {base}/models lists none; set PRYX_LLM_MODEL or llm.model"),
                    )
                })?,
            };
            return Provider::new(c, key, "configured", base, model).map(Some);
        }
        if key.is_some() {
            let model = c.model.clone().unwrap_or_else(|| OPENAI_DEFAULT_MODEL.into());
            return Provider::new(c, key, "openai", OPENAI_BASE_URL, model).map(Some);
        }
        // A GitHub login is a choice the user made: it comes before what merely answers here.
        let github = match auth::access_token(&self.cloud, &self.secrets, auth::Provider::GitHub).await {
            Ok(token) => token,
            // A keychain that cannot answer holds no login to use; a local server still may.
            Err(auth::AuthError::Keychain(e)) => {
                tracing::warn!("cannot look for a GitHub login in the keychain: {e}");
                None
            }
            Err(e) => {
                return Err(LlmError::new(
                    ErrorKind::ProviderAuth,
                    format!("cannot use the GitHub login for GitHub Models: {e}"),
                ))
            }
        };
        if let Some(token) = github {
            let model = c.model.clone().unwrap_or_else(|| self.cloud.github_models_model.clone());
            return Provider::new(c, Some(&token), "github", &self.cloud.github_models_url, model).map(Some);
        }
        if c.autodetect_local {
            for (source, base) in LOCAL_SERVERS {
                if let Some(found) = first_model(base, None).await {
                    let model = c.model.clone().unwrap_or(found);
                    tracing::info!(source, base, model, "using a local LLM server found on this machine");
                    return Provider::new(c, None, source, base, model).map(Some);
                }
            }
        }
        Ok(None)
    }
}

fn not_configured() -> LlmError {
    LlmError::new(
        ErrorKind::NotConfigured,
        "No LLM provider is configured. Set PRYX_LLM_BASE_URL (any OpenAI-compatible endpoint, e.g. \
         https://api.openai.com/v1), PRYX_LLM_MODEL and PRYX_LLM_API_KEY (or OPENAI_API_KEY), or put \
         base_url, model and api_key under [llm] in the config file (`pryx config path` shows where), \
         or start Ollama (127.0.0.1:11434) or LM Studio (127.0.0.1:1234) and Pryx will find it.",
    )
}

/// The first model a server lists at `GET {base}/models`, if it answers quickly.
async fn first_model(base: &str, api_key: Option<&str>) -> Option<String> {
    let client = reqwest::Client::builder().timeout(Duration::from_millis(800)).build().ok()?;
    let mut request = client.get(format!("{}/models", base.trim_end_matches('/')));
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let list: Value = request.send().await.ok()?.error_for_status().ok()?.json().await.ok()?;
    list["data"].as_array()?.iter().find_map(|m| m["id"].as_str().map(str::to_owned))
}
