//! The model provider as the owner sees it: its settings, changing them (the key to the
//! keychain, the rest to `[llm]` in the config file, then in force at once), and trying
//! settings before they are saved.

use pryx_api::{ProviderChange, ProviderInfo, ProviderSettings, ProviderTest};

use super::{Agent, AgentError};
use crate::secrets;

/// An OpenAI-compatible base URL: http(s), no query; without the trailing slash.
/// The same rule as `llm.base_url` in the file, said for someone typing it into a form.
fn check_base_url(text: &str) -> Result<String, AgentError> {
    let text = text.trim().trim_end_matches('/');
    let usable = crate::config::check_url(text).is_ok() && !text.contains('?');
    if !usable {
        return Err(AgentError::InvalidInput(format!(
            "`{text}` is not an http(s) base URL like https://api.openai.com/v1"
        )));
    }
    Ok(text.to_owned())
}

impl Agent {
    // ---- the LLM provider ----

    /// The provider settings as configured.
    pub async fn provider_settings(&self) -> ProviderSettings {
        let config = self.llm.config();
        let overridden_by_env = ["PRYX_LLM_BASE_URL", "PRYX_LLM_MODEL", "PRYX_LLM_API_KEY", "OPENAI_API_KEY"]
            .into_iter()
            .filter(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
            .map(str::to_owned)
            .collect();
        ProviderSettings {
            base_url: config.base_url,
            model: config.model,
            has_api_key: config.api_key.is_some(),
            overridden_by_env,
            github: self
                .login_status()
                .await
                .ok()
                .and_then(|all| all.into_iter().find(|s| s.provider == pryx_api::LoginProvider::Github)),
        }
    }

    /// The current settings with the user's changes applied; the key as given (plain).
    fn provider_config(&self, change: ProviderChange) -> Result<crate::config::LlmConfig, AgentError> {
        let ProviderChange { base_url, model, api_key } = change;
        let mut config = self.llm.config();
        if let Some(base_url) = base_url {
            config.base_url = Some(check_base_url(&base_url)?);
        }
        if let Some(model) = model {
            let model = model.trim();
            if model.chars().count() > 200 {
                return Err(AgentError::InvalidInput("the model name is longer than 200 characters".into()));
            }
            config.model = (!model.is_empty()).then(|| model.to_owned());
        }
        match api_key.as_deref().map(str::trim) {
            None => {}
            Some("") => config.api_key = None,
            Some(key) if key.len() > 16 * 1024 => {
                return Err(AgentError::InvalidInput("the API key is longer than 16 KiB".into()))
            }
            Some(key) => config.api_key = Some(key.to_owned()),
        }
        Ok(config)
    }

    /// Save and use new provider settings (see `provider.set`).
    pub async fn set_provider(&self, change: ProviderChange) -> Result<ProviderInfo, AgentError> {
        let _one_at_a_time = self.provider_edit.lock().await;
        let new_key = change.api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()).map(str::to_owned);
        let mut config = self.provider_config(change)?;
        let path = self.config_file()?;
        // The key goes to the keychain; the file only names it.
        if let Some(key) = new_key {
            self.set_secret(secrets::LLM_API_KEY, key).await?;
            config.api_key = Some(secrets::reference_to(secrets::LLM_API_KEY));
        }
        crate::config::edit::set_values(
            path,
            "llm",
            &[
                ("base_url", config.base_url.as_deref()),
                ("model", config.model.as_deref()),
                ("api_key", config.api_key.as_deref()),
            ],
        )?;
        self.llm.reconfigure(config).await;
        Ok(self.llm.info().await)
    }

    /// Try settings without saving them (see `provider.test`).
    pub async fn test_provider(&self, change: ProviderChange) -> Result<ProviderTest, AgentError> {
        let config = self.provider_config(change)?;
        Ok(match self.llm.test(config).await {
            Ok((info, took)) => ProviderTest {
                ok: true,
                message: format!("{} answered", info.model.as_deref().unwrap_or("the model")),
                model: info.model,
                latency_ms: took.as_millis() as u64,
            },
            Err(e) => ProviderTest { ok: false, message: e.message, model: None, latency_ms: 0 },
        })
    }
}
