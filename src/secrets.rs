//! Secrets: every API key, token and password Pryx holds lives in the OS keychain, through
//! the `keyring` crate (macOS Keychain, Windows Credential Manager, Secret Service on Linux
//! desktops, or the Linux kernel keyring on headless machines). Never in a file Pryx writes.
//!
//! Secrets have namespaced names (`llm/openai`, `telegram/bot`, `mcp/github/GITHUB_TOKEN`);
//! config values refer to them as `secret:NAME` and are resolved at use. Values travel as
//! [`SecretString`], whose `Debug` prints a placeholder, so a secret cannot reach a log by
//! accident. Where no keychain exists, a service manager can inject secrets instead:
//! systemd credentials (`LoadCredential=` → `$CREDENTIALS_DIRECTORY/<name with / as _>`) or
//! environment variables (`PRYX_SECRET_<NAME>`, upper case, `/` `.` `-` as `_`).
//!
//! The names are kept in one more entry, the index, shared by every Pryx this user runs
//! (the keychain is per user, not per data dir). Changing it is read, modify, write, so
//! changes take turns under an advisory lock ([`IndexLock`]); without it two processes
//! setting secrets at once lost names from `pryx secret list`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The keychain "service" every Pryx entry is stored under.
const SERVICE: &str = "pryx";
/// The entry that lists the names of stored secrets (names only, never values).
const INDEX: &str = "__index__";
/// The keychain entries config secrets live in, whether a plain value was moved out of
/// the file or the value was set from the API: one name for each.
pub const LLM_API_KEY: &str = "llm/api_key";
pub const TELEGRAM_BOT_TOKEN: &str = "telegram/bot";
pub const TELEGRAM_WEBHOOK_SECRET: &str = "telegram/webhook";
pub const WHATSAPP_ACCESS_TOKEN: &str = "whatsapp/token";
pub const WHATSAPP_APP_SECRET: &str = "whatsapp/app_secret";
pub const WHATSAPP_VERIFY_TOKEN: &str = "whatsapp/verify";

/// Config keys that hold secrets, with the name their value moves to in the keychain.
pub const SECRET_CONFIG_KEYS: &[(&str, &str, &str)] = &[
    ("llm", "api_key", LLM_API_KEY),
    ("telegram", "bot_token", TELEGRAM_BOT_TOKEN),
    ("telegram", "webhook_secret", TELEGRAM_WEBHOOK_SECRET),
    ("whatsapp", "access_token", WHATSAPP_ACCESS_TOKEN),
    ("whatsapp", "app_secret", WHATSAPP_APP_SECRET),
    ("whatsapp", "verify_token", WHATSAPP_VERIFY_TOKEN),
];

/// The keychain entry of the OTLP export header `header` (`[telemetry.otlp.headers]`).
pub fn otlp_header_secret(header: &str) -> String {
    format!("otlp/header/{}", header.to_ascii_lowercase())
}

/// The config value that refers to the keychain entry `name`: `secret:NAME`.
pub fn reference_to(name: &str) -> String {
    format!("{REFERENCE_PREFIX}{name}")
}

/// The prefix of a config value that refers to a secret.
pub const REFERENCE_PREFIX: &str = "secret:";

/// A secret value. It can be used, but not printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> Self {
        SecretString(value)
    }
    /// The value itself, for the one place that sends it (an HTTP header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Which store holds secrets (`[secrets] backend` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendChoice {
    /// The desktop keychain if it answers, else the kernel keyring, else read-only injection.
    #[default]
    Auto,
    /// The platform keychain (Secret Service on Linux, Keychain on macOS, Credential Manager).
    Keychain,
    /// The Linux kernel keyring (keyutils): lives as long as the login session.
    KernelKeyring,
    /// Only what the service manager injects (systemd credentials, environment); read-only.
    Injected,
}

/// `[secrets]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecretsConfig {
    pub backend: BackendChoice,
}

/// What can go wrong. Messages never contain a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("`{0}` is not a valid secret name: use segments of letters, digits, `_`, `.` or `-` separated by `/` (e.g. llm/openai), at most 128 characters")]
    BadName(String),
    #[error("no secret named `{0}` (set it with `pryx secret set {0}`)")]
    Missing(String),
    #[error("no keychain is available here ({0}); {hint}", hint = INJECTION_HINT)]
    Unavailable(String),
    #[error("the keychain failed: {0}")]
    Keychain(String),
    #[error("secrets are injected by the service manager here and cannot be changed by Pryx; {hint}", hint = INJECTION_HINT)]
    ReadOnly,
}

