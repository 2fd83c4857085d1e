//! The JSON-RPC face of the agent: implements the `pryx-api` trait by calling [`Agent`].
//!
//! This layer only translates: parameters in, [`AgentError`] to JSON-RPC error codes out,
//! agent event streams to subscriptions. It holds no state of its own.

use std::sync::Arc;

use jsonrpsee::core::{async_trait, to_json_raw_value, SubscriptionResult};
use jsonrpsee::types::ErrorObjectOwned;
use jsonrpsee::PendingSubscriptionSink;
use pryx_api::{
    error_code, rpc_error, Activity, AgentSettings, Approval, ApprovalDecision, ChannelName, ChannelReply,
    ChannelStatus, McpOverview, McpServerConfig, McpServerStatus, McpToolInfo, PairingCode, ProviderChange,
    ProviderInfo, ProviderSettings, ProviderTest, PryxApiServer, Rule, Session, SessionDetail, SettingsChange,
    SpanQuery, SpanRecord, SystemInfo, TelegramSetup, ToolPolicy, TurnEventEnvelope, TurnStarted, WhatsAppSetup,
};
use tokio::sync::{broadcast, mpsc};

use crate::agent::{Agent, AgentError};
use crate::channels::{ChannelError, Channels};
use crate::mcp::config_file::{parse_mcp_servers_json, EditError};
use crate::mcp::McpError;
use crate::telemetry::history::Keep;

/// The server-side implementation of [`PryxApiServer`].
pub struct RpcApi {
    agent: Arc<Agent>,
    channels: Arc<Channels>,
}

impl RpcApi {
    pub fn new(agent: Arc<Agent>, channels: Arc<Channels>) -> Self {
        RpcApi { agent, channels }
    }
}

impl From<ChannelError> for ErrorObjectOwned {
    fn from(e: ChannelError) -> Self {
        let code = match &e {
            ChannelError::NotConfigured(_) | ChannelError::Connecting | ChannelError::Stopped => {
                error_code::UNAVAILABLE
            }
            ChannelError::Invalid(_) | ChannelError::Refused(_) => error_code::INVALID_INPUT,
            ChannelError::Config(EditError::File { .. }) => error_code::UNAVAILABLE,
            ChannelError::Config(_) => error_code::INVALID_INPUT,
            ChannelError::Store(_) | ChannelError::NotStored(_) => error_code::INTERNAL,
        };
        rpc_error(code, e.to_string())
    }
}

impl From<McpError> for ErrorObjectOwned {
    fn from(e: McpError) -> Self {
        let code = match &e {
            McpError::NotFound(_) | McpError::Edit(EditError::NotFound(_)) => error_code::NOT_FOUND,
            McpError::Edit(EditError::Exists(_)) => error_code::CONFLICT,
            McpError::Edit(EditError::Invalid(_) | EditError::Config(_)) => error_code::INVALID_INPUT,
            McpError::NotHttp(_) | McpError::Login(_) => error_code::INVALID_INPUT,
            McpError::NoConfigFile | McpError::NoRedirect | McpError::Edit(EditError::File { .. }) => {
                error_code::UNAVAILABLE
            }
        };
        rpc_error(code, e.to_string())
    }
}

impl From<AgentError> for ErrorObjectOwned {
    fn from(e: AgentError) -> Self {
        let code = match &e {
            AgentError::NotFound(_) => error_code::NOT_FOUND,
            AgentError::InvalidInput(_) => error_code::INVALID_INPUT,
            AgentError::ShuttingDown => error_code::UNAVAILABLE,
            AgentError::Conflict(_) => error_code::CONFLICT,
            AgentError::Paused => error_code::UNAVAILABLE,
            AgentError::FaultsDisabled => jsonrpsee::types::error::METHOD_NOT_FOUND_CODE,
            AgentError::Store(_) | AgentError::Spans(_) => error_code::INTERNAL,
            AgentError::Config(EditError::NotFound(_)) => error_code::NOT_FOUND,
            AgentError::Config(EditError::Exists(_)) => error_code::CONFLICT,
            AgentError::Config(EditError::Invalid(_) | EditError::Config(_)) => error_code::INVALID_INPUT,
            AgentError::Config(EditError::File { .. }) => error_code::UNAVAILABLE,
        };
        rpc_error(code, e.to_string())
    }
}

