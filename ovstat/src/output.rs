//! Output: rates in, lines of text out (pure; [`Printer`] only counts lines).
//!
//! Three views, each with its own fields: per overlay (the default), per
//! underlay peer (`-d`) and per drop reason (`-D`). Each view prints as
//! aligned columns with a header repeated every [`HEADER_EVERY`] lines like
//! vmstat, as `-p` parseable lines (the chosen fields joined by `:`, a `:`
//! or `\` inside a value escaped with `\`, as dladm does, no header), or as
//! `--json`: one object per overlay per interval, every field and the peers
//! and drops included, whatever the view.

use crate::rates::OverlayRates;
use std::fmt::Write as _;

/// Data lines between two headers in the column format.
pub const HEADER_EVERY: usize = 20;

/// What each line is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// One line per overlay.
    Overlay,
    /// One line per overlay per underlay peer (`-d`).
    Dest,
    /// One line per overlay per drop reason (`-D`).
    Drops,
    /// One line per overlay per VNIC (guest) (`-V`).
    Vnic,
}

/// One column: its `-o` name, its width and alignment in the column format.
#[derive(Debug)]
pub struct Field {
    /// Name given to `-o` (the header is the same, upper-cased).
    pub name: &'static str,
    width: usize,
    left: bool,
}

const fn f(name: &'static str, width: usize, left: bool) -> Field {
    Field { name, width, left }
}

const OVERLAY_FIELDS: &[Field] = &[
    f("overlay", 10, true),
    f("vni", 8, false),
    f("rx_pps", 9, false),
    f("tx_pps", 9, false),
    f("rx_bps", 12, false),
    f("tx_bps", 12, false),
    f("drops_ps", 9, false),
    f("misses_ps", 9, false),
    f("lookups_ps", 10, false),
    f("entries", 8, false),
];

const DEST_FIELDS: &[Field] = &[
    f("overlay", 10, true),
    f("peer", 15, true),
    f("rx_pps", 9, false),
    f("tx_pps", 9, false),
    f("rx_bps", 12, false),
    f("tx_bps", 12, false),
];

const VNIC_FIELDS: &[Field] = &[
    f("overlay", 10, true),
    f("vnic", 10, true),
    f("mac", 17, true),
    f("rx_pps", 9, false),
    f("tx_pps", 9, false),
    f("rx_bps", 12, false),
    f("tx_bps", 12, false),
];

const DROP_FIELDS: &[Field] = &[
    f("overlay", 10, true),
    f("reason", 22, true),
    f("drops_ps", 9, false),
];

impl View {
    /// Every field of the view, in default order.
    pub fn fields(self) -> &'static [Field] {
        match self {
            View::Overlay => OVERLAY_FIELDS,
            View::Dest => DEST_FIELDS,
            View::Drops => DROP_FIELDS,
            View::Vnic => VNIC_FIELDS,
        }
    }

    /// Resolves `-o FIELD,...` (or every field, for `None` or `all`);
    /// an unknown field is an error naming it and the valid ones.
    pub fn select(self, spec: Option<&str>) -> Result<Vec<&'static Field>, String> {
        let all = self.fields();
        let spec = match spec {
            None => return Ok(all.iter().collect()),
            Some(s) if s.eq_ignore_ascii_case("all") => return Ok(all.iter().collect()),
            Some(s) => s,
        };
        spec.split(',')
            .map(|name| {
                let name = name.trim();
                all.iter()
                    .find(|f| f.name.eq_ignore_ascii_case(name))
                    .ok_or_else(|| {
                        let valid: Vec<_> = all.iter().map(|f| f.name).collect();
                        format!("unknown field '{name}' (valid: {})", valid.join(","))
                    })
            })
            .collect()
    }
}

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns under a repeated header.
    Columns,
    /// `-p`: values joined by `:`, no header.
    Parseable,
    /// `--json`: one object per overlay.
    Json,
}

/// One line's values, before formatting.
struct Values<'a> {
    rates: &'a OverlayRates,
    peer: Option<&'a crate::rates::PeerRates>,
    reason: Option<(&'a str, f64)>,
    vnic: Option<&'a crate::rates::VnicRates>,
}

impl Values<'_> {
    fn get(&self, field: &str, parseable: bool) -> String {
        let r = self.rates;
        let rate = |v: f64| fmt_rate(v, parseable);
        if let Some(v) = self.vnic {
            match field {
                "vnic" => return v.vnic.clone(),
                "mac" => return v.mac.clone(),
                "rx_pps" => return rate(v.rx_pps),
                "tx_pps" => return rate(v.tx_pps),
                "rx_bps" => return rate(v.rx_bps),
                "tx_bps" => return rate(v.tx_bps),
                _ => {}
            }
        }
        match (field, self.peer, self.reason) {
            ("overlay", ..) => r.overlay.clone(),
            ("vni", ..) => r.vni.to_string(),
            ("peer", Some(p), _) => p.peer.clone(),
            ("rx_pps", Some(p), _) => rate(p.rx_pps),
            ("tx_pps", Some(p), _) => rate(p.tx_pps),
            ("rx_bps", Some(p), _) => rate(p.rx_bps),
            ("tx_bps", Some(p), _) => rate(p.tx_bps),
            ("reason", _, Some((name, _))) => name.to_string(),
            ("drops_ps", _, Some((_, v))) => rate(v),
            ("rx_pps", ..) => rate(r.rx_pps),
            ("tx_pps", ..) => rate(r.tx_pps),
            ("rx_bps", ..) => rate(r.rx_bps),
            ("tx_bps", ..) => rate(r.tx_bps),
            ("drops_ps", ..) => rate(r.drops_ps),
            ("misses_ps", ..) => rate(r.misses_ps),
            ("lookups_ps", ..) => rate(r.lookups_ps),
            ("entries", ..) => r.entries.to_string(),
            _ => "-".to_string(),
        }
    }
}

