//! The workspace: the one directory the agent's file and shell tools may touch (plus any
//! extra roots the user configured).
//!
//! Paths from the model are untrusted. They are checked as strings first (no `..`, no NUL,
//! no look-alike separators, bounded length) and then opened *beneath* a directory handle
//! with cap-std, which on Linux uses `openat2(RESOLVE_BENEATH)`: the kernel itself refuses
//! any resolution, symlinks included, that would leave the directory, so a symlink swapped
//! in between a check and a use cannot redirect the access. Files with more than one hard
//! link are refused, since the other name may live outside the workspace.
//!
//! A workspace may contain Pryx's own data dir or config (a workspace of `~` does): those
//! paths ([`Workspace::keep_out`]) are refused by name, and every file or directory a tool
//! opens is checked by the path the kernel gives its handle, so a symlink inside the
//! workspace cannot lead there either; walks skip them; deleting a directory that holds
//! them is refused.

use std::path::{Component, Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

/// Longest path accepted, in bytes, and longest single name.
pub const MAX_PATH_BYTES: usize = 4096;
pub const MAX_NAME_BYTES: usize = 255;

/// Why a path was refused or an access failed. Messages go back to the model.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("path `{0}` is refused: {1}")]
    Refused(String, &'static str),
    #[error("`{path}`: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("cannot open the workspace {}: {error}", root.display())]
    Open { root: PathBuf, error: std::io::Error },
}

impl WorkspaceError {
    pub fn io(path: &str, error: std::io::Error) -> Self {
        let error = if error.raw_os_error() == Some(libc::EXDEV) || error.kind() == std::io::ErrorKind::PermissionDenied
        {
            // openat2(RESOLVE_BENEATH) reports an escape as EXDEV; say what it means.
            std::io::Error::new(error.kind(), format!("{error} (it leads outside the workspace or is not allowed)"))
        } else {
            error
        };
        WorkspaceError::Io { path: path.to_owned(), error }
    }
}

/// A directory handle the tools may act beneath, with the absolute path it was opened from.
pub struct Root {
    pub path: PathBuf,
    pub dir: Dir,
}

/// The workspace and the extra roots.
pub struct Workspace {
    main: Root,
    extra: Vec<Root>,
    /// Pryx's own paths that lie inside a root: no tool may touch them.
    private: Vec<PathBuf>,
}

/// Why a path of Pryx's own is refused.
const PRIVATE: &str = "it is Pryx's own data (its token, history or config), which tools may not touch";

/// A checked path: which root it is under and its relative part (empty = the root itself).
pub struct Resolved<'a> {
    pub root: &'a Root,
    pub relative: PathBuf,
    /// What the model asked for, for messages.
    pub shown: String,
}

impl Resolved<'_> {
    /// The relative path, or `.` for the root itself (cap-std wants a non-empty path).
    pub fn rel(&self) -> &Path {
        if self.relative.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.relative
        }
    }

    /// Absolute path on disk, for display and for tools that need one (shell cwd).
    pub fn absolute(&self) -> PathBuf {
        self.root.path.join(&self.relative)
    }
}

impl Workspace {
    /// Open (creating if needed) the workspace directory and the extra roots.
    pub fn open(root: &Path, extra_roots: &[PathBuf]) -> Result<Workspace, WorkspaceError> {
        std::fs::create_dir_all(root).map_err(|error| WorkspaceError::Open { root: root.to_owned(), error })?;
        let open = |path: &Path| -> Result<Root, WorkspaceError> {
            let canonical =
                path.canonicalize().map_err(|error| WorkspaceError::Open { root: path.to_owned(), error })?;
            let dir = Dir::open_ambient_dir(&canonical, ambient_authority())
                .map_err(|error| WorkspaceError::Open { root: path.to_owned(), error })?;
            Ok(Root { path: canonical, dir })
        };
        Ok(Workspace {
            main: open(root)?,
            extra: extra_roots.iter().map(|p| open(p)).collect::<Result<_, _>>()?,
            private: Vec::new(),
        })
    }

    /// Keep the tools out of Pryx's own paths where a root contains them.
    pub fn keep_out(&mut self, private: &super::PrivatePaths) {
        let inside = |p: &&Path| self.roots().any(|root| p.starts_with(root));
        self.private = private.paths().filter(inside).map(Path::to_path_buf).collect();
    }

