//! Landlock rulesets, built in Pryx before the fork and handed to the child as a file
//! descriptor (the child only calls `landlock_restrict_self` on it).
//!
//! Landlock allows, it cannot deny: to keep a directory unreadable while everything around
//! it stays readable, [`carve`] grants every sibling along the way instead of the common
//! ancestor. That is the fallback where no mount namespace can hide the directory.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, Scope, ABI,
};

/// The newest Landlock ABI Pryx asks for: file access (V5), TCP (V4), scopes (V6). Older
/// kernels enforce what they know (best effort).
const ABI_WANTED: ABI = ABI::V6;

/// Devices a shell command may write to wherever it runs.
const WRITABLE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/urandom", "/dev/random"];

/// What a ruleset allows.
pub(super) struct RuleSpec {
    /// Read (and execute) beneath these.
    pub read: Vec<PathBuf>,
    /// Everything beneath these.
    pub full: Vec<PathBuf>,
    /// Refuse abstract Unix sockets and signals to processes outside the sandbox.
    pub scope_ipc: bool,
    /// Refuse TCP connect and bind.
    pub block_tcp: bool,
}

impl RuleSpec {
    /// A shell command: read what is visible, write in `write_roots`, `/tmp` and the devices.
    /// `hidden` is kept unreadable too (only needed without a mount namespace).
    pub fn command(write_roots: &[PathBuf], hidden: &[PathBuf], block_tcp: bool) -> RuleSpec {
        let mut writable: Vec<PathBuf> = write_roots.to_vec();
        writable.push(PathBuf::from("/tmp"));
        let mut full: Vec<PathBuf> = writable.iter().flat_map(|root| carve(root, hidden)).collect();
        full.extend(WRITABLE_DEVICES.iter().map(PathBuf::from));
        RuleSpec { read: carve(Path::new("/"), hidden), full, scope_ipc: true, block_tcp }
    }

    /// An MCP server without a mount namespace: anything but `hidden`.
    pub fn server(hidden: &[PathBuf]) -> RuleSpec {
        RuleSpec { read: Vec::new(), full: carve(Path::new("/"), hidden), scope_ipc: false, block_tcp: false }
    }

    /// The ruleset as a file descriptor; `None` where the kernel has no Landlock.
    pub fn build(&self) -> Result<Option<OwnedFd>, RulesetError> {
        let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(ABI_WANTED))?;
        if self.block_tcp {
            ruleset = ruleset.handle_access(AccessNet::from_all(ABI_WANTED))?;
        }
        if self.scope_ipc {
            ruleset = ruleset.scope(Scope::from_all(ABI_WANTED))?;
        }
        let created = ruleset
            .create()?
            .add_rules(path_beneath_rules(&self.read, AccessFs::from_read(ABI_WANTED)))?
            .add_rules(path_beneath_rules(&self.full, AccessFs::from_all(ABI_WANTED)))?;
        Ok(created.into())
    }
}

/// The kernel's Landlock ABI version (0: none).
pub(super) fn kernel_abi() -> i32 {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the documented way to ask for the version: no ruleset, size 0, the flag.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    i32::try_from(version).unwrap_or(0).max(0)
}

/// Paths whose union is everything beneath `root` except `hidden` (canonical paths): `root`
/// itself when nothing hidden lies inside, else its entries, recursing only into the ones
/// that lead to something hidden. A symbolic link whose target is, holds or lies in a
/// hidden path is left out (a rule on it would follow it). Entries made later in a carved
/// directory are not covered: this is a fallback, weaker than a mount namespace.
pub(super) fn carve(root: &Path, hidden: &[PathBuf]) -> Vec<PathBuf> {
    if hidden.iter().any(|h| root.starts_with(h)) {
        return Vec::new();
    }
    if !hidden.iter().any(|h| h.starts_with(root)) {
        return vec![root.to_owned()];
    }
    let Ok(entries) = std::fs::read_dir(root) else { return Vec::new() };
    let mut allowed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_symlink() {
            let touches_hidden = match path.canonicalize() {
                Ok(target) => hidden.iter().any(|h| target.starts_with(h) || h.starts_with(&target)),
                Err(_) => false,
            };
            if !touches_hidden {
                allowed.push(path);
            }
        } else if kind.is_dir() {
            allowed.extend(carve(&path, hidden));
        } else {
            allowed.push(path);
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carving_grants_everything_but_the_hidden_paths_and_links_into_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        for sub in ["home/me/.local/share/pryx", "home/me/.local/share/other", "home/me/code", "home/you", "etc"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::fs::write(root.join("home/me/notes.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("home/me/.local/share/pryx"), root.join("home/me/shortcut")).unwrap();
        std::os::unix::fs::symlink(root.join("home/me/.local"), root.join("home/me/dotlocal")).unwrap();
        std::os::unix::fs::symlink(root.join("etc"), root.join("home/me/etc-link")).unwrap();
        let hidden = [root.join("home/me/.local/share/pryx")];

        let mut granted = carve(&root, &hidden);
        granted.sort();
        let relative: Vec<String> =
            granted.iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
        assert_eq!(
            relative,
            ["etc", "home/me/.local/share/other", "home/me/code", "home/me/etc-link", "home/me/notes.txt", "home/you"]
        );
        assert!(granted.iter().all(|p| !hidden[0].starts_with(p)), "no grant covers the hidden dir");
        assert_eq!(carve(&root.join("etc"), &hidden), [root.join("etc")], "nothing hidden inside: one rule");
        assert!(carve(&hidden[0], &hidden).is_empty(), "the hidden dir itself: nothing");
    }
}
