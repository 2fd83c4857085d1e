//! `pryx login github|google` and `pryx logout`: the device flow in the terminal.
//!
//! GitHub shows no pre-filled link, so the code must be impossible to miss: it is printed
//! large and alone in a box, with the link, a QR code of the link (Unicode half blocks),
//! and the time left counting down in place while Pryx polls. Expiry and refusal end the
//! command with an error in words, never a silent retry.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use qrcode::{Color, EcLevel, QrCode};

use crate::auth::{self, AuthError, DeviceLogin, Poll, Provider};
use crate::config::Config;
use crate::secrets::SecretsHandle;

pub fn login(config: &Config, provider: &str) -> anyhow::Result<ExitCode> {
    let provider = Provider::parse(provider)?;
    let secrets = SecretsHandle::new(config.secrets.backend);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut login = match DeviceLogin::start(&config.cloud, provider).await {
            Ok(login) => login,
            Err(error) => {
                eprintln!("pryx: cannot start the {} login: {error}", provider.title());
                return Ok(ExitCode::FAILURE);
            }
        };
        show(&login);
        let session = match wait(&mut login).await {
            Ok(session) => session,
            Err(error) => {
                eprintln!("\npryx: {error}");
                if matches!(error, AuthError::Expired) {
                    eprintln!("      Run `pryx login {}` to get a new code.", provider.id());
                }
                return Ok(ExitCode::FAILURE);
            }
        };
        let has_ingest = session.has_ingest_token();
        secrets.run(move |s| session.store(s)).await?;
        println!("\nLogged in to {}. The token is in the {}.", provider.title(), secrets.get().describe());
        if provider == Provider::GitHub {
            if config.llm.base_url.is_none() && config.llm.api_key.is_none() {
                println!("Chat now uses GitHub Models ({}), with no key to paste.", config.cloud.github_models_model);
            }
            println!("MCP servers can use the token as secret:auth/github.");
        }
        if has_ingest {
            println!("Telemetry can go through your control plane: set [telemetry.otlp] via_cloud = true.");
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub fn logout(config: &Config, provider: Option<&str>) -> anyhow::Result<ExitCode> {
    let secrets = SecretsHandle::new(config.secrets.backend);
    let providers = match provider {
        Some(name) => vec![Provider::parse(name)?],
        None => auth::logged_in(secrets.get())?,
    };
    if providers.is_empty() {
        println!("not logged in");
    }
    for provider in providers {
        if auth::logout(secrets.get(), provider)? {
            println!("Logged out of {}; its tokens are gone from the keychain.", provider.title());
        } else {
            println!("not logged in to {}", provider.title());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(login: &DeviceLogin) {
    let title = login.provider.title();
    let spaced: String = login.user_code.chars().flat_map(|c| [c, ' ']).collect::<String>().trim_end().to_owned();
    let width = spaced.chars().count() + 8;
    println!("\nLog in to {title}: open this link on any device");
    println!("\n    {}\n", login.verification_uri);
    println!("and enter this code:\n");
    println!("    ┌{}┐", "─".repeat(width));
    println!("    │    {spaced}    │");
    println!("    └{}┘\n", "─".repeat(width));
    if let Some(qr) = terminal_qr(login.link()) {
        println!("or scan the link:\n");
        print!("{qr}");
        println!();
    }
}

/// Polls, counting the code's time down in place when stdout is a terminal.
async fn wait(login: &mut DeviceLogin) -> Result<auth::Session, AuthError> {
    let tty = std::io::stdout().is_terminal();
    if !tty {
        println!("Waiting for the code to be entered (it expires in {}).", clock(login.expires_at));
    }
    let mut next_poll = Instant::now() + login.interval();
    loop {
        if tty {
            print!("\r  Waiting for you… the code expires in {}  ", clock(login.expires_at));
            let _ = std::io::stdout().flush();
        }
        tokio::time::sleep(Duration::from_secs(1).min(next_poll.saturating_duration_since(Instant::now()))).await;
        if Instant::now() < next_poll {
            continue;
        }
        match login.poll().await? {
            Poll::Pending { wait } => next_poll = Instant::now() + wait,
            Poll::Done(session) => return Ok(*session),
        }
    }
}

/// `m:ss` until `at`.
fn clock(at: Instant) -> String {
    let left = at.saturating_duration_since(Instant::now()).as_secs();
    format!("{}:{:02}", left / 60, left % 60)
}

/// A QR code of `text` in Unicode half blocks (two modules a character cell), light on
/// dark as most terminals are, with the quiet zone scanners need.
fn terminal_qr(text: &str) -> Option<String> {
    let code = QrCode::with_error_correction_level(text, EcLevel::L).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    const QUIET: usize = 2;
    let side = width + 2 * QUIET;
    // `true` = a dark module; the quiet zone is light.
    let dark = |x: usize, y: usize| {
        x >= QUIET
            && y >= QUIET
            && x < width + QUIET
            && y < width + QUIET
            && colors[(y - QUIET) * width + x - QUIET] == Color::Dark
    };
    let mut out = String::new();
    for y in (0..side).step_by(2) {
        out.push_str("    ");
        for x in 0..side {
            // Terminals draw text light on dark: print light modules, leave dark ones blank.
            let (top, bottom) = (!dark(x, y), y + 1 < side && !dark(x, y + 1));
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the half-block QR back with a real decoder, one pixel per module.
    #[test]
    fn the_terminal_qr_code_scans() {
        let link = "https://github.com/login/device";
        let text = terminal_qr(link).expect("fits");
        let rows: Vec<Vec<char>> = text.lines().map(|l| l.trim_start_matches("    ").chars().collect()).collect();
        let side = rows[0].len();
        let scale = 4;
        let light = |x: usize, y: usize| {
            let cell = rows[y / 2][x];
            if y % 2 == 0 {
                matches!(cell, '█' | '▀')
            } else {
                matches!(cell, '█' | '▄')
            }
        };
        let pixels = side * scale;
        let mut image = rqrr::PreparedImage::prepare_from_bitmap(pixels, pixels, |x, y| {
            let (mx, my) = (x / scale, y / scale);
            // A scanner sees the terminal's light cells as paper: dark modules are the blanks.
            my < rows.len() * 2 && !light(mx, my)
        });
        let grids = image.detect_grids();
        assert_eq!(grids.len(), 1);
        assert_eq!(grids[0].decode().expect("decodes").1, link);
    }

    #[test]
    fn the_clock_counts_minutes_and_seconds() {
        let at = Instant::now() + Duration::from_secs(899) + Duration::from_millis(500);
        assert_eq!(clock(at), "14:59");
        assert_eq!(clock(Instant::now()), "0:00");
    }
}
