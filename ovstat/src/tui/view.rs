//! Drawing the dashboard from an [`App`] (pure: a frame in, cells out).
//!
//! Layout, fitted to 80×24: a title line; the overlays table (up to five
//! rows visible, the selected one marked `>` and reversed); the selected
//! overlay's details in two columns (left: tx pps sparkline, target-table
//! occupancy, drops by reason; right: lookup-latency histogram, top-5
//! peers); a footer with the keys. When overlayd does not answer, a
//! centered message over an empty frame replaces everything but the title
//! and the footer.

use super::app::{App, Conn, Row};
use overlay_api::HistBucket;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Bar, BarChart, BarGroup, Block, Cell, Gauge, Paragraph, Sparkline, Table, TableState, Wrap,
};
use ratatui::Frame;

/// The footer's text.
pub const KEYS: &str = "↑/↓ or j/k select  s sort  p pause  q quit";

/// Latency bars: decades from ≤1µs to ≤1s, then >1s.
const LATENCY_LABELS: [&str; 8] = ["1µ", "10µ", ".1m", "1m", "10m", ".1s", "1s", ">1s"];

/// A rate with an SI suffix, in at most 6 characters (`-` if unknown).
pub fn si(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    match v {
        v if v < 1e3 => format!("{v:.0}"),
        v if v < 1e6 => format!("{:.1}k", v / 1e3),
        v if v < 1e9 => format!("{:.1}M", v / 1e6),
        v => format!("{:.1}G", v / 1e9),
    }
}

/// The histogram folded into decade bars (a log2 bucket goes to the first
/// decade whose bound is at least its upper bound).
pub fn latency_bars(buckets: &[HistBucket]) -> [u64; 8] {
    let mut bars = [0u64; 8];
    for b in buckets {
        let mut bound = 1_000u64;
        let mut i = 0;
        while i < 7 && b.le_ns > bound {
            bound *= 10;
            i += 1;
        }
        bars[i] += b.count;
    }
    bars
}

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let [title, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_title(frame, title, app);
    frame.render_widget(
        Paragraph::new(Line::from(KEYS)).style(Style::new().add_modifier(Modifier::DIM)),
        footer,
    );
    if let Conn::Down(err) = &app.conn {
        let block = Block::bordered();
        let inner = block.inner(body);
        frame.render_widget(block, body);
        let text = format!(
            "overlayd is not reachable at {}: {err} — retrying",
            app.socket
        );
        let width = inner.width.saturating_sub(4).max(1);
        let lines = (text.chars().count() as u16).div_ceil(width).max(1);
        let [_, mid, _] = Layout::vertical([
            Constraint::Fill(1),
            Constraint::Length(lines),
            Constraint::Fill(1),
        ])
        .areas(inner);
        let [_, mid, _] = Layout::horizontal([
            Constraint::Length(2),
            Constraint::Min(1),
            Constraint::Length(2),
        ])
        .areas(mid);
        frame.render_widget(
            Paragraph::new(text)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true })
                .style(Style::new().fg(Color::Yellow)),
            mid,
        );
        return;
    }
    let visible = app.rows.len().clamp(1, 5) as u16;
    let [table, details] =
        Layout::vertical([Constraint::Length(visible + 3), Constraint::Min(0)]).areas(body);
    draw_overlays(frame, table, app);
    match app.selected_row() {
        Some(row) => draw_details(frame, details, app, row),
        None => frame.render_widget(
            Paragraph::new(match app.conn {
                Conn::Connecting => "connecting to overlayd…",
                _ => "no overlays",
            })
            .alignment(Alignment::Center)
            .block(Block::bordered()),
            details,
        ),
    }
}