    /// Whether `path` (absolute) is, or lies in, one of Pryx's own paths.
    pub fn is_private(&self, path: &Path) -> bool {
        self.private.iter().any(|private| path.starts_with(private))
    }

    /// Whether one of Pryx's own paths lies inside `dir` (absolute).
    pub fn holds_private(&self, dir: &Path) -> bool {
        self.private.iter().any(|private| private.starts_with(dir))
    }

    /// Refuse an opened file or directory whose real path (as the kernel knows the handle,
    /// whatever links led there) is one of Pryx's own.
    pub fn check_opened(&self, handle: &impl std::os::fd::AsFd, shown: &str) -> Result<(), WorkspaceError> {
        if self.private.is_empty() {
            return Ok(());
        }
        let real = match real_path(handle) {
            Ok(real) => real,
            // Where handles have no path, the check by name in `resolve` is what holds.
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => return Ok(()),
            Err(e) => return Err(WorkspaceError::io(shown, e)),
        };
        if self.is_private(&real) {
            return Err(WorkspaceError::Refused(shown.to_owned(), PRIVATE));
        }
        Ok(())
    }

    /// The workspace directory (absolute, canonical).
    pub fn root(&self) -> &Path {
        &self.main.path
    }

    /// Every root, workspace first (for the shell sandbox's write allowance).
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.main.path.as_path()).chain(self.extra.iter().map(|r| r.path.as_path()))
    }

    /// Check a path from the model and say which root it falls under.
    pub fn resolve(&self, raw: &str) -> Result<Resolved<'_>, WorkspaceError> {
        let refuse = |why| WorkspaceError::Refused(shorten(raw), why);
        if raw.contains('\0') {
            return Err(refuse("it contains a NUL byte"));
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(refuse("it is longer than 4096 bytes"));
        }
        if raw.chars().any(is_deceptive) {
            return Err(refuse(
                "it contains an invisible, control or look-alike character (e.g. a fullwidth dot or slash)",
            ));
        }
        let path = Path::new(raw);
        let (root, rest) = if path.is_absolute() {
            let found = std::iter::once(&self.main)
                .chain(self.extra.iter())
                .find(|r| path.starts_with(&r.path))
                .ok_or_else(|| {
                    refuse("absolute paths outside the workspace are not allowed; use a path relative to the workspace")
                })?;
            (found, path.strip_prefix(&found.path).unwrap_or(Path::new("")))
        } else {
            (&self.main, path)
        };
        let mut relative = PathBuf::new();
        for component in rest.components() {
            match component {
                Component::Normal(name) => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(refuse("a name in it is longer than 255 bytes"));
                    }
                    relative.push(name);
                }
                Component::CurDir => {}
                Component::ParentDir => return Err(refuse("`..` is not allowed")),
                Component::RootDir | Component::Prefix(_) => return Err(refuse("it is not a plain relative path")),
            }
        }
        if self.is_private(&root.path.join(&relative)) {
            return Err(refuse(PRIVATE));
        }
        Ok(Resolved { root, relative, shown: shorten(raw) })
    }
}

/// The path of an open handle, from the kernel.
#[cfg(target_os = "linux")]
pub fn real_path(handle: &impl std::os::fd::AsFd) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", handle.as_fd().as_raw_fd()))
}

#[cfg(not(target_os = "linux"))]
pub fn real_path(_handle: &impl std::os::fd::AsFd) -> std::io::Result<PathBuf> {
    Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "no handle paths here"))
}

impl Workspace {
    /// A directory for a process or a walk that needs a real path (shell cwd, `fs_list`):
    /// it must open as a directory beneath its root, and its canonical form must stay
    /// inside the root. Returns the absolute path and the name to show.
    pub fn resolve_dir(&self, raw: &str) -> Result<(PathBuf, String), WorkspaceError> {
        let target = self.resolve(raw)?;
        let shown = if target.shown.is_empty() { ".".to_owned() } else { target.shown.clone() };
        target.root.dir.open_dir(target.rel()).map_err(|e| WorkspaceError::io(&shown, e))?;
        let absolute = target.absolute().canonicalize().map_err(|e| WorkspaceError::io(&shown, e))?;
        if !absolute.starts_with(&target.root.path) {
            return Err(WorkspaceError::Refused(shown, "it leads outside the workspace"));
        }
        if self.is_private(&absolute) {
            return Err(WorkspaceError::Refused(shown, PRIVATE));
        }
        Ok((absolute, shown))
    }
}

