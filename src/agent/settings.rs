//! Settings applied by a restart of the runtime: the workspace and telemetry. They are
//! written to the config file (secrets to the keychain), then the supervisor starts the
//! next runtime with the file read again.

use std::path::Path;

use pryx_api::{AgentSettings, SettingsChange};

use super::{Agent, AgentError};
use crate::secrets;

/// The OTLP export header the Settings screen sets (its value goes to the keychain).
const EXPORT_AUTHORIZATION_HEADER: &str = "authorization";

impl Agent {
    // ---- settings applied by a restart of the runtime ----

    /// The workspace and telemetry settings (see `settings.get`).
    pub fn settings(&self) -> AgentSettings {
        let telemetry = &self.config.telemetry;
        AgentSettings {
            workspace: self.config.tools.workspace.as_ref().map(|p| p.display().to_string()),
            workspace_in_use: self.workspace.root().display().to_string(),
            capture_content: telemetry.capture_content,
            export_endpoint: telemetry.otlp.endpoint.clone(),
            export_authorization: telemetry.otlp.headers.contains_key(EXPORT_AUTHORIZATION_HEADER),
        }
    }

    /// Write new settings, then ask the supervisor for a runtime with them (see
    /// `settings.set`). Answers the settings as they will be after the restart.
    pub async fn set_settings(&self, change: SettingsChange) -> Result<AgentSettings, AgentError> {
        let SettingsChange { workspace, capture_content, export_endpoint, export_authorization } = change;
        if self.turns.activity().borrow().running_turns > 0 {
            return Err(AgentError::Conflict(
                "a turn is running; change the settings when it has finished (or stop it)".into(),
            ));
        }
        let path = self.config_file()?;
        let mut after = self.settings();
        let mut tools: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(workspace) = workspace.as_deref().map(str::trim) {
            after.workspace = match workspace {
                "" => None,
                dir => Some(check_workspace(dir)?),
            };
            tools.push(("workspace", after.workspace.clone().map(Into::into)));
        }
        let mut telemetry: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(capture) = capture_content {
            after.capture_content = capture;
            telemetry.push(("capture_content", Some(capture.into())));
        }
        let mut otlp: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        if let Some(endpoint) = export_endpoint.as_deref().map(str::trim) {
            after.export_endpoint = match endpoint.trim_end_matches('/') {
                "" => None,
                url => Some(check_export_endpoint(url)?),
            };
            otlp.push(("endpoint", after.export_endpoint.clone().map(Into::into)));
        }
        let mut headers: Vec<(&str, Option<toml_edit::Value>)> = Vec::new();
        match export_authorization.as_deref().map(str::trim) {
            None => {}
            Some("") => {
                after.export_authorization = false;
                headers.push((EXPORT_AUTHORIZATION_HEADER, None));
            }
            Some(value) => {
                if value.len() > 8 * 1024 || value.contains(['\r', '\n']) {
                    return Err(AgentError::InvalidInput("the authorization header must be one line".into()));
                }
                let name = secrets::otlp_header_secret(EXPORT_AUTHORIZATION_HEADER);
                self.set_secret(&name, value.to_owned()).await?;
                after.export_authorization = true;
                headers.push((EXPORT_AUTHORIZATION_HEADER, Some(secrets::reference_to(&name).into())));
            }
        }
        let changes: Vec<(&str, crate::config::edit::Changes<'_>)> = [
            ("tools", &tools),
            ("telemetry", &telemetry),
            ("telemetry.otlp", &otlp),
            ("telemetry.otlp.headers", &headers),
        ]
        .into_iter()
        .filter(|(_, values)| !values.is_empty())
        .map(|(table, values)| (table, values.as_slice()))
        .collect();
        // All or nothing: one edit of the file.
        crate::config::edit::set_tables(path, &changes)?;
        if export_authorization.as_deref().map(str::trim) == Some("") {
            if let Err(e) = self.delete_secret(&secrets::otlp_header_secret(EXPORT_AUTHORIZATION_HEADER)).await {
                tracing::debug!("no export authorization to forget: {e}");
            }
        }
        tracing::info!("settings changed; restarting the agent runtime to apply them");
        self.reload.cancel();
        Ok(after)
    }
}

/// A workspace directory given in the UI: absolute, and a directory if it exists (Pryx
/// creates it otherwise, as at start).
fn check_workspace(dir: &str) -> Result<String, AgentError> {
    let path = Path::new(dir);
    if !path.is_absolute() {
        return Err(AgentError::InvalidInput(format!("`{dir}` is not an absolute path (like /home/me/work)")));
    }
    if path.exists() && !path.is_dir() {
        return Err(AgentError::InvalidInput(format!("`{dir}` is a file, not a directory")));
    }
    Ok(dir.to_owned())
}

/// An OTLP/HTTP receiver's base URL.
fn check_export_endpoint(url: &str) -> Result<String, AgentError> {
    crate::config::check_url(url).map_err(AgentError::InvalidInput)?;
    Ok(url.to_owned())
}
