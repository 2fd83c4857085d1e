//! First-run registration of the `pryx://` scheme on Linux, for a `pryx` that no package
//! installed: the entry of `installer/linux/pryx.desktop`, with this executable's path, goes
//! to `$XDG_DATA_HOME/applications/` and `xdg-mime` makes it the scheme's handler.
//! A package's own entry (in a system data dir) wins and nothing is written.

use std::path::{Path, PathBuf};

const ENTRY_TEMPLATE: &str = include_str!("../../installer/linux/pryx.desktop");
const ICON: &str = include_str!("../../assets/icons/pryx.svg");
pub const ENTRY_NAME: &str = "pryx.desktop";

/// What registration did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registered {
    /// A package installed Pryx's entry; links already open Pryx.
    ByPackage(PathBuf),
    /// The per-user entry was written (or already right) and made the handler.
    ForUser(PathBuf),
}

/// The desktop entry for `exe`, quoted as the Desktop Entry spec asks.
pub fn entry_for(exe: &Path) -> String {
    let quoted =
        exe.display().to_string().replace('\\', "\\\\").replace('"', "\\\"").replace('`', "\\`").replace('$', "\\$");
    ENTRY_TEMPLATE.replace("Exec=pryx %u", &format!("Exec=\"{quoted}\" %u"))
}

/// Register `exe` unless a package did. `data_home` is `$XDG_DATA_HOME` (or
/// `~/.local/share`), `system_dirs` are `$XDG_DATA_DIRS`; `run_tools` runs
/// `update-desktop-database` and `xdg-mime` (which change the user's real settings).
pub fn register(exe: &Path, data_home: &Path, system_dirs: &[PathBuf], run_tools: bool) -> std::io::Result<Registered> {
    if let Some(packaged) = system_dirs.iter().map(|d| d.join("applications").join(ENTRY_NAME)).find(|p| p.is_file()) {
        return Ok(Registered::ByPackage(packaged));
    }
    let applications = data_home.join("applications");
    std::fs::create_dir_all(&applications)?;
    let path = applications.join(ENTRY_NAME);
    let entry = entry_for(exe);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(entry.as_str()) {
        std::fs::write(&path, &entry)?;
        let icons = data_home.join("icons/hicolor/scalable/apps");
        if std::fs::create_dir_all(&icons).is_ok() {
            let _ = std::fs::write(icons.join("pryx.svg"), ICON);
        }
        if run_tools {
            run_quietly("update-desktop-database", &[applications.as_os_str()]);
        }
    }
    // Cheap and idempotent: another app may have taken the scheme since.
    if run_tools {
        run_quietly("xdg-mime", &["default".as_ref(), ENTRY_NAME.as_ref(), "x-scheme-handler/pryx".as_ref()]);
    }
    Ok(Registered::ForUser(path))
}

/// Register from the environment, on a thread of its own (it runs programs).
pub fn register_in_background() {
    let spawned = std::thread::Builder::new().name("pryx-register".into()).spawn(|| {
        let Ok(exe) = std::env::current_exe() else { return };
        let Some(dirs) = directories::BaseDirs::new() else { return };
        let system_dirs: Vec<PathBuf> = std::env::var("XDG_DATA_DIRS")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "/usr/local/share:/usr/share".into())
            .split(':')
            .map(PathBuf::from)
            .collect();
        match register(&exe, dirs.data_dir(), &system_dirs, true) {
            Ok(how) => tracing::debug!("pryx:// links: {how:?}"),
            Err(e) => tracing::warn!("cannot register Pryx for pryx:// links: {e}"),
        }
    });
    if let Err(e) = spawned {
        tracing::warn!("cannot register Pryx for pryx:// links: {e}");
    }
}

fn run_quietly(program: &str, args: &[&std::ffi::OsStr]) {
    let status = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match status {
        Ok(status) if !status.success() => tracing::debug!("{program} failed ({status})"),
        Err(e) => tracing::debug!("cannot run {program}: {e}"),
        Ok(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_runs_this_executable_with_the_link() {
        let entry = entry_for(Path::new("/opt/my apps/pryx"));
        assert!(entry.contains("Exec=\"/opt/my apps/pryx\" %u\n"), "{entry}");
        assert!(entry.contains("MimeType=x-scheme-handler/pryx;"));
    }

    #[test]
    fn a_packaged_entry_wins_and_nothing_is_written() {
        let home = tempfile::tempdir().unwrap();
        let system = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(system.path().join("applications")).unwrap();
        std::fs::write(system.path().join("applications/pryx.desktop"), ENTRY_TEMPLATE).unwrap();
        let how = register(Path::new("/usr/bin/pryx"), home.path(), &[system.path().to_owned()], false).unwrap();
        assert!(matches!(how, Registered::ByPackage(_)));
        assert!(!home.path().join("applications").exists());
    }

    #[test]
    fn without_a_package_the_user_entry_is_written() {
        let home = tempfile::tempdir().unwrap();
        let how = register(Path::new("/tmp/pryx"), home.path(), &[], false).unwrap();
        let path = home.path().join("applications/pryx.desktop");
        assert_eq!(how, Registered::ForUser(path.clone()));
        assert_eq!(std::fs::read_to_string(path).unwrap(), entry_for(Path::new("/tmp/pryx")));
    }
}
