//! The dashboard's state, without a terminal: the last snapshot and the
//! rates since the one before, a short history of rates per overlay for the
//! sparklines, the selection, the sort key, the pause flag and whether
//! overlayd answers. Pure: [`App::update`] takes what a fetch returned and
//! [`App::key`] takes a key; the view reads the rest.

use crate::rates::{self, OverlayRates};
use overlay_api::{OverlayStats, StatsSnapshot};
use ratatui::crossterm::event::KeyCode;
use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Samples kept per overlay for the sparklines.
pub const HISTORY: usize = 60;

/// What the overlays table is sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Overlay name, ascending.
    Name,
    /// tx frames per second, busiest first.
    Tx,
    /// rx frames per second, busiest first.
    Rx,
    /// Drops per second, most first.
    Drops,
}

impl SortKey {
    /// The next key in the cycle name → tx → rx → drops → name.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Name => SortKey::Tx,
            SortKey::Tx => SortKey::Rx,
            SortKey::Rx => SortKey::Drops,
            SortKey::Drops => SortKey::Name,
        }
    }

    /// Its name as shown in the title bar.
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Name => "name",
            SortKey::Tx => "tx",
            SortKey::Rx => "rx",
            SortKey::Drops => "drops",
        }
    }
}

/// What the event loop should do after a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Keep going (redraw).
    Continue,
    /// Restore the terminal and exit.
    Quit,
}

/// Whether overlayd answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conn {
    /// No fetch yet.
    Connecting,
    /// The last fetch succeeded.
    Up,
    /// The last fetch failed, with its error; the loop keeps retrying.
    Down(String),
}

/// One overlay as shown: its latest counters and the rates since the
/// snapshot before (after the first snapshot: since the overlay's creation,
/// or `None` from an overlayd that does not say when that was).
#[derive(Clone, Debug)]
pub struct Row {
    /// Counters (and table, latency histogram, peers) from the last snapshot.
    pub stats: OverlayStats,
    /// Rates over the last interval.
    pub rates: Option<OverlayRates>,
}

impl Row {
    fn rate(&self, f: impl Fn(&OverlayRates) -> f64) -> f64 {
        self.rates.as_ref().map_or(0.0, f)
    }
}

/// Rates of one overlay over the last [`HISTORY`] intervals, oldest first.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// tx frames per second.
    pub tx_pps: VecDeque<u64>,
    /// rx frames per second.
    pub rx_pps: VecDeque<u64>,
    /// Drops per second.
    pub drops_ps: VecDeque<u64>,
}

impl History {
    fn push(&mut self, r: &OverlayRates) {
        for (q, v) in [
            (&mut self.tx_pps, r.tx_pps),
            (&mut self.rx_pps, r.rx_pps),
            (&mut self.drops_ps, r.drops_ps),
        ] {
            if q.len() == HISTORY {
                q.pop_front();
            }
            q.push_back(if v.is_finite() { v.round() as u64 } else { 0 });
        }
    }
}

/// The dashboard's whole state.
#[derive(Debug)]
pub struct App {
    /// The control socket, as named in the "not reachable" message.
    pub socket: String,
    /// Seconds between fetches.
    pub interval: f64,
    /// Overlays in the last snapshot, in overlayd's order.
    pub rows: Vec<Row>,
    /// Per overlay name.
    pub history: BTreeMap<String, History>,
    /// Name of the selected overlay.
    pub selected: Option<String>,
    /// Current sort.
    pub sort: SortKey,
    /// No fetches while set.
    pub paused: bool,
    /// Whether overlayd answers.
    pub conn: Conn,
    /// Whether varpd was linked at the last snapshot.
    pub varpd_linked: bool,
    prev: Option<(StatsSnapshot, Instant)>,
}

impl App {
    /// A dashboard of the overlayd at `socket`, fetched every `interval` s.
    pub fn new(socket: impl Into<String>, interval: f64) -> App {
        App {
            socket: socket.into(),
            interval,
            rows: Vec::new(),
            history: BTreeMap::new(),
            selected: None,
            sort: SortKey::Name,
            paused: false,
            conn: Conn::Connecting,
            varpd_linked: false,
            prev: None,
        }
    }