const INJECTION_HINT: &str =
    "run under a desktop session, use the kernel keyring ([secrets] backend = \"kernel-keyring\"), \
or let the service manager inject secrets (systemd LoadCredential=NAME or Environment=PRYX_SECRET_NAME)";

/// A checked secret name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(name: &str) -> Result<Self, SecretError> {
        let valid = !name.is_empty()
            && name.len() <= 128
            && name != INDEX
            && name.split('/').all(|segment| {
                !segment.is_empty()
                    && segment != "."
                    && segment != ".."
                    && segment.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            });
        if valid {
            Ok(SecretName(name.to_owned()))
        } else {
            Err(SecretError::BadName(name.chars().take(60).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `PRYX_SECRET_LLM_OPENAI` for `llm/openai`.
    fn env_var(&self) -> String {
        let upper: String =
            self.0.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
        format!("PRYX_SECRET_{upper}")
    }

    /// `llm_openai` for `llm/openai` (a file name under `$CREDENTIALS_DIRECTORY`).
    fn credential_file(&self) -> String {
        self.0.replace('/', "_")
    }
}

/// The secret a config value refers to, if it is a `secret:NAME` reference.
pub fn reference(value: &str) -> Option<Result<SecretName, SecretError>> {
    value.strip_prefix(REFERENCE_PREFIX).map(|name| SecretName::parse(name.trim()))
}

/// The store in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Keychain,
    KernelKeyring,
    /// No writable store; `why` says what was tried.
    Injected {
        why: String,
    },
}

/// The secrets store. Cheap to clone; every call is blocking (run it off async threads).
#[derive(Debug, Clone)]
pub struct Secrets {
    backend: Backend,
}

impl Secrets {
    /// Pick the store: the configured one, or (auto) the first that answers.
    pub fn open(choice: BackendChoice) -> Secrets {
        let backend = match choice {
            BackendChoice::Keychain => match probe(Backend::Keychain) {
                Ok(()) => Backend::Keychain,
                Err(why) => Backend::Injected { why: format!("keychain: {why}") },
            },
            BackendChoice::KernelKeyring => match probe(Backend::KernelKeyring) {
                Ok(()) => Backend::KernelKeyring,
                Err(why) => Backend::Injected { why: format!("kernel keyring: {why}") },
            },
            BackendChoice::Injected => Backend::Injected { why: "configured".into() },
            BackendChoice::Auto => match probe(Backend::Keychain) {
                Ok(()) => Backend::Keychain,
                Err(keychain) => match probe(Backend::KernelKeyring) {
                    Ok(()) => Backend::KernelKeyring,
                    Err(kernel) => Backend::Injected { why: format!("keychain: {keychain}; kernel keyring: {kernel}") },
                },
            },
        };
        Secrets { backend }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// One line for people (`pryx doctor`, start-up log).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Keychain => format!("OS keychain ({})", keychain_name()),
            Backend::KernelKeyring => "Linux kernel keyring (kept for this login session; set secrets again after a reboot)".into(),
            Backend::Injected { why } => format!(
                "no keychain ({why}); secrets only from the service manager: systemd LoadCredential= files or PRYX_SECRET_* variables"
            ),
        }
    }

    pub fn set(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretError> {
        let entry = self.entry(name.as_str())?;
        let _turn = IndexLock::take()?;
        entry.set_password(value.expose()).map_err(keychain_error)?;
        let mut names = self.list()?;
        if !names.contains(name) {
            names.push(name.clone());
            self.write_index(&names)?;
        }
        Ok(())
    }

    /// The value: from the store, or from what the service manager injected.
    pub fn get(&self, name: &SecretName) -> Result<SecretString, SecretError> {
        if !matches!(self.backend, Backend::Injected { .. }) {
            match self.entry(name.as_str())?.get_password() {
                Ok(value) => return Ok(SecretString::new(value)),
                Err(keyring::Error::NoEntry) => {}
                Err(e) => return Err(keychain_error(e)),
            }
        }
        injected(name).ok_or_else(|| SecretError::Missing(name.as_str().to_owned()))
    }

    pub fn delete(&self, name: &SecretName) -> Result<(), SecretError> {
        let entry = self.entry(name.as_str())?;
        let _turn = IndexLock::take()?;
        match entry.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(keychain_error(e)),
        }
        let mut names = self.list()?;
        let before = names.len();
        names.retain(|n| n != name);
        if names.len() == before {
            return Err(SecretError::Missing(name.as_str().to_owned()));
        }
        self.write_index(&names)
    }

    /// Names of the stored secrets (never values), sorted.
    pub fn list(&self) -> Result<Vec<SecretName>, SecretError> {
        if let Backend::Injected { .. } = self.backend {
            return Ok(Vec::new());
        }
        let text = match self.entry(INDEX)?.get_password() {
            Ok(text) => text,
            Err(keyring::Error::NoEntry) => return Ok(Vec::new()),
            Err(e) => return Err(keychain_error(e)),
        };
        let mut names: Vec<SecretName> = serde_json::from_str::<Vec<String>>(&text)
            .unwrap_or_default()
            .iter()
            .filter_map(|n| SecretName::parse(n).ok())
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Resolve a config value: a `secret:NAME` reference is looked up, anything else is
    /// returned as it is (the caller decides whether a plain value is acceptable).
    pub fn resolve(&self, value: &str) -> Result<SecretString, SecretError> {
        match reference(value) {
            Some(name) => self.get(&name?),
            None => Ok(SecretString::new(value.to_owned())),
        }
    }

    fn write_index(&self, names: &[SecretName]) -> Result<(), SecretError> {
        let list: Vec<&str> = names.iter().map(SecretName::as_str).collect();
        let json = serde_json::to_string(&list).map_err(|e| SecretError::Keychain(e.to_string()))?;
        self.entry(INDEX)?.set_password(&json).map_err(keychain_error)
    }

    fn entry(&self, user: &str) -> Result<keyring::Entry, SecretError> {
        entry_in(&self.backend, user).map_err(|e| match e {
            EntryError::ReadOnly => SecretError::ReadOnly,
            EntryError::Keyring(e) => keychain_error(e),
        })
    }
}

/// The turn to change the index: an exclusive `flock` on `pryx-secrets.lock` in the
/// user's runtime dir, or in a private `pryx-UID` dir under the temp dir where there is
/// none. Released when dropped.
struct IndexLock {
    #[cfg(unix)]
    _file: std::fs::File,
}

impl IndexLock {
    #[cfg(unix)]
    fn take() -> Result<IndexLock, SecretError> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let failed = |e: std::io::Error| SecretError::Keychain(format!("cannot lock the index of secret names: {e}"));
        let path = lock_dir().map_err(failed)?.join("pryx-secrets.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(failed)?;
        // SAFETY: flock on a descriptor we own; waits for the other holder.
        while unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == -1 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(failed(error));
            }
        }
        Ok(IndexLock { _file: file })
    }

    #[cfg(not(unix))]
    fn take() -> Result<IndexLock, SecretError> {
        Ok(IndexLock {})
    }
}

