//! `ovstat --tui`: a live dashboard of overlayd's counters.
//!
//! [`app`] holds the state (pure), [`view`] draws it (pure), and [`run`]
//! owns the terminal: raw mode and the alternate screen, restored on every
//! way out (quit, error, SIGINT/SIGTERM, and a panic through
//! ratatui's panic hook). The loop fetches a snapshot every INTERVAL unless
//! paused, waits for keys in between, and when overlayd does not answer
//! shows why and tries again at the next interval, forever.

pub mod app;
pub mod view;

use anyhow::{Context, Result};
use app::{Action, App};
use overlay_api::{Client, StatsSnapshot, OVERLAYD_SOCKET};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait for a key, so signals are noticed promptly.
const TICK: Duration = Duration::from_millis(250);

/// Fetches a snapshot over the kept connection, reconnecting once if it
/// failed; the error text is the client's (it names the cause).
fn fetch(client: &mut Option<Client>, run_dir: &Path) -> Result<StatsSnapshot, String> {
    if let Some(c) = client.as_mut() {
        if let Ok(s) = c.stats(None) {
            return Ok(s);
        }
        *client = None;
    }
    let mut c = Client::overlayd(run_dir).map_err(|e| cause(&e))?;
    let s = c.stats(None).map_err(|e| cause(&e))?;
    *client = Some(c);
    Ok(s)
}

/// The innermost cause of a client error (the message already names the
/// socket, which the view names itself).
fn cause(e: &overlay_api::ClientError) -> String {
    let mut src: &dyn std::error::Error = e;
    while let Some(s) = src.source() {
        src = s;
    }
    src.to_string()
}

/// Restores the terminal when dropped.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

/// Runs the dashboard of the overlayd serving `run_dir` until `q`/Esc,
/// Ctrl-C or a signal.
pub fn run(run_dir: &Path, interval: f64) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    // SIGHUP keeps its default action: the terminal is gone, nothing to
    // restore, and crossterm would spin reading EOF from it rather than
    // return to this loop.
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop))
            .context("installing signal handlers")?;
    }
    let socket = run_dir.join(OVERLAYD_SOCKET);
    let mut app = App::new(socket.display().to_string(), interval);
    let every = Duration::from_secs_f64(interval);
    let mut client = None;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let _restore = Restore;
    let mut next = Instant::now();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = Instant::now();
        if !app.paused && now >= next {
            app.update(fetch(&mut client, run_dir));
            next = now + every;
        }
        terminal.draw(|f| view::draw(f, &app)).context("drawing")?;
        let wait = if app.paused {
            TICK
        } else {
            next.saturating_duration_since(Instant::now()).min(TICK)
        };
        if event::poll(wait).context("reading keys")? {
            if let Event::Key(k) = event::read().context("reading keys")? {
                if k.kind != KeyEventKind::Press {
                    continue;
                }
                let ctrl_c =
                    k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c');
                let was_paused = app.paused;
                if ctrl_c || app.key(k.code) == Action::Quit {
                    return Ok(());
                }
                if was_paused && !app.paused {
                    // Resumed: fetch now rather than at the old deadline.
                    next = Instant::now();
                }
            }
        }
    }
}
