//! The data directory: where the databases (`pryx.db`, and `telemetry.db` beside it), the
//! API token and the running server's address live. Default: the platform data dir (`~/.local/share/pryx` on Linux); `--data-dir`
//! overrides it. Created with mode 0700; the token file with 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// File names inside the data dir.
const TOKEN_FILE: &str = "token";
const SERVER_FILE: &str = "server.json";

/// Where a running `pryx --serve` can be reached (written at start, removed at exit).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerFile {
    pub url: String,
    pub pid: u32,
}

#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// `--data-dir` if given, else the platform default.
    pub fn resolve(flag: Option<PathBuf>) -> anyhow::Result<DataDir> {
        let root = match flag {
            Some(dir) => dir,
            None => project_dirs()?.data_dir().to_owned(),
        };
        Ok(DataDir { root })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Create the directory (0700) if needed.
    pub fn ensure(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("cannot create data dir {}", self.root.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict data dir {}", self.root.display()))?;
        }
        Ok(())
    }

    pub fn token_path(&self) -> PathBuf {
        self.root.join(TOKEN_FILE)
    }

    /// The API token, created (256 random bits, hex, mode 0600) at first use.
    pub fn load_or_create_token(&self) -> anyhow::Result<String> {
        let path = self.token_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let token = text.trim().to_owned();
                anyhow::ensure!(
                    token.len() >= 32,
                    "token file {} is too short; delete it to make a new one",
                    path.display()
                );
                return Ok(token);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        let bytes: [u8; 32] = rand::random();
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match write_private(&path, token.as_bytes(), true) {
            Ok(()) => Ok(token),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.load_or_create_token(),
            Err(e) => Err(e).with_context(|| format!("cannot write {}", path.display())),
        }
    }

    /// Read the token without creating one (for clients).
    pub fn read_token(&self) -> anyhow::Result<String> {
        let path = self.token_path();
        Ok(std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?.trim().to_owned())
    }

    pub fn write_server_file(&self, info: &ServerFile) -> anyhow::Result<()> {
        let json = serde_json::to_vec(info)?;
        let path = self.root.join(SERVER_FILE);
        let _ = std::fs::remove_file(&path);
        write_private(&path, &json, true).with_context(|| format!("cannot write {}", path.display()))
    }

    pub fn read_server_file(&self) -> Option<ServerFile> {
        serde_json::from_slice(&std::fs::read(self.root.join(SERVER_FILE)).ok()?).ok()
    }

    pub fn remove_server_file(&self) {
        let _ = std::fs::remove_file(self.root.join(SERVER_FILE));
    }
}

/// The default config file: `~/.config/pryx/config.toml` on Linux.
pub fn default_config_path() -> anyhow::Result<PathBuf> {
    Ok(project_dirs()?.config_dir().join("config.toml"))
}

/// The default config file's directory (`~/.config/pryx` on Linux), if there is a home.
pub fn default_config_dir() -> Option<PathBuf> {
    default_config_path().ok().and_then(|path| path.parent().map(Path::to_path_buf))
}

fn project_dirs() -> anyhow::Result<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "pryx").context("cannot find a home directory; pass --data-dir and --config")
}

/// Create `path` (if missing) readable by its owner only, leaving any contents: the
/// databases are opened this way so SQLite never makes them with a looser mode.
pub fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map(drop)
}

/// Write a file only the owner can read; `exclusive` fails if it exists.
fn write_private(path: &Path, contents: &[u8], exclusive: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if exclusive {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_created_once_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::resolve(Some(dir.path().join("d"))).unwrap();
        data.ensure().unwrap();
        let first = data.load_or_create_token().unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(data.load_or_create_token().unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.token_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
