//! What the window remembers between runs (`<data-dir>/window.json`): its size and place,
//! whether it was maximised, and whether the user has been told that closing it keeps
//! Pryx running in the tray. A missing or unreadable file means defaults, never an error.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WindowState {
    /// Outer position in physical pixels; `None` lets the window manager place it.
    pub position: Option<(i32, i32)>,
    /// Inner size in logical pixels.
    pub size: (f64, f64),
    pub maximized: bool,
    pub told_about_tray: bool,
}

impl Default for WindowState {
    fn default() -> Self {
        WindowState { position: None, size: (1100.0, 760.0), maximized: false, told_about_tray: false }
    }
}

/// A monitor's position and size, in physical pixels.
pub type MonitorArea = ((i32, i32), (u32, u32));

/// Smallest size restored (a window shrunk to nothing is not worth remembering).
const MIN_SIZE: (f64, f64) = (480.0, 360.0);

impl WindowState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("window.json")
    }

    pub fn load(data_dir: &Path) -> WindowState {
        let Ok(text) = std::fs::read_to_string(Self::path(data_dir)) else {
            return WindowState::default();
        };
        match serde_json::from_str::<WindowState>(&text) {
            Ok(mut state) => {
                state.size = (state.size.0.clamp(MIN_SIZE.0, 10_000.0), state.size.1.clamp(MIN_SIZE.1, 10_000.0));
                state
            }
            Err(e) => {
                tracing::warn!("ignoring {}: {e}", Self::path(data_dir).display());
                WindowState::default()
            }
        }
    }

    /// Written to a temporary file and renamed, so a crash never leaves half a file.
    pub fn save(&self, data_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(data_dir);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        std::fs::rename(&temporary, &path)
    }

    /// Whether the saved position puts the window's top-left area on one of `monitors`
    /// (given as position and size in physical pixels); a monitor unplugged since must not
    /// leave the window off-screen.
    pub fn visible_on(&self, monitors: &[MonitorArea]) -> bool {
        let Some((x, y)) = self.position else { return true };
        monitors.iter().any(|&((mx, my), (w, h))| {
            // At least the title bar's first 100×40 pixels must be on the monitor.
            x + 100 > mx && x < mx + w as i32 && y >= my - 10 && y + 40 < my + h as i32
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults_on_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(WindowState::load(dir.path()), WindowState::default());
        let state =
            WindowState { position: Some((40, 60)), size: (900.0, 700.0), maximized: true, told_about_tray: true };
        state.save(dir.path()).unwrap();
        assert_eq!(WindowState::load(dir.path()), state);
        std::fs::write(WindowState::path(dir.path()), "{not json").unwrap();
        assert_eq!(WindowState::load(dir.path()), WindowState::default());
        std::fs::write(WindowState::path(dir.path()), r#"{"size":[10,10]}"#).unwrap();
        assert_eq!(WindowState::load(dir.path()).size, MIN_SIZE);
    }

    #[test]
    fn a_position_off_every_monitor_is_not_restored() {
        let monitors = [((0, 0), (1920, 1080))];
        let at = |x, y| WindowState { position: Some((x, y)), ..Default::default() };
        assert!(at(100, 100).visible_on(&monitors));
        assert!(!at(2500, 100).visible_on(&monitors));
        assert!(!at(100, -500).visible_on(&monitors));
        assert!(WindowState::default().visible_on(&monitors));
    }
}