/// A rate as printed: whole numbers in columns (like vmstat), up to three
/// decimals when parseable.
pub fn fmt_rate(v: f64, parseable: bool) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if !parseable {
        return format!("{v:.0}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// Escapes `:` and `\` in a parseable value, as dladm does.
pub fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace(':', "\\:")
}

/// Formats reports, remembering when the header is due again.
#[derive(Debug)]
pub struct Printer {
    view: View,
    format: Format,
    fields: Vec<&'static Field>,
    since_header: Option<usize>,
}

impl Printer {
    /// A printer of `fields` (from [`View::select`]) of `view` in `format`.
    pub fn new(view: View, format: Format, fields: Vec<&'static Field>) -> Printer {
        Printer {
            view,
            format,
            fields,
            since_header: None,
        }
    }

    /// The header line of the column format.
    pub fn header(&self) -> String {
        let cells: Vec<_> = self
            .fields
            .iter()
            .map(|f| (f, f.name.to_ascii_uppercase()))
            .collect();
        join_cells(cells)
    }

    /// The text of one report (one interval), every line ending in `\n`.
    pub fn report(&mut self, rates: &[OverlayRates]) -> String {
        let mut out = String::new();
        if self.format == Format::Json {
            for r in rates {
                let line = serde_json::to_string(r).expect("rates always serialize");
                let _ = writeln!(out, "{line}");
            }
            return out;
        }
        let parseable = self.format == Format::Parseable;
        for v in lines(self.view, rates) {
            if !parseable {
                if self.since_header.is_none_or(|n| n >= HEADER_EVERY) {
                    let _ = writeln!(out, "{}", self.header());
                    self.since_header = Some(0);
                }
                self.since_header = self.since_header.map(|n| n + 1);
                let cells = self.fields.iter().map(|f| (f, v.get(f.name, false)));
                let _ = writeln!(out, "{}", join_cells(cells.collect()));
            } else {
                let cells: Vec<_> = self
                    .fields
                    .iter()
                    .map(|f| escape(&v.get(f.name, true)))
                    .collect();
                let _ = writeln!(out, "{}", cells.join(":"));
            }
        }
        out
    }
}

fn lines(view: View, rates: &[OverlayRates]) -> Vec<Values<'_>> {
    let mut out = Vec::new();
    for r in rates {
        let base = Values {
            rates: r,
            peer: None,
            reason: None,
            vnic: None,
        };
        match view {
            View::Overlay => out.push(base),
            View::Dest => out.extend(r.peers.iter().map(|p| Values {
                peer: Some(p),
                ..base
            })),
            View::Vnic => out.extend(r.vnics.iter().map(|v| Values {
                vnic: Some(v),
                ..base
            })),
            View::Drops => out.extend(r.drops.iter().map(|(name, &v)| Values {
                reason: Some((name.as_str(), v)),
                ..base
            })),
        }
    }
    out
}

fn join_cells(cells: Vec<(&&Field, String)>) -> String {
    let mut line = String::new();
    let n = cells.len();
    for (i, (f, v)) in cells.into_iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        if f.left && i + 1 == n {
            line.push_str(&v);
        } else if f.left {
            let _ = write!(line, "{v:<w$}", w = f.width);
        } else {
            let _ = write!(line, "{v:>w$}", w = f.width);
        }
    }
    line
}

#[cfg(test)]
mod vnic_tests {
    use super::*;

