//! A private D-Bus session with an unlocked gnome-keyring (Secret Service) for tests that
//! need a real keychain; read back with an independent client (`secret-tool`).

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// A private session bus with an unlocked gnome-keyring on it; both die with the fixture.
pub struct KeyringSession {
    address: String,
    runtime_dir: tempfile::TempDir,
    _data: tempfile::TempDir,
    children: Vec<Child>,
}

impl KeyringSession {
    /// A ready session. gnome-keyring occasionally comes up without a usable default
    /// collection when the machine is loaded; such an attempt is thrown away and retried.
    pub async fn start() -> KeyringSession {
        for _attempt in 0..4 {
            if let Some(session) = Self::try_start().await {
                return session;
            }
        }
        panic!("gnome-keyring did not become ready in four attempts");
    }

    async fn try_start() -> Option<KeyringSession> {
        let runtime_dir = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut bus = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("dbus-daemon (package dbus) must be installed");
        let mut lines = BufReader::new(bus.stdout.take().unwrap()).lines();
        let address = lines.next_line().await.unwrap().expect("bus address");
        let mut keyring = Command::new("gnome-keyring-daemon")
            .args(["--foreground", "--unlock", "--components=secrets"])
            .env("DBUS_SESSION_BUS_ADDRESS", &address)
            .env("XDG_RUNTIME_DIR", runtime_dir.path())
            .env("XDG_DATA_HOME", data.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("gnome-keyring-daemon (package gnome-keyring) must be installed");
        let mut stdin = keyring.stdin.take().unwrap();
        stdin.write_all(b"test-password").await.unwrap();
        drop(stdin);
        let session = KeyringSession { address, runtime_dir, _data: data, children: vec![bus, keyring] };
        // Ready means a round trip works: store an item, read it back (an answering bus is
        // not enough; the default collection may still be being created and unlocked).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
        while tokio::time::Instant::now() < deadline {
            if session.store_probe().await && session.lookup_raw("readiness-probe").await.as_deref() == Some("ready") {
                return Some(session);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    }

    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone()),
            ("XDG_RUNTIME_DIR".into(), self.runtime_dir.path().display().to_string()),
        ]
    }

    pub fn apply(&self, command: &mut Command) {
        for (k, v) in self.env() {
            command.env(k, v);
        }
    }

    async fn secret_tool(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new("secret-tool");
        command.args(args);
        self.apply(&mut command);
        command.output().await.expect("secret-tool (package libsecret-tools) must be installed")
    }

    /// What an independent client reads for a Pryx secret.
    pub async fn lookup(&self, name: &str) -> Option<String> {
        let out = self.secret_tool(&["lookup", "service", "pryx", "username", name]).await;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn lookup_raw(&self, username: &str) -> Option<String> {
        let out = self.secret_tool(&["lookup", "service", "pryx-test", "username", username]).await;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn store_probe(&self) -> bool {
        self.store_raw("pryx-test", "readiness-probe", "ready").await
    }

    /// Store a secret the way Pryx keeps one, with an independent client.
    pub async fn store(&self, name: &str, value: &str) {
        assert!(self.store_raw("pryx", name, value).await, "secret-tool could not store {name}");
    }

    /// The session bus address (what a process that found the bus would use).
    pub fn bus_address(&self) -> &str {
        &self.address
    }

    async fn store_raw(&self, service: &str, username: &str, value: &str) -> bool {
        let mut command = Command::new("secret-tool");
        command
            .args(["store", "--label=pryx", "service", service, "username", username])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.apply(&mut command);
        let Ok(mut child) = command.spawn() else { return false };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(value.as_bytes()).await;
        }
        child.wait().await.is_ok_and(|s| s.success())
    }
}

impl Drop for KeyringSession {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.start_kill();
        }
    }
}