#[async_trait]
impl PryxApiServer for RpcApi {
    async fn session_create(&self, title: Option<String>) -> Result<Session, ErrorObjectOwned> {
        Ok(self.agent.create_session(title).await?)
    }

    async fn session_list(&self) -> Result<Vec<Session>, ErrorObjectOwned> {
        Ok(self.agent.sessions().await?)
    }

    async fn session_get(&self, session_id: String) -> Result<SessionDetail, ErrorObjectOwned> {
        Ok(self.agent.session(&session_id).await?)
    }

    async fn session_rename(&self, session_id: String, title: String) -> Result<Session, ErrorObjectOwned> {
        Ok(self.agent.rename_session(&session_id, &title).await?)
    }

    async fn session_delete(&self, session_id: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.delete_session(&session_id).await?)
    }

    async fn message_send(&self, session_id: String, text: String) -> Result<TurnStarted, ErrorObjectOwned> {
        Ok(self.agent.turns().send(&session_id, text).await?)
    }

    async fn turn_subscribe(&self, pending: PendingSubscriptionSink, turn_id: String) -> SubscriptionResult {
        if let Err(e) = self.agent.turns().check_turn(&turn_id).await {
            pending.reject(ErrorObjectOwned::from(e)).await;
            return Ok(());
        }
        let sink = pending.accept().await?;
        let (tx, mut rx) = mpsc::channel::<TurnEventEnvelope>(256);
        let follow = self.agent.turns().follow_turn(&turn_id, tx);
        let forward = async {
            while let Some(envelope) = rx.recv().await {
                if sink.send(to_json_raw_value(&envelope)?).await.is_err() {
                    break;
                }
            }
            Ok::<(), serde_json::Error>(())
        };
        let (followed, forwarded) = tokio::join!(follow, forward);
        if let Err(e) = followed {
            tracing::debug!("turn subscription ended: {e}");
        }
        forwarded?;
        Ok(())
    }

    async fn events_subscribe(
        &self,
        pending: PendingSubscriptionSink,
        session_id: Option<String>,
    ) -> SubscriptionResult {
        let events = self.agent.turns().subscribe_events();
        forward(pending, events, |e: &TurnEventEnvelope| session_id.as_ref().is_none_or(|s| *s == e.session_id)).await
    }

    async fn turn_cancel(&self, turn_id: String) -> Result<bool, ErrorObjectOwned> {
        Ok(self.agent.turns().cancel(&turn_id).await?)
    }

    async fn system_info(&self) -> Result<SystemInfo, ErrorObjectOwned> {
        Ok(self.agent.system_info().await)
    }

    async fn approval_list(&self, include_settled: Option<bool>) -> Result<Vec<Approval>, ErrorObjectOwned> {
        Ok(self.agent.approvals(include_settled.unwrap_or(false)).await?)
    }

    async fn approval_answer(
        &self,
        approval_id: String,
        decision: ApprovalDecision,
        note: Option<String>,
        answered_by: Option<String>,
    ) -> Result<Approval, ErrorObjectOwned> {
        Ok(self.agent.answer_approval(&approval_id, decision, note, answered_by).await?)
    }

    async fn approvals_subscribe(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        forward(pending, self.agent.subscribe_approvals(), |_: &Approval| true).await
    }

    async fn activity_get(&self) -> Result<Activity, ErrorObjectOwned> {
        Ok(self.agent.activity().borrow().clone())
    }

    async fn activity_subscribe(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let mut activity = self.agent.activity();
        let sink = pending.accept().await?;
        loop {
            let now = activity.borrow_and_update().clone();
            if sink.send(to_json_raw_value(&now)?).await.is_err() {
                return Ok(());
            }
            tokio::select! {
                changed = activity.changed() => if changed.is_err() { return Ok(()) },
                _ = sink.closed() => return Ok(()),
            }
        }
    }

    async fn agent_pause(&self, paused: bool) -> Result<Activity, ErrorObjectOwned> {
        Ok(self.agent.set_paused(paused))
    }

    async fn spans_query(&self, query: SpanQuery) -> Result<Vec<SpanRecord>, ErrorObjectOwned> {
        let keep = if query.newest.unwrap_or(false) { Keep::Latest } else { Keep::Earliest };
        let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
        Ok(self.agent.spans(query.session_id.as_deref(), query.since_us.unwrap_or(0), limit, keep).await?)
    }

    async fn spans_subscribe(
        &self,
        pending: PendingSubscriptionSink,
        session_id: Option<String>,
    ) -> SubscriptionResult {
        let spans = crate::telemetry::hub().subscribe();
        forward(pending, spans, |s: &SpanRecord| session_id.is_none() || s.session_id == session_id).await
    }

    async fn secret_set(&self, name: String, value: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.set_secret(&name, value).await?)
    }

    async fn secret_delete(&self, name: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.delete_secret(&name).await?)
    }

    async fn secret_list(&self) -> Result<Vec<String>, ErrorObjectOwned> {
        Ok(self.agent.secret_names().await?)
    }

    async fn mcp_list(&self) -> Result<McpOverview, ErrorObjectOwned> {
        Ok(self.agent.mcp().overview())
    }

    async fn mcp_tools(&self, server: Option<String>) -> Result<Vec<McpToolInfo>, ErrorObjectOwned> {
        let rules = self.agent.rules();
        Ok(self.agent.mcp().tools(server.as_deref(), |tool| rules.rule_for(tool))?)
    }

    async fn mcp_add(
        &self,
        name: String,
        server: McpServerConfig,
        replace: Option<bool>,
    ) -> Result<McpServerStatus, ErrorObjectOwned> {
        let mut statuses = self.agent.mcp().add(vec![(name.clone(), server)], replace.unwrap_or(false)).await?;
        statuses.pop().ok_or_else(|| rpc_error(error_code::INTERNAL, format!("`{name}` was not started")))
    }

    async fn provider_get(&self) -> Result<ProviderSettings, ErrorObjectOwned> {
        Ok(self.agent.provider_settings().await)
    }

    async fn provider_set(&self, change: ProviderChange) -> Result<ProviderInfo, ErrorObjectOwned> {
        Ok(self.agent.set_provider(change).await?)
    }

    async fn provider_test(&self, change: ProviderChange) -> Result<ProviderTest, ErrorObjectOwned> {
        Ok(self.agent.test_provider(change).await?)
    }

    async fn tools_list(&self) -> Result<Vec<ToolPolicy>, ErrorObjectOwned> {
        Ok(self.agent.rules().tool_policies())
    }

    async fn tools_set_rule(&self, tool: String, rule: Option<Rule>) -> Result<ToolPolicy, ErrorObjectOwned> {
        Ok(self.agent.rules().set_tool_rule(self.agent.config_file(), &tool, rule)?)
    }

    async fn mcp_remove(&self, name: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.mcp().remove(&name).await?)
    }

    async fn mcp_restart(&self, name: String) -> Result<McpServerStatus, ErrorObjectOwned> {
        Ok(self.agent.mcp().restart(&name).await?)
    }

    async fn mcp_import(&self, json: String, replace: Option<bool>) -> Result<Vec<String>, ErrorObjectOwned> {
        let servers = parse_mcp_servers_json(&json).map_err(McpError::from)?;
        let replace = replace.unwrap_or(false);
        let existing: Vec<String> = self.agent.mcp().overview().servers.into_iter().map(|s| s.name).collect();
        let new: Vec<_> = servers.into_iter().filter(|(name, _)| replace || !existing.contains(name)).collect();
        let names = new.iter().map(|(name, _)| name.clone()).collect();
        if !new.is_empty() {
            self.agent.mcp().add(new, replace).await?;
        }
        Ok(names)
    }

    async fn mcp_login(&self, name: String) -> Result<String, ErrorObjectOwned> {
        Ok(self.agent.mcp().login(&name).await?)
    }

    async fn mcp_logout(&self, name: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.mcp().logout(&name).await?)
    }

    async fn auth_status(&self) -> Result<Vec<pryx_api::LoginStatus>, ErrorObjectOwned> {
        Ok(self.agent.login_status().await?)
    }

    async fn auth_login_start(
        &self,
        provider: pryx_api::LoginProvider,
    ) -> Result<pryx_api::LoginStarted, ErrorObjectOwned> {
        let mut started = self.agent.login_start(provider).await?;
        let link = started.verification_uri_complete.as_deref().unwrap_or(&started.verification_uri);
        started.qr = crate::channels::qr::encode(link);
        Ok(started)
    }

    async fn auth_login_subscribe(&self, pending: PendingSubscriptionSink, login_id: String) -> SubscriptionResult {
        let mut updates = match self.agent.login_updates(&login_id) {
            Ok(updates) => updates,
            Err(e) => {
                pending.reject(ErrorObjectOwned::from(e)).await;
                return Ok(());
            }
        };
        let sink = pending.accept().await?;
        loop {
            let now = updates.borrow_and_update().clone();
            let finished = now.state != pryx_api::LoginState::Waiting;
            if sink.send(to_json_raw_value(&now)?).await.is_err() || finished {
                return Ok(());
            }
            tokio::select! {
                changed = updates.changed() => if changed.is_err() { return Ok(()) },
                _ = sink.closed() => return Ok(()),
            }
        }
    }

    async fn auth_logout(&self, provider: pryx_api::LoginProvider) -> Result<bool, ErrorObjectOwned> {
        Ok(self.agent.logout(provider).await?)
    }

    async fn channel_pairing_code(&self, channel: ChannelName) -> Result<PairingCode, ErrorObjectOwned> {
        Ok(self.channels.pairing_code(channel).await?)
    }

    async fn settings_get(&self) -> Result<AgentSettings, ErrorObjectOwned> {
        Ok(self.agent.settings())
    }

    async fn settings_set(&self, change: SettingsChange) -> Result<AgentSettings, ErrorObjectOwned> {
        Ok(self.agent.set_settings(change).await?)
    }

    async fn channel_status(&self) -> Result<Vec<ChannelStatus>, ErrorObjectOwned> {
        Ok(self.channels.status().await?)
    }

    async fn channels_subscribe(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        let sink = pending.accept().await?;
        let mut changes = self.channels.status_changes();
        loop {
            changes.mark_unchanged();
            let statuses = self.channels.status().await?;
            if sink.send(to_json_raw_value(&statuses)?).await.is_err() {
                return Ok(());
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return Ok(()) },
                _ = sink.closed() => return Ok(()),
            }
            // A burst of webhooks changes `last_message_at` thousands of times a second:
            // one status every quarter second is live enough and costs the agent nothing.
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    async fn channel_telegram_set(&self, setup: TelegramSetup) -> Result<ChannelStatus, ErrorObjectOwned> {
        Ok(self.channels.set_telegram(setup).await?)
    }

    async fn channel_whatsapp_set(&self, setup: WhatsAppSetup) -> Result<ChannelStatus, ErrorObjectOwned> {
        Ok(self.channels.set_whatsapp(setup).await?)
    }

    async fn channel_disconnect(&self, channel: ChannelName) -> Result<ChannelStatus, ErrorObjectOwned> {
        Ok(self.channels.disconnect(channel).await?)
    }

    async fn channel_replies(
        &self,
        channel: ChannelName,
        limit: Option<u32>,
    ) -> Result<Vec<ChannelReply>, ErrorObjectOwned> {
        Ok(self.channels.replies(channel, limit.unwrap_or(100)).await?)
    }

    async fn mcp_subscribe(&self, pending: PendingSubscriptionSink) -> SubscriptionResult {
        forward(pending, self.agent.mcp().subscribe(), |_: &McpServerStatus| true).await
    }

    async fn debug_fault(&self, kind: String) -> Result<(), ErrorObjectOwned> {
        Ok(self.agent.inject_fault(&kind)?)
    }
}

/// Pipe a broadcast channel into a subscription until either side closes. A subscriber too
/// slow to keep up skips what it missed (the store has it) instead of slowing the agent.
async fn forward<T: Clone + serde::Serialize>(
    pending: PendingSubscriptionSink,
    mut source: broadcast::Receiver<T>,
    wanted: impl Fn(&T) -> bool,
) -> SubscriptionResult {
    let sink = pending.accept().await?;
    loop {
        let item = tokio::select! {
            received = source.recv() => match received {
                Ok(item) => item,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "a subscriber is too slow; items were skipped");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = sink.closed() => return Ok(()),
        };
        if wanted(&item) && sink.send(to_json_raw_value(&item)?).await.is_err() {
            return Ok(());
        }
    }
}