/// Characters that hide what a path really is: controls, bidi overrides, zero-width marks,
/// and look-alikes of `.`, `/` and `\`.
fn is_deceptive(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200B}'..='\u{200F}' // zero-width, LRM/RLM
                | '\u{202A}'..='\u{202E}' // bidi embedding and override
                | '\u{2066}'..='\u{2069}' // bidi isolates
                | '\u{FEFF}' // zero-width no-break space
                | '\u{FF0E}' | '\u{2024}' | '\u{FE52}' | '\u{3002}' | '\u{FF61}' // dots
                | '\u{FF0F}' | '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{1735}' // slashes
                | '\u{FF3C}' | '\u{2216}' | '\u{29F5}' | '\u{29F9}' | '\u{FE68}' // backslashes
        )
}

/// At most 120 characters of a path, for messages.
fn shorten(raw: &str) -> String {
    let clean: String = raw.chars().map(|c| if c.is_control() { '?' } else { c }).collect();
    match clean.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &clean[..cut]),
        None => clean,
    }
}

/// Refuse a file that has other hard links: one of them may be outside the workspace.
#[cfg(unix)]
pub fn check_single_link(file: &std::fs::File, shown: &str) -> Result<(), WorkspaceError> {
    use std::os::unix::fs::MetadataExt;
    let metadata = file.metadata().map_err(|e| WorkspaceError::io(shown, e))?;
    if metadata.is_file() && metadata.nlink() > 1 {
        return Err(WorkspaceError::Refused(
            shown.to_owned(),
            "the file has several hard links, and another one may be outside the workspace",
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
pub fn check_single_link(_file: &std::fs::File, _shown: &str) -> Result<(), WorkspaceError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_path_strings_are_refused_before_any_access() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(&dir.path().join("ws"), &[]).unwrap();
        let long_name = "a".repeat(300);
        let long_path = "d/".repeat(2100);
        for hostile in [
            "../secret",
            "a/../../etc/passwd",
            "/etc/passwd",
            "a\0b",
            "\u{FF0E}\u{FF0E}/etc/passwd",
            "..\u{2215}etc",
            "x\u{202E}txt.exe",
            "zero\u{200B}width",
            long_name.as_str(),
            long_path.as_str(),
        ] {
            assert!(matches!(ws.resolve(hostile), Err(WorkspaceError::Refused(..))), "{hostile:?} must be refused");
        }
    }

    #[test]
    fn plain_paths_and_absolute_paths_inside_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::open(&dir.path().join("ws"), &[]).unwrap();
        assert_eq!(ws.resolve("notes/today.md").unwrap().relative, Path::new("notes/today.md"));
        assert_eq!(ws.resolve("./a/./b").unwrap().relative, Path::new("a/b"));
        assert_eq!(ws.resolve("").unwrap().rel(), Path::new("."));
        let inside = ws.root().join("x.txt");
        assert_eq!(ws.resolve(inside.to_str().unwrap()).unwrap().relative, Path::new("x.txt"));
    }

    #[test]
    fn extra_roots_are_reachable_by_absolute_path_only() {
        let dir = tempfile::tempdir().unwrap();
        let extra = dir.path().join("photos");
        std::fs::create_dir_all(&extra).unwrap();
        let ws = Workspace::open(&dir.path().join("ws"), std::slice::from_ref(&extra)).unwrap();
        let canonical = extra.canonicalize().unwrap();
        let resolved = ws.resolve(canonical.join("cat.jpg").to_str().unwrap()).unwrap();
        assert_eq!(resolved.root.path, canonical);
        assert_eq!(resolved.relative, Path::new("cat.jpg"));
        assert!(ws.resolve(dir.path().join("elsewhere").to_str().unwrap()).is_err());
    }
}
