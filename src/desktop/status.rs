//! What the shell shows about the agent: one [`Shown`] value becomes the window title's
//! suffix, the tray tooltip and the tray icon's colour. Pure, so it is tested here.

use pryx_api::{Activity, AgentState};

/// The agent as the shell last heard of it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// Not connected yet (start-up).
    Connecting,
    /// The connection dropped (the agent restarts after a panic, or is stopping).
    Reconnecting,
    Activity(Activity),
}

impl Shown {
    /// A few words: "Thinking…", "Waiting for your approval (2)", "Paused".
    pub fn describe(&self) -> String {
        match self {
            Shown::Connecting => "Starting…".into(),
            Shown::Reconnecting => "Reconnecting to the agent…".into(),
            Shown::Activity(a) => match a.state {
                AgentState::Idle => "Idle".into(),
                AgentState::Thinking if a.running_turns > 1 => format!("Thinking ({} chats)…", a.running_turns),
                AgentState::Thinking => "Thinking…".into(),
                AgentState::WaitingForApproval if a.pending_approvals > 1 => {
                    format!("Waiting for your approval ({})", a.pending_approvals)
                }
                AgentState::WaitingForApproval => "Waiting for your approval".into(),
                AgentState::Error => match &a.last_error {
                    Some(e) => format!("Error: {}", shorten(e, 80)),
                    None => "Error".into(),
                },
                AgentState::Paused => "Paused".into(),
            },
        }
    }

    /// The window title: the page's own title, then the state unless all is quiet.
    pub fn window_title(&self, page_title: &str) -> String {
        let page = if page_title.trim().is_empty() { "Pryx" } else { page_title.trim() };
        match self {
            Shown::Activity(a) if a.state == AgentState::Idle => page.to_owned(),
            other => format!("{page} · {}", other.describe()),
        }
    }

    pub fn tooltip(&self) -> String {
        format!("Pryx: {}", self.describe())
    }

    /// The colour of the tray icon's status dot.
    pub fn colour(&self) -> [u8; 3] {
        match self {
            Shown::Connecting | Shown::Reconnecting => GREY,
            Shown::Activity(a) => match a.state {
                AgentState::Idle => GREEN,
                AgentState::Thinking => AMBER,
                AgentState::WaitingForApproval => ORANGE,
                AgentState::Error => RED,
                AgentState::Paused => GREY,
            },
        }
    }

    pub fn paused(&self) -> bool {
        matches!(self, Shown::Activity(a) if a.paused)
    }
}

const GREEN: [u8; 3] = [0x16, 0xa3, 0x4a];
const AMBER: [u8; 3] = [0xf5, 0x9e, 0x0b];
const ORANGE: [u8; 3] = [0xea, 0x58, 0x0c];
const RED: [u8; 3] = [0xdc, 0x26, 0x26];
const GREY: [u8; 3] = [0x9c, 0xa3, 0xaf];
const BRAND: [u8; 3] = [0x4f, 0x6b, 0xed];

fn shorten(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or("");
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        format!("{}…", line.chars().take(max - 1).collect::<String>())
    }
}

/// The Pryx mark (a brand-coloured disc with a white "P"), `size`×`size` RGBA, with a status
/// dot of `dot` in the lower right corner when given.
pub fn draw_icon(size: u32, dot: Option<[u8; 3]>) -> Vec<u8> {
    let s = size as f32;
    let mut rgba = vec![0u8; (size * size * 4) as usize];
    let centre = s / 2.0;
    let radius = s / 2.0 - 0.5;
    let stroke = s * 0.1;
    for y in 0..size {
        for x in 0..size {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let mut colour = None;
            if (fx - centre).hypot(fy - centre) <= radius {
                colour = Some(if in_letter_p(fx / s, fy / s, stroke / s) { [255, 255, 255] } else { BRAND });
            }
            if let Some(dot) = dot {
                let (dx, dy, dr) = (s * 0.78, s * 0.78, s * 0.22);
                let distance = (fx - dx).hypot(fy - dy);
                if distance <= dr + s * 0.06 {
                    colour = Some(if distance <= dr { dot } else { [255, 255, 255] });
                }
            }
            if let Some([r, g, b]) = colour {
                let i = ((y * size + x) * 4) as usize;
                rgba[i..i + 4].copy_from_slice(&[r, g, b, 255]);
            }
        }
    }
    rgba
}

/// A "P" in unit coordinates: a stem and a bowl.
fn in_letter_p(x: f32, y: f32, stroke: f32) -> bool {
    let stem = (0.33..0.33 + stroke).contains(&x) && (0.25..0.77).contains(&y);
    let (bx, by, br) = (0.47, 0.41, 0.16);
    let distance = (x - bx).hypot(y - by);
    let bowl = distance <= br && distance >= br - stroke && x >= 0.33;
    let bars = (0.33..bx).contains(&x)
        && ((y - (by - br + stroke / 2.0)).abs() <= stroke / 2.0
            || (y - (by + br - stroke / 2.0)).abs() <= stroke / 2.0);
    stem || bowl || bars
}

#[cfg(test)]
mod tests {
    use super::*;

    fn activity(running: u32, pending: u32, paused: bool, error: Option<&str>) -> Shown {
        Shown::Activity(Activity::new(running, pending, paused, error.map(str::to_owned)))
    }

    #[test]
    fn the_title_names_the_page_and_anything_but_idle() {
        assert_eq!(activity(0, 0, false, None).window_title("New chat — Pryx"), "New chat — Pryx");
        assert_eq!(activity(1, 0, false, None).window_title("Pryx"), "Pryx · Thinking…");
        assert_eq!(activity(1, 2, false, None).window_title(""), "Pryx · Waiting for your approval (2)");
        assert_eq!(activity(0, 0, true, None).window_title("Pryx"), "Pryx · Paused");
        assert_eq!(
            activity(0, 0, false, Some("the provider refused the key\nmore")).window_title("Pryx"),
            "Pryx · Error: the provider refused the key"
        );
        assert_eq!(Shown::Reconnecting.window_title("Pryx"), "Pryx · Reconnecting to the agent…");
    }

    #[test]
    fn every_state_has_its_own_colour_and_the_icon_shows_it() {
        let colours = [
            activity(0, 0, false, None).colour(),
            activity(1, 0, false, None).colour(),
            activity(0, 1, false, None).colour(),
            activity(0, 0, false, Some("x")).colour(),
            activity(0, 0, true, None).colour(),
        ];
        for (i, a) in colours.iter().enumerate() {
            for b in &colours[i + 1..] {
                assert_ne!(a, b);
            }
        }
        let icon = draw_icon(32, Some(RED));
        assert_eq!(icon.len(), 32 * 32 * 4);
        let pixel = |x: usize, y: usize| &icon[(y * 32 + x) * 4..(y * 32 + x) * 4 + 4];
        assert_eq!(pixel(25, 25), &[0xdc, 0x26, 0x26, 255], "the status dot");
        assert_eq!(pixel(0, 0)[3], 0, "corners are transparent");
        assert!(icon.chunks(4).any(|p| p == [255, 255, 255, 255]), "the letter");
    }
}
