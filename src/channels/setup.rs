//! Connecting the channels, from the config at start or from the API while Pryx runs, and
//! how each one is doing.
//!
//! `channel.telegram_set` and `channel.whatsapp_set` check the credentials with the
//! platform (Telegram's `getMe`, the Graph API's phone number) before anything is saved;
//! only then do the tokens go to the keychain, `[telegram]`/`[whatsapp]` in the config file
//! name them, and the new platform replaces the running one: no restart. A platform that
//! cannot connect at start shows as failed and is tried again every half minute, until it
//! connects or its settings change. `channel.status` and `channels.subscribe` report it all.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pryx_api::{ChannelName, ChannelState, ChannelStatus, TelegramSetup, WhatsAppSetup};
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::platform::{TelegramChannel, WhatsAppChannel};
use super::telegram::BotApi;
use super::whatsapp::CloudApi;
use super::{tables, ChannelError, Channels, Connected};
use crate::config::{Config, TelegramConfig, TelegramMode, WhatsAppConfig};
use crate::secrets::{
    self, SecretString, TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET, WHATSAPP_ACCESS_TOKEN, WHATSAPP_APP_SECRET,
    WHATSAPP_VERIFY_TOKEN,
};

/// The host names webhooks arrive under (from the platforms' public URLs), shared with the
/// server's Host check, which lets them in.
pub type PublicHosts = std::sync::Arc<std::sync::RwLock<Vec<String>>>;

/// How long a platform that could not connect waits before the next try.
const RETRY_EVERY: Duration = Duration::from_secs(30);

/// The channels' settings in use and each platform's state.
pub(super) struct Setup {
    telegram: Mutex<TelegramConfig>,
    whatsapp: Mutex<WhatsAppConfig>,
    links: Mutex<HashMap<ChannelName, Link>>,
    /// Host names the platforms post to, for the server's Host check (shared with it).
    public_hosts: PublicHosts,
    /// One change of settings at a time, so the file, the keychain and what runs agree.
    edit: tokio::sync::Mutex<()>,
    /// Bumped on every change a status reader would see.
    changes: watch::Sender<()>,
}

/// How one platform is doing.
#[derive(Debug, Clone)]
struct Link {
    state: ChannelState,
    error: Option<String>,
    account: Option<String>,
    /// Bumped by every change of settings: a retry of older settings gives up.
    generation: u64,
}

impl Link {
    fn new(configured: bool) -> Link {
        let state = if configured { ChannelState::Connecting } else { ChannelState::Off };
        Link { state, error: None, account: None, generation: 0 }
    }
}

impl Setup {
    pub(super) fn new(config: &Config) -> Setup {
        let links = HashMap::from([
            (ChannelName::Telegram, Link::new(config.telegram.bot_token.is_some())),
            (ChannelName::Whatsapp, Link::new(config.whatsapp.access_token.is_some())),
        ]);
        let setup = Setup {
            telegram: Mutex::new(config.telegram.clone()),
            whatsapp: Mutex::new(config.whatsapp.clone()),
            links: Mutex::new(links),
            public_hosts: PublicHosts::default(),
            edit: tokio::sync::Mutex::new(()),
            changes: watch::Sender::new(()),
        };
        setup.update_public_hosts();
        setup
    }

    /// Something a status reader sees has changed.
    pub(super) fn changed(&self) {
        self.changes.send_replace(());
    }