/// A directory only this user can write: the runtime dir, else `pryx-UID` in the temp dir,
/// made 0700 and refused if someone else made it first.
#[cfg(unix)]
fn lock_dir() -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(runtime) = std::env::var_os("XDG_RUNTIME_DIR").map(std::path::PathBuf::from) {
        if runtime.is_absolute() && runtime.is_dir() {
            return Ok(runtime);
        }
    }
    // SAFETY: getuid cannot fail.
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("pryx-{uid}"));
    match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let metadata = std::fs::symlink_metadata(&dir)?;
    if !metadata.is_dir() || metadata.uid() != uid || metadata.mode() & 0o077 != 0 {
        return Err(std::io::Error::other(format!("{} is not a private directory of this user", dir.display())));
    }
    Ok(dir)
}

enum EntryError {
    ReadOnly,
    Keyring(keyring::Error),
}

fn entry_in(backend: &Backend, user: &str) -> Result<keyring::Entry, EntryError> {
    #[cfg(target_os = "linux")]
    let build = |builder: Box<keyring::credential::CredentialBuilder>| {
        let credential = builder.build(None, SERVICE, user).map_err(EntryError::Keyring)?;
        Ok(keyring::Entry::new_with_credential(credential))
    };
    match backend {
        #[cfg(target_os = "linux")]
        Backend::Keychain => build(keyring::secret_service::default_credential_builder()),
        #[cfg(not(target_os = "linux"))]
        Backend::Keychain => keyring::Entry::new(SERVICE, user).map_err(EntryError::Keyring),
        #[cfg(target_os = "linux")]
        Backend::KernelKeyring => build(keyring::keyutils::default_credential_builder()),
        _ => Err(EntryError::ReadOnly),
    }
}