    /// Takes the result of one fetch: a snapshot updates rows, rates and
    /// history; an error marks overlayd unreachable (the rows are kept, and
    /// rates resume from the last good snapshot when it answers again).
    pub fn update(&mut self, fetched: Result<StatsSnapshot, String>) {
        let snap = match fetched {
            Ok(s) => s,
            Err(e) => {
                self.conn = Conn::Down(e);
                return;
            }
        };
        let now = Instant::now();
        // The first snapshot: rates since each overlay's creation, when
        // overlayd says when that was.
        let rates = match self.prev.as_ref() {
            Some((prev, at)) => {
                let secs = rates::interval_secs(prev, &snap)
                    .unwrap_or_else(|| now.duration_since(*at).as_secs_f64());
                Some(rates::rates(prev, &snap, secs))
            }
            None => rates::since_creation(&snap),
        };
        self.rows = snap
            .overlays
            .iter()
            .map(|o| Row {
                stats: o.clone(),
                rates: rates
                    .as_ref()
                    .and_then(|rs| rs.iter().find(|r| r.overlay == o.name).cloned()),
            })
            .collect();
        self.history
            .retain(|name, _| snap.overlays.iter().any(|o| &o.name == name));
        for r in self.rows.iter().filter_map(|r| r.rates.as_ref()) {
            self.history.entry(r.overlay.clone()).or_default().push(r);
        }
        self.varpd_linked = snap.varpd_linked;
        self.conn = Conn::Up;
        self.prev = Some((snap, now));
        let order = self.sorted();
        if self.selected_index().is_none() {
            self.selected = order.first().map(|r| r.stats.name.clone());
        }
    }

    /// The rows in display order.
    pub fn sorted(&self) -> Vec<&Row> {
        let mut rows: Vec<&Row> = self.rows.iter().collect();
        let desc = |a: f64, b: f64| b.partial_cmp(&a).unwrap_or(Ordering::Equal);
        rows.sort_by(|a, b| {
            let by = match self.sort {
                SortKey::Name => Ordering::Equal,
                SortKey::Tx => desc(a.rate(|r| r.tx_pps), b.rate(|r| r.tx_pps)),
                SortKey::Rx => desc(a.rate(|r| r.rx_pps), b.rate(|r| r.rx_pps)),
                SortKey::Drops => desc(a.rate(|r| r.drops_ps), b.rate(|r| r.drops_ps)),
            };
            by.then_with(|| a.stats.name.cmp(&b.stats.name))
        });
        rows
    }