    fn telegram(&self) -> TelegramConfig {
        self.telegram.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn whatsapp(&self) -> WhatsAppConfig {
        self.whatsapp.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn link(&self, channel: ChannelName) -> Link {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get(&channel).cloned().unwrap_or_else(|| Link::new(false))
    }

    /// Change a platform's state; `account` None keeps the known one.
    fn set(&self, channel: ChannelName, state: ChannelState, error: Option<String>, account: Option<String>) {
        {
            let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            let Some(link) = links.get_mut(&channel) else { return };
            link.state = state;
            link.error = error;
            if account.is_some() || state == ChannelState::Off {
                link.account = account;
            }
        }
        self.changed();
    }

    /// A new setting for `channel`: retries of the old one stop.
    fn bump(&self, channel: ChannelName) {
        if let Some(link) = self.links.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&channel) {
            link.generation += 1;
        }
    }

    /// The running platform (its `stop` not cancelled) answered: it is connected. Called
    /// on every poll and every reply sent, so it only looks (no copy) unless state changes.
    pub(super) fn reached(&self, channel: ChannelName, stop: &CancellationToken) {
        let connected = {
            let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
            links.get(&channel).is_some_and(|link| link.state == ChannelState::Connected)
        };
        if !connected && !stop.is_cancelled() {
            self.set(channel, ChannelState::Connected, None, None);
        }
    }

    /// The running platform could not be reached (it keeps trying).
    pub(super) fn unreachable(&self, channel: ChannelName, stop: &CancellationToken, why: &str) {
        let link = self.link(channel);
        if stop.is_cancelled() || (link.state == ChannelState::Failed && link.error.as_deref() == Some(why)) {
            return;
        }
        self.set(channel, ChannelState::Failed, Some(why.to_owned()), None);
    }

    /// Let the Host names of the configured public URLs through the server's check.
    fn update_public_hosts(&self) {
        let telegram = self.telegram();
        let webhook = telegram.mode == TelegramMode::Webhook && telegram.bot_token.is_some();
        let urls = [webhook.then_some(telegram.public_url).flatten(), self.whatsapp().public_url];
        let hosts =
            urls.iter().flatten().filter_map(|u| url::Url::parse(u).ok()?.host_str().map(str::to_owned)).collect();
        *self.public_hosts.write().unwrap_or_else(|p| p.into_inner()) = hosts;
    }
}

/// A platform connected from its settings (`None`: not configured).
enum Opened {
    Telegram(Option<Arc<TelegramChannel>>),
    WhatsApp(Option<Arc<WhatsAppChannel>>),
}

impl Opened {
    fn apply(self, connected: &mut Connected) {
        match self {
            Opened::Telegram(telegram) => connected.telegram = telegram,
            Opened::WhatsApp(whatsapp) => connected.whatsapp = whatsapp,
        }
    }
}

impl Channels {
    /// The Host names the platforms post webhooks to, kept current (for the server).
    pub fn public_hosts(&self) -> PublicHosts {
        self.setup.public_hosts.clone()
    }

    /// Wakes whenever a status would read differently.
    pub fn status_changes(&self) -> watch::Receiver<()> {
        self.setup.changes.subscribe()
    }

    /// Both channels' status, Telegram first.
    pub async fn status(&self) -> Result<Vec<ChannelStatus>, ChannelError> {
        let mut statuses = Vec::with_capacity(ChannelName::ALL.len());
        for channel in ChannelName::ALL {
            statuses.push(self.status_of(channel).await?);
        }
        Ok(statuses)
    }

    async fn status_of(&self, channel: ChannelName) -> Result<ChannelStatus, ChannelError> {
        let link = self.setup.link(channel);
        let figures = tables::figures(&self.store, channel).await?;
        let webhook_url = |base: &Option<String>| {
            base.as_deref().map(|base| format!("{}/webhooks/{channel}", base.trim_end_matches('/')))
        };
        let (mode, public_url, webhook_url, phone_number_id) = if channel == ChannelName::Telegram {
            let config = self.setup.telegram();
            let webhook = config.mode == TelegramMode::Webhook;
            let mode = config.bot_token.is_some().then_some(config.mode);
            let url = if webhook { webhook_url(&config.public_url) } else { None };
            (mode, config.public_url, url, None)
        } else {
            let config = self.setup.whatsapp();
            let url = webhook_url(&config.public_url);
            (None, config.public_url, url, config.phone_number_id)
        };
        Ok(ChannelStatus {
            channel,
            state: link.state,
            error: link.error,
            account: link.account,
            mode,
            public_url,
            webhook_url,
            phone_number_id,
            paired_chats: figures.paired_chats,
            last_message_at: figures.last_message_at,
            failed_replies: figures.failed_replies,
        })
    }

    /// Connect what the config file sets up; retry in the background what fails.
    pub(super) async fn connect_configured(self: Arc<Self>) {
        let mut opened = Vec::new();
        for channel in ChannelName::ALL {
            let generation = self.setup.link(channel).generation;
            match self.open_configured(channel).await {
                Ok(platform) => opened.push(platform),
                Err(why) => {
                    tracing::error!(target: "pryx::channels", "{channel} is off for now: {why}");
                    self.retry_later(channel, generation);
                }
            }
        }
        self.install(|connected| opened.into_iter().for_each(|platform| platform.apply(connected)));
    }