    #[test]
    fn big_v_prints_a_line_per_vnic() {
        let r = tests::sample_rates();
        let mut p = Printer::new(
            View::Vnic,
            Format::Columns,
            View::Vnic.select(None).unwrap(),
        );
        assert_eq!(
            p.report(std::slice::from_ref(&r)),
            "OVERLAY    VNIC       MAC                  RX_PPS    TX_PPS       RX_BPS       TX_BPS\n\
             ov0        vnic1      02:77:01:00:00:01        10        11         8000         8800\n"
        );
        let mut p = Printer::new(
            View::Vnic,
            Format::Parseable,
            View::Vnic.select(Some("vnic,mac,tx_bps")).unwrap(),
        );
        assert_eq!(
            p.report(std::slice::from_ref(&r)),
            "vnic1:02\\:77\\:01\\:00\\:00\\:01:8800.5\n"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rates::PeerRates;
    use overlay_api::OverlayState;
    use std::collections::BTreeMap;

    pub(super) fn sample_rates() -> OverlayRates {
        sample()
    }

    fn sample() -> OverlayRates {
        OverlayRates {
            overlay: "ov0".into(),
            vni: 4242,
            interval_s: 1.0,
            rx_pps: 99.6,
            tx_pps: 100.0,
            rx_bps: 81_536.0,
            tx_bps: 81_920.25,
            drops_ps: 1.5,
            misses_ps: 0.0,
            lookups_ps: 0.0,
            entries: 2,
            status: OverlayState::Online,
            reset: false,
            peers: vec![PeerRates {
                peer: "fd77::2".into(),
                rx_pps: 99.6,
                tx_pps: 100.0,
                rx_bps: 81_536.0,
                tx_bps: 81_920.25,
            }],
            drops: BTreeMap::from([("not-answered".to_string(), 1.5)]),
            vnics: vec![crate::rates::VnicRates {
                vnic: "vnic1".into(),
                mac: "02:77:01:00:00:01".into(),
                rx_pps: 10.0,
                tx_pps: 11.0,
                rx_bps: 8000.0,
                tx_bps: 8800.5,
            }],
        }
    }

    fn printer(view: View, format: Format, o: Option<&str>) -> Printer {
        Printer::new(view, format, view.select(o).unwrap())
    }

    #[test]
    fn columns_have_a_header_repeated_every_20_lines() {
        let mut p = printer(View::Overlay, Format::Columns, None);
        let first = p.report(&[sample()]);
        assert_eq!(
            first,
            "OVERLAY         VNI    RX_PPS    TX_PPS       RX_BPS       TX_BPS  DROPS_PS MISSES_PS LOOKUPS_PS  ENTRIES\n\
             ov0            4242       100       100        81536        81920         2         0          0        2\n"
        );
        let mut headers = 1;
        for _ in 0..40 {
            headers += p.report(&[sample()]).matches("OVERLAY").count();
        }
        // 41 lines: headers before lines 1, 21 and 41.
        assert_eq!(headers, 3);
    }

    #[test]
    fn o_selects_and_orders_fields_and_rejects_unknown_ones() {
        let mut p = printer(View::Overlay, Format::Columns, Some("tx_pps,overlay"));
        assert_eq!(p.report(&[sample()]), "   TX_PPS OVERLAY\n      100 ov0\n");
        let e = View::Overlay.select(Some("overlay,peer")).unwrap_err();
        assert!(e.contains("'peer'") && e.contains("rx_pps"), "{e}");
        assert_eq!(View::Dest.select(Some("all")).unwrap().len(), 6);
    }

    #[test]
    fn parseable_is_colon_separated_and_escaped() {
        let mut p = printer(
            View::Overlay,
            Format::Parseable,
            Some("overlay,tx_pps,tx_bps"),
        );
        assert_eq!(p.report(&[sample()]), "ov0:100:81920.25\n");
        let mut p = printer(View::Dest, Format::Parseable, None);
        assert_eq!(
            p.report(&[sample()]),
            "ov0:fd77\\:\\:2:99.6:100:81536:81920.25\n"
        );
    }

    #[test]
    fn d_and_big_d_print_a_line_per_peer_and_per_reason() {
        let mut p = printer(View::Dest, Format::Columns, None);
        let out = p.report(&[sample()]);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.starts_with("OVERLAY    PEER"), "{out}");
        assert!(
            out.lines()
                .nth(1)
                .unwrap()
                .starts_with("ov0        fd77::2 "),
            "{out}"
        );
        let mut p = printer(View::Drops, Format::Columns, None);
        assert_eq!(
            p.report(&[sample()]),
            "OVERLAY    REASON                  DROPS_PS\nov0        not-answered                   2\n"
        );
        let mut none = sample();
        none.peers.clear();
        let mut p = printer(View::Dest, Format::Columns, None);
        assert_eq!(p.report(&[none]), "", "no peers, no lines");
    }

    #[test]
    fn json_is_one_object_per_overlay_with_the_required_keys() {
        let mut p = printer(View::Overlay, Format::Json, None);
        let out = p.report(&[sample(), sample()]);
        assert_eq!(out.lines().count(), 2);
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            for k in [
                "overlay",
                "vni",
                "rx_pps",
                "tx_pps",
                "rx_bps",
                "tx_bps",
                "drops_ps",
                "misses_ps",
            ] {
                assert!(v.get(k).is_some(), "{k} missing in {line}");
            }
            assert_eq!(v["overlay"], "ov0");
            assert_eq!(v["vni"], 4242);
            assert_eq!(v["peers"][0]["peer"], "fd77::2");
            assert_eq!(v["drops"]["not-answered"], 1.5);
        }
    }

    #[test]
    fn rates_print_whole_in_columns_and_exact_when_parseable() {
        assert_eq!(fmt_rate(2.4996, false), "2");
        assert_eq!(fmt_rate(2.4996, true), "2.5");
        assert_eq!(fmt_rate(0.0, true), "0");
        assert_eq!(fmt_rate(f64::NAN, true), "-");
    }
}