    /// Position of the selected overlay in display order.
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.sorted().iter().position(|r| r.stats.name == name)
    }

    /// The selected overlay's row.
    pub fn selected_row(&self) -> Option<&Row> {
        let name = self.selected.as_deref()?;
        self.rows.iter().find(|r| r.stats.name == name)
    }

    fn step(&mut self, forward: bool) {
        let order: Vec<String> = self.sorted().iter().map(|r| r.stats.name.clone()).collect();
        if order.is_empty() {
            return;
        }
        let n = order.len();
        let i = match (self.selected_index(), forward) {
            (None, _) => 0,
            (Some(i), true) => (i + 1) % n,
            (Some(i), false) => (i + n - 1) % n,
        };
        self.selected = Some(order[i].clone());
    }

    /// Handles one key: ↑/k and ↓/j move the selection (wrapping), `s`
    /// cycles the sort, `p` pauses and resumes, `q` or Esc quits.
    pub fn key(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => return Action::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.step(false),
            KeyCode::Down | KeyCode::Char('j') => self.step(true),
            KeyCode::Char('s') => self.sort = self.sort.next(),
            KeyCode::Char('p') | KeyCode::Char(' ') => self.paused = !self.paused,
            _ => {}
        }
        Action::Continue
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use overlay_api::{HistBucket, PeerStats, TableStats};

    /// An overlay whose counters are `k` times a base rate.
    pub(crate) fn ov(name: &str, vni: u32, k: u64) -> OverlayStats {
        OverlayStats {
            offload: Default::default(),
            vnics: Vec::new(),
            peers_total: 0,
            name: name.into(),
            vnetid: vni,
            rx_frames: 50 * k,
            rx_bytes: 5_000 * k,
            tx_frames: 100 * k,
            tx_bytes: 10_000 * k,
            misses: k,
            lookups: k,
            table_entries: 3,
            drops: BTreeMap::from([("no-target".into(), 2 * k), ("bad-vni".into(), k)]),
            peers: vec![PeerStats {
                addr: Some("10.77.0.2".parse().unwrap()),
                tx_frames: 100 * k,
                tx_bytes: 10_000 * k,
                rx_frames: 50 * k,
                rx_bytes: 5_000 * k,
            }],
            lookup_latency: vec![
                HistBucket {
                    le_ns: 512,
                    count: 3,
                },
                HistBucket {
                    le_ns: 65_536,
                    count: 10,
                },
            ],
            table: TableStats {
                entries: 3,
                max_entries: 10,
                capacity: 16,
                load: 0.19,
                resizes: 2,
                entries_moved: 5,
                resizing: true,
                rejected_full: 0,
            },
            ..Default::default()
        }
    }

    pub(crate) fn snap(sec: u64, overlays: Vec<OverlayStats>) -> StatsSnapshot {
        StatsSnapshot {
            time_ns: sec * 1_000_000_000,
            mono_ns: sec * 1_000_000_000,
            overlays,
            ..Default::default()
        }
    }

    /// Two snapshots one second apart: ov0 at 100 tx pps, ov1 at 300.
    pub(crate) fn two_overlays() -> App {
        let mut app = App::new("/run/test/overlayd.sock", 1.0);
        app.update(Ok(snap(1, vec![ov("ov0", 4242, 1), ov("ov1", 7, 1)])));
        app.update(Ok(snap(2, vec![ov("ov0", 4242, 2), ov("ov1", 7, 4)])));
        app
    }

    #[test]
    fn updates_compute_rates_and_history() {
        let app = two_overlays();
        assert_eq!(app.conn, Conn::Up);
        assert_eq!(app.selected.as_deref(), Some("ov0"));
        let r = app.selected_row().unwrap().rates.as_ref().unwrap();
        assert_eq!((r.tx_pps, r.rx_pps, r.drops_ps), (100.0, 50.0, 3.0));
        assert_eq!(app.history["ov1"].tx_pps, [300]);
        let mut app = app;
        for i in 3..100 {
            app.update(Ok(snap(i, vec![ov("ov0", 4242, i)])));
        }
        assert_eq!(app.history["ov0"].tx_pps.len(), HISTORY);
        assert!(!app.history.contains_key("ov1"), "gone overlays leave");
    }

    #[test]
    fn the_first_snapshot_shows_rates_since_creation() {
        let mut o = ov("ov0", 4242, 4);
        o.created_mono_ns = 6_000_000_000;
        let mut s = snap(10, vec![o]);
        s.started_mono_ns = 5_000_000_000;
        let mut app = App::new("/run/test/overlayd.sock", 1.0);
        app.update(Ok(s));
        let r = app.selected_row().unwrap().rates.as_ref().unwrap();
        assert_eq!((r.interval_s, r.tx_pps), (4.0, 100.0));
        assert_eq!(app.history["ov0"].tx_pps, [100]);
        // An older overlayd (no creation times): no rates until the second.
        let mut app = App::new("/run/test/overlayd.sock", 1.0);
        app.update(Ok(snap(10, vec![ov("ov0", 4242, 4)])));
        assert!(app.selected_row().unwrap().rates.is_none());
    }

    #[test]
    fn errors_mark_overlayd_down_and_keep_the_rows() {
        let mut app = two_overlays();
        app.update(Err("cannot connect".into()));
        assert_eq!(app.conn, Conn::Down("cannot connect".into()));
        assert_eq!(app.rows.len(), 2);
        app.update(Ok(snap(3, vec![ov("ov0", 4242, 3)])));
        assert_eq!(app.conn, Conn::Up);
    }

    #[test]
    fn keys_select_with_wrap_cycle_sort_pause_and_quit() {
        let mut app = two_overlays();
        assert_eq!(app.key(KeyCode::Down), Action::Continue);
        assert_eq!(app.selected.as_deref(), Some("ov1"));
        app.key(KeyCode::Char('j'));
        assert_eq!(app.selected.as_deref(), Some("ov0"), "down wraps");
        app.key(KeyCode::Up);
        assert_eq!(app.selected.as_deref(), Some("ov1"), "up wraps");
        app.key(KeyCode::Char('k'));
        assert_eq!(app.selected.as_deref(), Some("ov0"));

        let mut seen = vec![app.sort];
        for _ in 0..4 {
            app.key(KeyCode::Char('s'));
            seen.push(app.sort);
        }
        use SortKey::*;
        assert_eq!(seen, [Name, Tx, Rx, Drops, Name]);
        app.key(KeyCode::Char('s'));
        let names: Vec<_> = app.sorted().iter().map(|r| r.stats.name.as_str()).collect();
        assert_eq!(names, ["ov1", "ov0"], "tx sort: busiest first");
        assert_eq!(
            app.selected_index(),
            Some(1),
            "selection follows the overlay"
        );

        app.key(KeyCode::Char('p'));
        assert!(app.paused);
        app.key(KeyCode::Char('p'));
        assert!(!app.paused);
        assert_eq!(app.key(KeyCode::Char('x')), Action::Continue);
        assert_eq!(app.key(KeyCode::Char('q')), Action::Quit);
        assert_eq!(app.key(KeyCode::Esc), Action::Quit);
    }
}