    /// Try `channel`'s settings again every half minute until it connects, shutdown, or
    /// the settings change.
    fn retry_later(self: &Arc<Self>, channel: ChannelName, generation: u64) {
        let channels = self.clone();
        self.tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = channels.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RETRY_EVERY) => {}
                }
                let _one_at_a_time = channels.setup.edit.lock().await;
                if channels.setup.link(channel).generation != generation {
                    return;
                }
                if let Ok(platform) = channels.open_configured(channel).await {
                    channels.install(|connected| platform.apply(connected));
                    return;
                }
            }
        });
    }

    /// Connect `channel` as the settings in use say; its state follows.
    async fn open_configured(&self, channel: ChannelName) -> Result<Opened, String> {
        let opened = if channel == ChannelName::Telegram {
            let config = self.setup.telegram();
            let Some(token) = &config.bot_token else { return Ok(Opened::Telegram(None)) };
            self.setup.set(channel, ChannelState::Connecting, None, None);
            let connected = async {
                let token = self.resolve(token).await.map_err(|e| format!("bot_token: {e}"))?;
                let secret = match (&config.mode, &config.webhook_secret) {
                    (TelegramMode::Polling, _) => None,
                    (TelegramMode::Webhook, Some(secret)) => {
                        Some(self.resolve(secret).await.map_err(|e| format!("webhook_secret: {e}"))?)
                    }
                    (TelegramMode::Webhook, None) => return Err("webhook mode needs telegram.webhook_secret".into()),
                };
                self.connect_telegram(&config, token, secret).await
            };
            connected.await.map(|(telegram, account)| (Opened::Telegram(Some(Arc::new(telegram))), account))
        } else {
            let config = self.setup.whatsapp();
            let Some(token) = &config.access_token else { return Ok(Opened::WhatsApp(None)) };
            self.setup.set(channel, ChannelState::Connecting, None, None);
            let connected = async {
                let resolve = |key: &'static str, value: Option<String>| async move {
                    let value = value.ok_or(format!("{key} is not set"))?;
                    self.resolve(&value).await.map_err(|e| format!("{key}: {e}"))
                };
                let token = resolve("access_token", Some(token.clone())).await?;
                let app_secret = resolve("app_secret", config.app_secret.clone()).await?;
                let verify_token = resolve("verify_token", config.verify_token.clone()).await?;
                self.connect_whatsapp(&config, token, app_secret, verify_token).await
            };
            connected.await.map(|(whatsapp, account)| (Opened::WhatsApp(Some(Arc::new(whatsapp))), account))
        };
        match opened {
            Ok((platform, account)) => {
                self.setup.set(channel, ChannelState::Connected, None, account);
                Ok(platform)
            }
            Err(why) => {
                self.setup.set(channel, ChannelState::Failed, Some(why.clone()), None);
                Err(why)
            }
        }
    }

    /// New settings of `channel` are in force: retries of the old ones stop, the Host
    /// allowlist follows, the state shows, and `platform` (or none) replaces what ran.
    fn switch_to(self: &Arc<Self>, platform: Opened, state: ChannelState, account: Option<String>) {
        let channel = match platform {
            Opened::Telegram(_) => ChannelName::Telegram,
            Opened::WhatsApp(_) => ChannelName::Whatsapp,
        };
        self.setup.update_public_hosts();
        self.setup.bump(channel);
        self.setup.set(channel, state, None, account);
        self.install(|connected| platform.apply(connected));
    }

    async fn resolve(&self, value: &str) -> Result<SecretString, String> {
        let value = value.to_owned();
        self.agent.secrets().run(move |s| s.resolve(&value)).await.map_err(|e| e.to_string())
    }

    /// Check the bot token (`getMe`) and register the webhook (or drop one, to poll).
    /// Answers the platform and the bot's `@username`.
    async fn connect_telegram(
        &self,
        config: &TelegramConfig,
        token: SecretString,
        webhook_secret: Option<SecretString>,
    ) -> Result<(TelegramChannel, Option<String>), String> {
        let api = BotApi::new(&config.api_base, token);
        let username = api.username().await.map_err(|e| format!("Telegram did not accept the bot token: {e}"))?;
        match &webhook_secret {
            Some(secret) => {
                let base = config.public_url.as_deref().unwrap_or_default().trim_end_matches('/');
                api.set_webhook(&format!("{base}/webhooks/telegram"), secret)
                    .await
                    .map_err(|e| format!("Telegram did not accept the webhook: {e}"))?;
            }
            None => {
                if let Err(e) = api.delete_webhook().await {
                    tracing::warn!(target: "pryx::channels", "cannot remove a Telegram webhook before polling: {e}");
                }
            }
        }
        let account = username.as_ref().map(|name| format!("@{name}"));
        let telegram = TelegramChannel {
            api,
            webhook_secret,
            username: Mutex::new(username),
            allowed: config.allowed_chats.iter().map(i64::to_string).collect(),
            stop: self.shutdown.child_token(),
        };
        Ok((telegram, account))
    }

    /// Check the access token and phone number id with Meta. Answers the platform and the
    /// number as WhatsApp shows it.
    async fn connect_whatsapp(
        &self,
        config: &WhatsAppConfig,
        token: SecretString,
        app_secret: SecretString,
        verify_token: SecretString,
    ) -> Result<(WhatsAppChannel, Option<String>), String> {
        let phone_number_id = config.phone_number_id.clone().unwrap_or_default();
        let api = CloudApi::new(&config.api_base, &phone_number_id, token);
        let number = api.phone_number().await.map_err(|e| format!("WhatsApp did not accept the settings: {e}"))?;
        let digits: String = number.display_phone_number.chars().filter(char::is_ascii_digit).collect();
        let account = match &number.verified_name {
            Some(name) => format!("{} ({name})", number.display_phone_number),
            None => number.display_phone_number.clone(),
        };
        let whatsapp = WhatsAppChannel {
            api,
            app_secret,
            verify_token,
            allowed: config.allowed_numbers.clone(),
            number: Mutex::new((!digits.is_empty()).then_some(digits)),
            stop: self.shutdown.child_token(),
        };
        Ok((whatsapp, Some(account)))
    }

    /// `channel.telegram_set`: check, save, and switch to the new settings.
    pub async fn set_telegram(self: &Arc<Self>, setup: TelegramSetup) -> Result<ChannelStatus, ChannelError> {
        let TelegramSetup { bot_token, mode, public_url } = setup;
        let _one_at_a_time = self.setup.edit.lock().await;
        let public_url = public_https_url(public_url)?;
        if mode == TelegramMode::Webhook && public_url.is_none() {
            return Err(ChannelError::Invalid(
                "webhook mode needs the public https address Telegram can reach this Pryx at".into(),
            ));
        }
        let mut config = self.setup.telegram();
        let pasted = pasted(bot_token, "bot token", 200)?;
        if let Some(token) = &pasted {
            // BotFather's tokens read `123456789:AAH…`: the bot's id, a colon, the secret.
            let shape_ok = token.split_once(':').is_some_and(|(id, secret)| {
                !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !secret.is_empty()
                    && secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
            if !shape_ok {
                return Err(ChannelError::Invalid(
                    "that is not a bot token: BotFather's tokens look like 123456789:AAH…".into(),
                ));
            }
        }
        let token = match (&pasted, &config.bot_token) {
            (Some(token), _) => SecretString::new(token.clone()),
            (None, Some(saved)) => self.resolve(saved).await.map_err(ChannelError::Invalid)?,
            (None, None) => return Err(ChannelError::Invalid("paste the bot token @BotFather gave you".into())),
        };
        // Telegram allows 1-256 characters of A-Z, a-z, 0-9, _ and - in the secret.
        let webhook_secret = (mode == TelegramMode::Webhook).then(|| SecretString::new(random_token(URL_SAFE, 48)));
        config.mode = mode;
        config.public_url = public_url;
        let (telegram, account) =
            self.connect_telegram(&config, token, webhook_secret.clone()).await.map_err(ChannelError::Refused)?;
        // Telegram accepted it: keep it.
        if let Some(token) = pasted {
            self.keep_secret(TELEGRAM_BOT_TOKEN, token).await?;
            config.bot_token = Some(secrets::reference_to(TELEGRAM_BOT_TOKEN));
            // Another bot's updates are numbered afresh; Telegram resends what was not
            // confirmed and the inbox drops what it has.
            tables::set_cursor(&self.store, ChannelName::Telegram, "0").await?;
        }
        config.webhook_secret = match webhook_secret {
            Some(secret) => {
                self.keep_secret(TELEGRAM_WEBHOOK_SECRET, secret.expose().to_owned()).await?;
                Some(secrets::reference_to(TELEGRAM_WEBHOOK_SECRET))
            }
            None => None,
        };
        crate::config::edit::set_values(
            self.agent.config_file()?,
            "telegram",
            &[
                ("bot_token", config.bot_token.as_deref()),
                ("mode", Some(config.mode.as_str())),
                ("public_url", config.public_url.as_deref()),
                ("webhook_secret", config.webhook_secret.as_deref()),
            ],
        )?;
        *self.setup.telegram.lock().unwrap_or_else(|p| p.into_inner()) = config;
        self.switch_to(Opened::Telegram(Some(Arc::new(telegram))), ChannelState::Connected, account);
        tracing::info!(target: "pryx::channels", "Telegram is connected ({mode})");
        self.status_of(ChannelName::Telegram).await
    }

    /// `channel.whatsapp_set`: check, save, and switch to the new settings.
    pub async fn set_whatsapp(self: &Arc<Self>, setup: WhatsAppSetup) -> Result<ChannelStatus, ChannelError> {
        let WhatsAppSetup { phone_number_id, access_token, app_secret, verify_token, public_url } = setup;
        let _one_at_a_time = self.setup.edit.lock().await;
        let phone_number_id = phone_number_id.trim().to_owned();
        if phone_number_id.is_empty()
            || phone_number_id.len() > 32
            || !phone_number_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ChannelError::Invalid(
                "the phone number id is the number Meta shows under API Setup (digits only), not the phone number"
                    .into(),
            ));
        }
        let mut config = self.setup.whatsapp();
        let public_url = public_https_url(public_url)?;
        let access_token = pasted(access_token, "access token", 4096)?;
        let app_secret = pasted(app_secret, "app secret", 256)?;
        let verify_token = pasted(verify_token, "verify token", 256)?;
        let value = |pasted: &Option<String>, saved: Option<String>, what: &'static str| {
            let pasted = pasted.clone();
            async move {
                match (pasted, saved) {
                    (Some(value), _) => Ok(SecretString::new(value)),
                    (None, Some(saved)) => self.resolve(&saved).await.map_err(ChannelError::Invalid),
                    (None, None) => Err(ChannelError::Invalid(format!("paste the {what}"))),
                }
            }
        };
        let token = value(&access_token, config.access_token.clone(), "access token").await?;
        let secret = value(&app_secret, config.app_secret.clone(), "app secret").await?;
        let verify = value(&verify_token, config.verify_token.clone(), "verify token").await?;
        config.phone_number_id = Some(phone_number_id);
        config.public_url = public_url;
        let (whatsapp, account) =
            self.connect_whatsapp(&config, token, secret, verify).await.map_err(ChannelError::Refused)?;
        // Meta accepted it: keep it.
        for (pasted, name, key) in [
            (access_token, WHATSAPP_ACCESS_TOKEN, &mut config.access_token),
            (app_secret, WHATSAPP_APP_SECRET, &mut config.app_secret),
            (verify_token, WHATSAPP_VERIFY_TOKEN, &mut config.verify_token),
        ] {
            if let Some(value) = pasted {
                self.keep_secret(name, value).await?;
                *key = Some(secrets::reference_to(name));
            }
        }
        crate::config::edit::set_values(
            self.agent.config_file()?,
            "whatsapp",
            &[
                ("access_token", config.access_token.as_deref()),
                ("app_secret", config.app_secret.as_deref()),
                ("verify_token", config.verify_token.as_deref()),
                ("phone_number_id", config.phone_number_id.as_deref()),
                ("public_url", config.public_url.as_deref()),
            ],
        )?;
        *self.setup.whatsapp.lock().unwrap_or_else(|p| p.into_inner()) = config;
        self.switch_to(Opened::WhatsApp(Some(Arc::new(whatsapp))), ChannelState::Connected, account);
        tracing::info!(target: "pryx::channels", "WhatsApp is connected");
        self.status_of(ChannelName::Whatsapp).await
    }

    /// `channel.disconnect`: stop the platform, forget its tokens; chats and history stay.
    pub async fn disconnect(self: &Arc<Self>, channel: ChannelName) -> Result<ChannelStatus, ChannelError> {
        let _one_at_a_time = self.setup.edit.lock().await;
        let (keys, secrets): (&[&str], &[&str]) = match channel {
            ChannelName::Telegram => (&["bot_token", "webhook_secret"], &[TELEGRAM_BOT_TOKEN, TELEGRAM_WEBHOOK_SECRET]),
            ChannelName::Whatsapp => (
                &["access_token", "app_secret", "verify_token"],
                &[WHATSAPP_ACCESS_TOKEN, WHATSAPP_APP_SECRET, WHATSAPP_VERIFY_TOKEN],
            ),
        };
        let removed: Vec<(&str, Option<&str>)> = keys.iter().map(|key| (*key, None)).collect();
        crate::config::edit::set_values(self.agent.config_file()?, channel.as_str(), &removed)?;
        if channel == ChannelName::Telegram {
            let mut config = self.setup.telegram.lock().unwrap_or_else(|p| p.into_inner());
            (config.bot_token, config.webhook_secret) = (None, None);
        } else {
            let mut config = self.setup.whatsapp.lock().unwrap_or_else(|p| p.into_inner());
            (config.access_token, config.app_secret, config.verify_token) = (None, None, None);
        }
        // Telegram would go on posting to a webhook nobody answers.
        if let Some(telegram) =
            self.connected().telegram.clone().filter(|t| channel == ChannelName::Telegram && t.webhook_secret.is_some())
        {
            if let Err(e) = telegram.api.delete_webhook().await {
                tracing::warn!(target: "pryx::channels", "cannot remove the Telegram webhook: {e}");
            }
        }
        for name in secrets {
            if let Err(e) = self.agent.delete_secret(name).await {
                tracing::debug!(target: "pryx::channels", "no secret {name} to forget: {e}");
            }
        }
        let none = if channel == ChannelName::Telegram { Opened::Telegram(None) } else { Opened::WhatsApp(None) };
        self.switch_to(none, ChannelState::Off, None);
        tracing::info!(target: "pryx::channels", "{channel} is disconnected");
        self.status_of(channel).await
    }

    async fn keep_secret(&self, name: &str, value: String) -> Result<(), ChannelError> {
        self.agent.set_secret(name, value).await.map_err(|e| ChannelError::Refused(format!("cannot keep {name}: {e}")))
    }
}

