//! One desktop instance per data directory. The first `pryx` listens on
//! `<data-dir>/desktop.sock` (0600, and only the same user is served); a second launch
//! hands its arguments (a deep link, or nothing: "show the window") to it and exits.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest hand-over accepted.
const MAX_MESSAGE_BYTES: u64 = 64 * 1024;

/// What a second launch passes on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// A `pryx://` link, if the launch had one.
    pub link: Option<String>,
}

pub enum Claim {
    /// This process is the instance; serve hand-overs with [`Primary::serve`].
    Primary(Primary),
    /// Another instance took the hand-over; this process should exit.
    HandedOver,
}

/// The listening side; removes the socket file when dropped.
pub struct Primary {
    listener: UnixListener,
    path: PathBuf,
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("desktop.sock")
}

/// Become the instance for `data_dir`, or hand `handoff` to the one running.
pub fn claim(data_dir: &Path, handoff: &Handoff) -> std::io::Result<Claim> {
    let path = socket_path(data_dir);
    for _ in 0..3 {
        match hand_over(&path, handoff) {
            Ok(()) => return Ok(Claim::HandedOver),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {}
            Err(e) => return Err(e),
        }
        // Nobody listens: a socket file left by a killed instance is removed, then bound.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            if meta.file_type().is_socket() && meta.uid() == effective_uid() {
                std::fs::remove_file(&path)?;
            } else {
                return Err(std::io::Error::other(format!("{} exists and is not Pryx's socket", path.display())));
            }
        }
        match UnixListener::bind(&path) {
            Ok(listener) => {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
                return Ok(Claim::Primary(Primary { listener, path }));
            }
            // Another launch bound it between our attempts: hand over to it instead.
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("cannot claim or reach the running instance"))
}

fn hand_over(path: &Path, handoff: &Handoff) -> std::io::Result<()> {
    let mut stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = serde_json::to_vec(handoff).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.trim() == "ok" {
        Ok(())
    } else {
        Err(std::io::Error::other("the running instance did not take the hand-over"))
    }
}

impl Primary {
    /// Give the claim up without serving (the app will not start after all).
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// Accept hand-overs on a thread of their own; `deliver` runs for each valid one.
    pub fn serve(self, deliver: impl Fn(Handoff) + Send + 'static) -> std::io::Result<InstanceGuard> {
        let listener = self.listener.try_clone()?;
        std::thread::Builder::new().name("pryx-instance".into()).spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                match receive(stream) {
                    Ok(handoff) => deliver(handoff),
                    Err(e) => tracing::warn!("refused a hand-over from another launch: {e}"),
                }
            }
        })?;
        Ok(InstanceGuard { path: self.path.clone() })
    }
}

/// Removes the socket file when the instance ends.
pub struct InstanceGuard {
    path: PathBuf,
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn receive(mut stream: UnixStream) -> std::io::Result<Handoff> {
    if peer_uid(&stream)? != effective_uid() {
        return Err(std::io::Error::other("the other process belongs to another user"));
    }
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream.try_clone()?).take(MAX_MESSAGE_BYTES).read_line(&mut line)?;
    let handoff: Handoff = serde_json::from_str(line.trim()).map_err(std::io::Error::other)?;
    stream.write_all(b"ok\n")?;
    Ok(handoff)
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut credentials = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut length = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: the buffer is a ucred of the length passed; the fd is a live socket.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut credentials as *mut libc::ucred).cast(),
            &mut length,
        )
    };
    if result == 0 {
        Ok(credentials.uid)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_second_launch_hands_its_link_to_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let Claim::Primary(primary) = claim(dir.path(), &Handoff { link: None }).unwrap() else {
            panic!("the first launch must become the instance");
        };
        let mode = std::fs::metadata(socket_path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (tx, rx) = std::sync::mpsc::channel();
        let guard = primary.serve(move |handoff| tx.send(handoff).unwrap()).unwrap();
        let link = Handoff { link: Some("pryx://new?text=hi".into()) };
        assert!(matches!(claim(dir.path(), &link).unwrap(), Claim::HandedOver));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), link);

        // Garbage is refused and the instance keeps serving.
        let mut raw = UnixStream::connect(socket_path(dir.path())).unwrap();
        raw.write_all(b"{nonsense\n").unwrap();
        assert!(matches!(claim(dir.path(), &link).unwrap(), Claim::HandedOver));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), link);
        drop(guard);
        assert!(!socket_path(dir.path()).exists());
    }

    #[test]
    fn a_socket_left_by_a_killed_instance_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        drop(UnixListener::bind(socket_path(dir.path())).unwrap());
        assert!(socket_path(dir.path()).exists());
        assert!(matches!(claim(dir.path(), &Handoff { link: None }).unwrap(), Claim::Primary(_)));
    }
}