fn draw_title(frame: &mut Frame, area: Rect, app: &App) {
    let mut spans = vec![
        Span::styled("ovstat", Style::new().add_modifier(Modifier::BOLD)),
        Span::raw(format!(
            "  every {}s  sort {}  varpd {}",
            app.interval,
            app.sort.label(),
            if app.varpd_linked {
                "linked"
            } else {
                "unlinked"
            }
        )),
    ];
    if app.paused {
        spans.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_overlays(frame: &mut Frame, area: Rect, app: &App) {
    let header = [
        "OVERLAY", "VNI", "STATUS", "RX_PPS", "TX_PPS", "RX_BPS", "TX_BPS", "DROP/s", "MISS/s",
        "ENTRIES",
    ]
    .map(Cell::from);
    let order = app.sorted();
    let rows = order.iter().map(|r| {
        let rate = |f: fn(&crate::rates::OverlayRates) -> f64| {
            r.rates.as_ref().map_or_else(|| "-".into(), |x| si(f(x)))
        };
        ratatui::widgets::Row::new([
            r.stats.name.clone(),
            r.stats.vnetid.to_string(),
            r.stats.status.to_string(),
            rate(|x| x.rx_pps),
            rate(|x| x.tx_pps),
            rate(|x| x.rx_bps),
            rate(|x| x.tx_bps),
            rate(|x| x.drops_ps),
            rate(|x| x.misses_ps),
            r.stats.table_entries.to_string(),
        ])
    });
    let widths = [
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(7),
    ];
    let table = Table::new(rows, widths)
        .header(ratatui::widgets::Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .column_spacing(1)
        .highlight_symbol(">")
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .block(Block::bordered().title(format!(" overlays ({}) ", app.rows.len())));
    let mut state = TableState::default().with_selected(app.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_details(frame: &mut Frame, area: Rect, app: &App, row: &Row) {
    let name = &row.stats.name;
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let [spark, table, drops] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(5),
        Constraint::Min(3),
    ])
    .areas(left);
    let [latency, peers] =
        Layout::vertical([Constraint::Min(5), Constraint::Length(8)]).areas(right);

    // tx pps sparkline: the newest samples that fit.
    let hist: Vec<u64> = app
        .history
        .get(name)
        .map(|h| h.tx_pps.iter().copied().collect())
        .unwrap_or_default();
    let fit = spark.width.saturating_sub(2) as usize;
    let tail = &hist[hist.len().saturating_sub(fit)..];
    let now = hist.last().copied().unwrap_or(0);
    let max = hist.iter().copied().max().unwrap_or(0);
    frame.render_widget(
        Sparkline::default()
            .data(tail)
            .style(Style::new().fg(Color::Green))
            .block(Block::bordered().title(format!(" {name} tx pps {now} (max {max}) "))),
        spark,
    );

    // Target-table occupancy.
    let t = &row.stats.table;
    let block = Block::bordered().title(" target table ");
    let inner = block.inner(table);
    frame.render_widget(block, table);
    let [gauge, info1, info2] = Layout::vertical([Constraint::Length(1); 3]).areas(inner);
    let (ratio, label) = if t.max_entries > 0 {
        let r = (t.entries as f64 / t.max_entries as f64).clamp(0.0, 1.0);
        (
            r,
            format!("{}/{} ({:.0}%)", t.entries, t.max_entries, r * 100.0),
        )
    } else {
        (0.0, format!("{} (no max)", t.entries))
    };
    frame.render_widget(
        Gauge::default()
            .ratio(ratio)
            .label(label)
            .gauge_style(Style::new().fg(Color::Cyan).bg(Color::DarkGray)),
        gauge,
    );
    frame.render_widget(
        Paragraph::new(format!(
            "cap {}  load {:.2}  resizes {}",
            t.capacity, t.load, t.resizes
        )),
        info1,
    );
    let mut line = vec![Span::raw(format!(
        "moved {}  rejected {}",
        t.entries_moved, t.rejected_full
    ))];
    if t.resizing {
        line.push(Span::styled(
            "  RESIZING",
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    frame.render_widget(Paragraph::new(Line::from(line)), info2);

    // Drops by reason: rate over the interval, and total.
    let mut reasons: Vec<(&String, f64, u64)> = row
        .stats
        .drops
        .iter()
        .map(|(reason, &total)| {
            let ps = row
                .rates
                .as_ref()
                .and_then(|r| r.drops.get(reason).copied())
                .unwrap_or(0.0);
            (reason, ps, total)
        })
        .collect();
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.2.cmp(&a.2)));
    let lines: Vec<Line> = if reasons.is_empty() {
        vec![Line::from("none")]
    } else {
        reasons
            .iter()
            .map(|(reason, ps, total)| {
                Line::from(format!("{reason:<22.22} {:>5}/s {total:>6}", si(*ps)))
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" drops by reason ")),
        drops,
    );

    // Lookup latency, since the overlay's creation.
    let bars = latency_bars(&row.stats.lookup_latency);
    let group = BarGroup::default().bars(
        &bars
            .iter()
            .zip(LATENCY_LABELS)
            .map(|(&v, l)| Bar::default().value(v).label(Line::from(l)))
            .collect::<Vec<_>>(),
    );
    frame.render_widget(
        BarChart::default()
            .data(group)
            .bar_width(3)
            .bar_gap(1)
            .bar_style(Style::new().fg(Color::Magenta))
            .block(Block::bordered().title(format!(
                " lookup latency ({} total) ",
                bars.iter().sum::<u64>()
            ))),
        latency,
    );

    // Top-5 peers by bytes per second (both ways).
    let mut top: Vec<&crate::rates::PeerRates> = row
        .rates
        .as_ref()
        .map(|r| r.peers.iter().collect())
        .unwrap_or_default();
    top.sort_by(|a, b| (b.tx_bps + b.rx_bps).total_cmp(&(a.tx_bps + a.rx_bps)));
    let mut lines = vec![Line::styled(
        format!(
            "{:<15} {:>6} {:>6} {:>6}",
            "PEER", "TX_BPS", "RX_BPS", "TX_PPS"
        ),
        Style::new().add_modifier(Modifier::BOLD),
    )];
    lines.extend(top.iter().take(5).map(|p| {
        Line::from(format!(
            "{:<15.15} {:>6} {:>6} {:>6}",
            p.peer,
            si(p.tx_bps),
            si(p.rx_bps),
            si(p.tx_pps)
        ))
    }));
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" top peers ")),
        peers,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::tests::two_overlays;
    use crate::tui::app::App;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::KeyCode;
    use ratatui::Terminal;

    fn render(app: &App) -> String {
        let mut t = Terminal::new(TestBackend::new(80, 24)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer();
        let mut out = String::new();
        for y in 0..buf.area.height {
            for x in 0..buf.area.width {
                out.push_str(buf[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn an_80x24_frame_shows_overlays_sections_and_keys() {
        let app = two_overlays();
        let s = render(&app);
        eprintln!("{s}");
        for want in [
            "ov0",
            "ov1",
            "4242",
            "ONLINE",
            KEYS,
            " overlays (2) ",
            "tx pps",
            " target table ",
            " drops by reason ",
            " lookup latency ",
            " top peers ",
            "10.77.0.2",
            "RESIZING",
            "3/10 (30%)",
            "no-target",
        ] {
            assert!(s.contains(want), "{want:?} missing:\n{s}");
        }
        // ov0 selected: marked, and its details shown (100 tx pps).
        assert!(s.contains(">ov0 "), "{s}");
        assert!(s.contains(" ov0 tx pps 100 "), "{s}");
    }

    #[test]
    fn the_selected_overlay_gets_the_details() {
        let mut app = two_overlays();
        app.key(KeyCode::Down);
        let s = render(&app);
        assert!(s.contains(">ov1 "), "{s}");
        assert!(s.contains(" ov1 tx pps 300 "), "{s}");
        app.key(KeyCode::Char('p'));
        assert!(render(&app).contains("PAUSED"));
    }

    #[test]
    fn unreachable_overlayd_is_a_centered_message() {
        let mut app = App::new("/run/x/overlayd.sock", 1.0);
        app.update(Err("connection refused".into()));
        let s = render(&app);
        eprintln!("{s}");
        let flat: String = s
            .lines()
            .map(|l| l.trim_matches(|c| c == '│' || c == ' '))
            .collect::<Vec<_>>()
            .join(" ");
        assert!(
            flat.contains(
                "overlayd is not reachable at /run/x/overlayd.sock: connection refused — retrying"
            ),
            "{s}"
        );
        assert!(s.contains(KEYS), "{s}");
        assert!(!s.contains(" overlays "), "{s}");
    }

    #[test]
    fn latency_folds_into_decades_and_rates_get_suffixes() {
        let b = |le_ns, count| HistBucket { le_ns, count };
        let bars = latency_bars(&[b(512, 1), b(1024, 2), b(2_000_000, 3), b(u64::MAX, 4)]);
        assert_eq!(bars, [1, 2, 0, 0, 3, 0, 0, 4]);
        assert_eq!(si(999.4), "999");
        assert_eq!(si(81_920.0), "81.9k");
        assert_eq!(si(1.5e9), "1.5G");
        assert_eq!(si(f64::NAN), "-");
    }
}