/// A value pasted into a form: trimmed, `None` when empty (keep the saved one).
fn pasted(value: Option<String>, what: &str, max_len: usize) -> Result<Option<String>, ChannelError> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return Ok(None) };
    if value.len() > max_len || value.chars().any(char::is_whitespace) {
        return Err(ChannelError::Invalid(format!(
            "the {what} must be one word of at most {max_len} characters (was something else pasted with it?)"
        )));
    }
    Ok(Some(value))
}

/// The public base URL platforms post to: `https`, no path beyond `/`, as Telegram and
/// Meta require.
fn public_https_url(value: Option<String>) -> Result<Option<String>, ChannelError> {
    let Some(value) = value.map(|v| v.trim().trim_end_matches('/').to_owned()).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let url =
        url::Url::parse(&value).map_err(|e| ChannelError::Invalid(format!("`{value}` is not an address: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none() || url.query().is_some() {
        return Err(ChannelError::Invalid(format!(
            "`{value}` must be an https address like https://pryx.example.com (platforms only post to https)"
        )));
    }
    Ok(Some(value))
}

/// Letters, digits, `_` and `-`: what Telegram allows in a webhook secret.
pub(super) const URL_SAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// `length` characters drawn at random from `alphabet` (ASCII).
pub(super) fn random_token(alphabet: &[u8], length: usize) -> String {
    let mut rng = rand::rng();
    (0..length).map(|_| alphabet[rng.random_range(0..alphabet.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_must_be_https_hosts() {
        assert_eq!(
            public_https_url(Some(" https://pryx.example.com/ ".into())).unwrap().as_deref(),
            Some("https://pryx.example.com")
        );
        assert_eq!(public_https_url(Some("".into())).unwrap(), None);
        assert!(public_https_url(Some("http://pryx.example.com".into())).is_err());
        assert!(public_https_url(Some("pryx.example.com".into())).is_err());
        assert!(public_https_url(Some("https://pryx.example.com/?a=1".into())).is_err());
    }

    #[test]
    fn pasted_values_are_one_word() {
        assert_eq!(pasted(Some("  abc  ".into()), "token", 10).unwrap().as_deref(), Some("abc"));
        assert_eq!(pasted(Some("   ".into()), "token", 10).unwrap(), None);
        assert!(pasted(Some("abc def".into()), "token", 10).is_err());
        assert!(pasted(Some("x".repeat(11)), "token", 10).is_err());
    }

    #[test]
    fn webhook_secrets_use_what_telegram_allows() {
        let secret = random_token(URL_SAFE, 48);
        assert_eq!(secret.len(), 48);
        assert!(secret.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_ne!(secret, random_token(URL_SAFE, 48));
    }
}