fn keychain_name() -> &'static str {
    if cfg!(target_os = "macos") {
        "macOS Keychain"
    } else if cfg!(windows) {
        "Windows Credential Manager"
    } else {
        "Secret Service"
    }
}

/// Does this store answer? A lookup of the index (present or not) must succeed.
fn probe(backend: Backend) -> Result<(), String> {
    #[cfg(target_os = "linux")]
    if backend == Backend::Keychain && !session_bus_present() {
        // Without a session bus the Secret Service cannot answer; not even trying keeps a
        // headless server from starting D-Bus machinery it cannot use.
        return Err("no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset)".into());
    }
    let entry = entry_in(&backend, INDEX).map_err(|e| match e {
        EntryError::ReadOnly => "not supported on this platform".to_owned(),
        EntryError::Keyring(e) => e.to_string(),
    })?;
    match entry.get_password() {
        Ok(_) | Err(keyring::Error::NoEntry) => {}
        Err(e) => return Err(e.to_string()),
    }
    if backend == Backend::KernelKeyring {
        // keyutils answers "no entry" even without a usable session keyring: prove a write.
        let probe = entry_in(&backend, "__probe__").map_err(|_| "not supported".to_owned())?;
        probe.set_password("probe").map_err(|e| e.to_string())?;
        let _ = probe.delete_credential();
    }
    Ok(())
}

#[cfg(target_os = "linux")]
fn session_bus_present() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|a| !a.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| std::path::Path::new(&dir).join("bus").exists())
}

fn keychain_error(e: keyring::Error) -> SecretError {
    match e {
        keyring::Error::NoStorageAccess(inner) => SecretError::Unavailable(inner.to_string()),
        other => SecretError::Keychain(other.to_string()),
    }
}

/// The store, opened on first use (probing a keychain costs a D-Bus round trip, which
/// start-up should not wait for). Cheap to clone; `get` blocks.
#[derive(Debug, Clone)]
pub struct SecretsHandle {
    choice: BackendChoice,
    opened: std::sync::Arc<std::sync::OnceLock<Secrets>>,
}

impl SecretsHandle {
    pub fn new(choice: BackendChoice) -> Self {
        SecretsHandle { choice, opened: Default::default() }
    }

    /// The opened store (blocking the first time).
    pub fn get(&self) -> &Secrets {
        self.opened.get_or_init(|| Secrets::open(self.choice))
    }

    /// Run a blocking secrets operation off the async threads.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Secrets) -> Result<T, SecretError> + Send + 'static,
    ) -> Result<T, SecretError> {
        let handle = self.clone();
        tokio::task::spawn_blocking(move || work(handle.get()))
            .await
            .map_err(|e| SecretError::Keychain(format!("the keychain task failed: {e}")))?
    }
}

/// Move plain-text secrets out of a config file into the store, rewriting the file with
/// `secret:NAME` references (comments and layout kept). Returns the keys moved. Fails,
/// changing nothing, when there is no writable store: a plain secret is never used silently.
pub fn migrate_config_file(path: &std::path::Path, secrets: &SecretsHandle) -> Result<Vec<String>, MigrateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(MigrateError::Io(e.to_string())),
    };
    let mut document: toml_edit::DocumentMut =
        text.parse().map_err(|e: toml_edit::TomlError| MigrateError::Io(e.to_string()))?;
    let mut moved = Vec::new();
    for (key_path, name) in plain_secrets(&document) {
        // The store is opened only now: a file without plain secrets never probes it.
        if let Backend::Injected { why } = secrets.get().backend() {
            return Err(MigrateError::NoStore { key: key_path.join("."), why: why.clone() });
        }
        let name = SecretName::parse(&name).map_err(|e| MigrateError::Io(e.to_string()))?;
        let item = key_path.iter().try_fold(document.as_item_mut(), |item, key| item.get_mut(key.as_str()));
        let Some(item) = item else { continue };
        let value = item.as_str().unwrap_or_default().to_owned();
        secrets.get().set(&name, &SecretString::new(value)).map_err(|e| MigrateError::Io(e.to_string()))?;
        *item = toml_edit::value(format!("{REFERENCE_PREFIX}{}", name.as_str()));
        moved.push(key_path.join("."));
    }
    if !moved.is_empty() {
        let tmp = path.with_extension("toml.pryx-tmp");
        std::fs::write(&tmp, document.to_string()).map_err(|e| MigrateError::Io(e.to_string()))?;
        if let Ok(metadata) = std::fs::metadata(path) {
            let _ = std::fs::set_permissions(&tmp, metadata.permissions());
        }
        std::fs::rename(&tmp, path).map_err(|e| MigrateError::Io(e.to_string()))?;
    }
    Ok(moved)
}

/// Secret-bearing values written in plain text: (key path, the secret name they move to).
/// The fixed keys of [`SECRET_CONFIG_KEYS`] and every `telemetry.otlp.headers` entry.
fn plain_secrets(document: &toml_edit::DocumentMut) -> Vec<(Vec<String>, String)> {
    let is_plain =
        |item: &toml_edit::Item| item.as_str().is_some_and(|v| !v.is_empty() && !v.starts_with(REFERENCE_PREFIX));
    let mut found = Vec::new();
    for (table, key, name) in SECRET_CONFIG_KEYS {
        if document.get(table).and_then(|t| t.get(key)).is_some_and(is_plain) {
            found.push((vec![table.to_string(), key.to_string()], name.to_string()));
        }
    }
    let headers = document.get("telemetry").and_then(|t| t.get("otlp")).and_then(|o| o.get("headers"));
    if let Some(headers) = headers.and_then(|h| h.as_table_like()) {
        for (header, item) in headers.iter() {
            if is_plain(item) {
                let path = ["telemetry", "otlp", "headers", header].map(str::to_owned).to_vec();
                found.push((path, otlp_header_secret(header)));
            }
        }
    }
    found
}

/// Why plain-text secrets could not be moved out of the config file.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(
        "the config file holds `{key}` in plain text and there is no keychain to move it into ({why}); \
             remove it from the file and provide it through the environment (PRYX_LLM_API_KEY) or a systemd credential"
    )]
    NoStore { key: String, why: String },
    #[error("cannot move secrets out of the config file: {0}")]
    Io(String),
}

/// A secret the service manager injected: a systemd credential file or an environment variable.
fn injected(name: &SecretName) -> Option<SecretString> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        if let Ok(value) = std::fs::read_to_string(std::path::Path::new(&dir).join(name.credential_file())) {
            return Some(SecretString::new(value.trim_end_matches(['\n', '\r']).to_owned()));
        }
    }
    std::env::var(name.env_var()).ok().filter(|v| !v.is_empty()).map(SecretString::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_namespaced_and_checked() {
        for good in ["llm/openai", "telegram/bot", "mcp/github/GITHUB_TOKEN", "otlp/header.v1"] {
            assert!(SecretName::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "/x", "x/", "a//b", "../x", "a/./b", "with space", "semi;colon", "__index__", &"x".repeat(129)]
        {
            assert!(SecretName::parse(bad).is_err(), "{bad:?}");
        }
        let name = SecretName::parse("mcp/github/GITHUB-TOKEN").unwrap();
        assert_eq!(name.env_var(), "PRYX_SECRET_MCP_GITHUB_GITHUB_TOKEN");
        assert_eq!(name.credential_file(), "mcp_github_GITHUB-TOKEN");
    }

    #[test]
    fn references_are_recognised() {
        assert_eq!(reference("secret:llm/openai").unwrap().unwrap().as_str(), "llm/openai");
        assert!(reference("secret:bad name").unwrap().is_err());
        assert!(reference("sk-plain").is_none());
    }

    #[test]
    fn debug_never_shows_a_value() {
        assert_eq!(format!("{:?}", SecretString::new("sk-123".into())), "SecretString(<redacted>)");
    }

    #[test]
    fn the_injected_store_reads_the_environment_and_refuses_writes() {
        let secrets = Secrets { backend: Backend::Injected { why: "test".into() } };
        let name = SecretName::parse("test/injected-only").unwrap();
        assert!(matches!(secrets.get(&name), Err(SecretError::Missing(_))));
        assert!(matches!(secrets.set(&name, &SecretString::new("x".into())), Err(SecretError::ReadOnly)));
        assert!(secrets.list().unwrap().is_empty());
        assert!(secrets.describe().contains("LoadCredential"));
    }
}
