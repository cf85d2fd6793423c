//! Formatting of `show-overlay` and `show-stats` output: pure functions from
//! rows to text, so every form is tested without a daemon.
//!
//! A table is a list of *fields* (lowercase names, as `-o` takes them; the
//! header is the name in capitals) and rows of [`Cell`]s. The same cells are
//! printed three ways, as dladm's `ofmt` does for the first two:
//!
//! - **human**: a header line, then left-aligned columns each as wide as its
//!   widest cell (header included), two spaces apart, no trailing blanks;
//!   an absent value prints `--`. No rows, no header (dladm prints the
//!   header with the first row).
//! - **parseable** (`-p -o ...`): no header, one line per row, fields joined
//!   by `:`; when more than one field is printed, `:` and `\` inside a value
//!   are escaped with a `\` (dladm's rule). An absent value is empty.
//! - **JSON** (`--json`): one line holding an array with one object per row,
//!   keyed by the selected field names in the order selected. Values are
//!   what the table shows, except that an absent value is `null` and `req`
//!   is a boolean.
//!
//! Parseable and JSON lines need nothing from later rows, so a paged dump
//! (`show-overlay -t`) is written as it comes, a page at a time, by
//! [`RowStream`]: ovadm's memory holds one page, not the whole table, and the
//! bytes are the same as [`render`]'s for all the rows at once (the JSON
//! array is opened before the first row and closed after the last). Human
//! columns are as wide as their widest cell, so they wait for every row.

use overlay_api::{PropRow, StatsSnapshot, StatusRow, TargetRow, VnicRow, VnicStats};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::io::{self, Write};

/// How rows are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns under a header.
    Human,
    /// `-p`: colon-separated, no header.
    Parseable,
    /// `--json`: one JSON array of objects.
    Json,
}

/// One value of a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cell {
    /// A value to print as is.
    Text(String),
    /// No value (`--` for humans, empty when parseable, `null` in JSON).
    Absent,
    /// A yes/no flag (`y` or `-`; a boolean in JSON).
    Flag(bool),
}

impl Cell {
    fn from_option(v: &Option<String>) -> Cell {
        v.as_ref().map_or(Cell::Absent, |s| Cell::Text(s.clone()))
    }

    /// What a person reads in a table.
    fn human(&self) -> &str {
        match self {
            Cell::Text(s) => s,
            Cell::Absent => "--",
            Cell::Flag(true) => "y",
            Cell::Flag(false) => "-",
        }
    }

    /// What a script reads in a parseable line (before escaping).
    fn parseable(&self) -> &str {
        match self {
            Cell::Absent => "",
            other => other.human(),
        }
    }
}

impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cell::Text(t) => s.serialize_str(t),
            Cell::Absent => s.serialize_none(),
            Cell::Flag(b) => s.serialize_bool(*b),
        }
    }
}

/// A row type that `show-overlay` prints.
pub trait Row {
    /// Every field, lowercase, in dladm's column order.
    const FIELDS: &'static [&'static str];
    /// The row's cells, one per entry of [`Row::FIELDS`].
    fn cells(&self) -> Vec<Cell>;
}

impl Row for PropRow {
    const FIELDS: &'static [&'static str] = &[
        "link", "property", "perm", "req", "value", "default", "possible",
    ];

    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Text(self.link.clone()),
            Cell::Text(self.property.clone()),
            Cell::Text(self.perm.to_string()),
            Cell::Flag(self.required),
            Cell::from_option(&self.value),
            Cell::from_option(&self.default),
            Cell::from_option(&self.possible),
        ]
    }
}

impl Row for StatusRow {
    const FIELDS: &'static [&'static str] = &["link", "status", "details"];

    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Text(self.link.clone()),
            Cell::Text(self.status.to_string()),
            Cell::from_option(&self.details),
        ]
    }
}

impl Row for TargetRow {
    const FIELDS: &'static [&'static str] = &[
        "link",
        "target",
        "destination",
        "age",
        "idle",
        "frames",
        "bytes",
    ];

    fn cells(&self) -> Vec<Cell> {
        let secs = |ms: Option<u64>| ms.map(|ms| format!("{}.{:03}s", ms / 1000, ms % 1000));
        vec![
            Cell::Text(self.link.clone()),
            Cell::Text(self.target.to_string()),
            Cell::Text(self.destination.to_string()),
            Cell::from_option(&secs(self.age_ms)),
            Cell::from_option(&secs(self.idle_ms)),
            Cell::from_option(&self.frames.map(|n| n.to_string())),
            Cell::from_option(&self.bytes.map(|n| n.to_string())),
        ]
    }
}

impl Row for VnicRow {
    const FIELDS: &'static [&'static str] =
        &["link", "over", "macaddress", "macaddrtype", "netns", "mtu"];

    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Text(self.link.clone()),
            Cell::Text(self.over.clone()),
            Cell::Text(self.macaddress.to_string()),
            Cell::Text(self.macaddrtype.to_string()),
            Cell::from_option(&self.netns),
            Cell::Text(self.mtu.to_string()),
        ]
    }
}

/// `show-vnic -s`, as `dladm show-vnic -s` from the guest's side: IPACKETS
/// and RBYTES are what overlayd delivered to the VNIC, OPACKETS and OBYTES
/// what it sent.
impl Row for VnicStats {
    const FIELDS: &'static [&'static str] = &[
        "link",
        "ipackets",
        "rbytes",
        "opackets",
        "obytes",
        "macaddress",
    ];

    fn cells(&self) -> Vec<Cell> {
        vec![
            Cell::Text(self.name.clone()),
            Cell::Text(self.rx_frames.to_string()),
            Cell::Text(self.rx_bytes.to_string()),
            Cell::Text(self.tx_frames.to_string()),
            Cell::Text(self.tx_bytes.to_string()),
            Cell::Text(self.mac.to_string()),
        ]
    }
}

/// Resolves an `-o` argument against the fields of a table: the indices of
/// the chosen fields, in the order given. `None` and `all` choose every
/// field. Names are matched without regard to case, as dladm does.
pub fn select_fields(spec: Option<&str>, fields: &[&str]) -> Result<Vec<usize>, String> {
    select_fields_default(spec, fields, fields.len())
}

/// [`select_fields`], where no `-o` chooses only the first `defaults` fields.
pub fn select_fields_default(
    spec: Option<&str>,
    fields: &[&str],
    defaults: usize,
) -> Result<Vec<usize>, String> {
    let Some(spec) = spec else {
        return Ok((0..defaults.min(fields.len())).collect());
    };
    if spec.trim().eq_ignore_ascii_case("all") {
        return Ok((0..fields.len()).collect());
    }
    spec.split(',')
        .map(|name| {
            let name = name.trim();
            fields
                .iter()
                .position(|f| f.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    format!(
                        "unknown output field '{name}': valid fields are {} (or all)",
                        fields.join(",")
                    )
                })
        })
        .collect()
}

/// Prints rows of a [`Row`] type with the chosen fields, in `format`.
pub fn render<R: Row>(rows: &[R], fields: &[usize], format: Format) -> String {
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            let all = r.cells();
            fields.iter().map(|&i| all[i].clone()).collect()
        })
        .collect();
    let names: Vec<&str> = fields.iter().map(|&i| R::FIELDS[i]).collect();
    match format {
        Format::Human => {
            let header: Vec<String> = names.iter().map(|n| n.to_ascii_uppercase()).collect();
            let body: Vec<Vec<String>> = cells
                .iter()
                .map(|r| r.iter().map(|c| c.human().to_string()).collect())
                .collect();
            if body.is_empty() {
                String::new()
            } else {
                table(&header, &body)
            }
        }
        Format::Parseable => parseable(&cells),
        Format::Json => json(&names, &cells),
    }
}

/// Lays out a header and rows as left-aligned columns, two spaces apart, each
/// as wide as its widest cell; the last column is not padded.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let mut text = String::new();
        for (i, (cell, w)) in line.iter().zip(&widths).enumerate() {
            if i + 1 == line.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = w - cell.chars().count() + 2;
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    }
    out
}

/// dladm's parseable lines: fields joined by `:`, with `:` and `\` escaped by
/// a `\` when a line has more than one field.
pub fn parseable(rows: &[Vec<Cell>]) -> String {
    let mut out = String::new();
    for row in rows {
        parseable_line(row, &mut out);
    }
    out
}

/// Appends one parseable line (see [`parseable`]).
fn parseable_line(row: &[Cell], out: &mut String) {
    let escape = row.len() > 1;
    for (i, c) in row.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let v = c.parseable();
        if escape {
            out.push_str(&escape_parseable(v));
        } else {
            out.push_str(v);
        }
    }
    out.push('\n');
}

/// Escapes `:` and `\` with a backslash.
pub fn escape_parseable(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        if ch == ':' || ch == '\\' {
            s.push('\\');
        }
        s.push(ch);
    }
    s
}

/// One row as a JSON object whose keys keep the selected order.
struct JsonRow<'a> {
    names: &'a [&'a str],
    cells: &'a [Cell],
}

impl Serialize for JsonRow<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.names.len()))?;
        for (n, c) in self.names.iter().zip(self.cells) {
            m.serialize_entry(n, c)?;
        }
        m.end()
    }
}

struct JsonRows<'a> {
    names: &'a [&'a str],
    rows: &'a [Vec<Cell>],
}

impl Serialize for JsonRows<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.rows.len()))?;
        for r in self.rows {
            seq.serialize_element(&JsonRow {
                names: self.names,
                cells: r,
            })?;
        }
        seq.end()
    }
}

/// One line: a JSON array with an object per row, keyed by field name.
pub fn json(names: &[&str], rows: &[Vec<Cell>]) -> String {
    let mut s = serde_json::to_string(&JsonRows { names, rows })
        .unwrap_or_else(|e| format!("[] (cannot encode rows: {e})"));
    s.push('\n');
    s
}

/// Rows written as they come, for a dump that arrives a page at a time:
/// parseable lines, or one JSON array opened before the first row and closed
/// by [`RowStream::finish`]. The bytes are [`render`]'s for the same rows in
/// the same format. Human columns cannot stream (their widths depend on every
/// row): [`RowStream::new`] is for [`Format::Parseable`] and [`Format::Json`].
pub struct RowStream<W: Write> {
    out: W,
    names: Vec<&'static str>,
    fields: Vec<usize>,
    json: bool,
    written: u64,
    line: String,
}

impl<W: Write> RowStream<W> {
    /// A stream of rows of type `R` with the chosen fields; `None` for
    /// [`Format::Human`].
    pub fn new<R: Row>(out: W, fields: &[usize], format: Format) -> Option<RowStream<W>> {
        (format != Format::Human).then(|| RowStream {
            out,
            names: fields.iter().map(|&i| R::FIELDS[i]).collect(),
            fields: fields.to_vec(),
            json: format == Format::Json,
            written: 0,
            line: String::new(),
        })
    }

    /// Writes some rows (a page).
    pub fn rows<R: Row>(&mut self, rows: &[R]) -> io::Result<()> {
        for r in rows {
            let all = r.cells();
            let cells: Vec<Cell> = self.fields.iter().map(|&i| all[i].clone()).collect();
            self.line.clear();
            if self.json {
                self.line.push(if self.written == 0 { '[' } else { ',' });
                let row = JsonRow {
                    names: &self.names,
                    cells: &cells,
                };
                self.line
                    .push_str(&serde_json::to_string(&row).map_err(io::Error::other)?);
            } else {
                parseable_line(&cells, &mut self.line);
            }
            self.out.write_all(self.line.as_bytes())?;
            self.written += 1;
        }
        Ok(())
    }

    /// Ends the output (closes the JSON array, `[]` if there were no rows),
    /// flushes it and gives the writer back.
    pub fn finish(mut self) -> io::Result<W> {
        if self.json {
            let end: &[u8] = if self.written == 0 { b"[]\n" } else { b"]\n" };
            self.out.write_all(end)?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A statistics snapshot for people: whether varpd is linked, a table of
/// per-overlay counters, a table of muxes, and every non-zero drop counter
/// by reason (overlays first, then muxes).
pub fn render_stats(snap: &StatsSnapshot) -> String {
    let mut out = format!(
        "varpd: {}\n",
        if snap.varpd_linked {
            "linked"
        } else {
            "not linked"
        }
    );
    let header: Vec<String> = [
        "LINK",
        "VNETID",
        "RX-FRAMES",
        "RX-BYTES",
        "TX-FRAMES",
        "TX-BYTES",
        "LOOKUPS",
        "MISSES",
        "Q-OVERFLOWS",
        "INJECTED",
        "ENTRIES",
    ]
    .map(String::from)
    .to_vec();
    let rows: Vec<Vec<String>> = snap
        .overlays
        .iter()
        .map(|o| {
            vec![
                o.name.clone(),
                o.vnetid.to_string(),
                o.rx_frames.to_string(),
                o.rx_bytes.to_string(),
                o.tx_frames.to_string(),
                o.tx_bytes.to_string(),
                o.lookups.to_string(),
                o.misses.to_string(),
                o.queue_overflows.to_string(),
                o.injected.to_string(),
                o.table_entries.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&header, &rows));
    }
    // "mux vxlan 0.0.0.0:4789"; a raw-IP module has no port ("mux nvgre
    // 10.0.0.1"); an older overlayd does not name the module.
    let mux_name = |m: &overlay_api::MuxStats| {
        let addr = match m.listen {
            None => "(unbound)".to_string(),
            Some(a) if a.port() == 0 => a.ip().to_string(),
            Some(a) => a.to_string(),
        };
        match m.encap.as_str() {
            "" => format!("mux {addr}"),
            e => format!("mux {e} {addr}"),
        }
    };
    if !snap.muxes.is_empty() {
        let rows: Vec<Vec<String>> = snap
            .muxes
            .iter()
            .map(|m| vec![mux_name(m), m.rx_datagrams.to_string()])
            .collect();
        out.push('\n');
        out.push_str(&table(&["MUX".into(), "RX-DATAGRAMS".into()], &rows));
    }
    let peers: Vec<Vec<String>> = snap
        .overlays
        .iter()
        .flat_map(|o| {
            o.peers.iter().map(|p| {
                vec![
                    o.name.clone(),
                    p.addr.map_or_else(|| "--".into(), |a| a.to_string()),
                    p.tx_frames.to_string(),
                    p.tx_bytes.to_string(),
                    p.rx_frames.to_string(),
                    p.rx_bytes.to_string(),
                ]
            })
        })
        .collect();
    if !peers.is_empty() {
        let h = [
            "LINK",
            "PEER",
            "TX-FRAMES",
            "TX-BYTES",
            "RX-FRAMES",
            "RX-BYTES",
        ]
        .map(String::from);
        out.push('\n');
        out.push_str(&table(&h, &peers));
    }
    let latency: Vec<Vec<String>> = snap
        .overlays
        .iter()
        .flat_map(|o| {
            o.lookup_latency.iter().map(|b| {
                vec![
                    o.name.clone(),
                    format!("<= {} ns", b.le_ns),
                    b.count.to_string(),
                ]
            })
        })
        .collect();
    if !latency.is_empty() {
        let h = ["LINK", "LOOKUP-LATENCY", "COUNT"].map(String::from);
        out.push('\n');
        out.push_str(&table(&h, &latency));
    }
    let mut drops: Vec<Vec<String>> = Vec::new();
    for o in &snap.overlays {
        for (reason, n) in o.drops.iter().filter(|(_, n)| **n > 0) {
            drops.push(vec![o.name.clone(), reason.clone(), n.to_string()]);
        }
    }
    for m in &snap.muxes {
        for (reason, n) in m.drops.iter().filter(|(_, n)| **n > 0) {
            drops.push(vec![mux_name(m), reason.clone(), n.to_string()]);
        }
    }
    out.push('\n');
    if drops.is_empty() {
        out.push_str("no drops\n");
    } else {
        out.push_str(&table(
            &["WHERE".into(), "DROP-REASON".into(), "COUNT".into()],
            &drops,
        ));
    }
    out
}

/// A statistics snapshot for scripts: the api's own JSON, on one line.
pub fn stats_json(snap: &StatsSnapshot) -> String {
    let mut s = serde_json::to_string(snap)
        .unwrap_or_else(|e| format!("{{}} (cannot encode snapshot: {e})"));
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_api::{Mac, MuxStats, OverlayState, OverlayStats, Perm, TargetDest};
    use std::collections::BTreeMap;

    fn props() -> Vec<PropRow> {
        let row = |property: &str,
                   perm,
                   required,
                   value: Option<&str>,
                   default: Option<&str>,
                   possible: Option<&str>| PropRow {
            link: "overlay0".into(),
            property: property.into(),
            perm,
            required,
            value: value.map(Into::into),
            default: default.map(Into::into),
            possible: possible.map(Into::into),
        };
        vec![
            row("encap", Perm::R, false, Some("vxlan"), None, Some("vxlan")),
            row(
                "mtu",
                Perm::Rw,
                false,
                Some("1400"),
                Some("1400"),
                Some("576-8900"),
            ),
            row(
                "vnetid",
                Perm::Rw,
                false,
                Some("100"),
                None,
                Some("0-16777215"),
            ),
            row(
                "vxlan/listen_ip",
                Perm::Rw,
                true,
                Some("10.88.88.69"),
                None,
                None,
            ),
            row(
                "vxlan/listen_port",
                Perm::Rw,
                true,
                Some("4789"),
                Some("4789"),
                Some("1-65535"),
            ),
            row("files/config", Perm::Rw, true, None, None, None),
        ]
    }

    fn targets() -> Vec<TargetRow> {
        let mac = |s: &str| s.parse::<Mac>().expect("test MAC");
        vec![
            TargetRow {
                link: "ov0".into(),
                target: mac("02:08:20:aa:bb:01"),
                destination: TargetDest::Valid("10.0.0.2:4789".parse().expect("addr")),
                age_ms: None,
                idle_ms: None,
                frames: None,
                bytes: None,
            },
            TargetRow {
                link: "ov0".into(),
                target: mac("02:08:20:aa:bb:02"),
                destination: TargetDest::Valid("[fd00::2]:4789".parse().expect("addr")),
                age_ms: None,
                idle_ms: None,
                frames: None,
                bytes: None,
            },
            TargetRow {
                link: "overlay1".into(),
                target: mac("02:08:20:aa:bb:03"),
                destination: TargetDest::Pending,
                age_ms: None,
                idle_ms: None,
                frames: None,
                bytes: None,
            },
            TargetRow {
                link: "overlay1".into(),
                target: mac("02:08:20:aa:bb:04"),
                destination: TargetDest::Drop,
                age_ms: None,
                idle_ms: None,
                frames: None,
                bytes: None,
            },
        ]
    }

    #[test]
    fn props_table_is_aligned_like_dladm() {
        let all = select_fields(None, PropRow::FIELDS).expect("all fields");
        let got = render(&props(), &all, Format::Human);
        let want = "\
LINK      PROPERTY           PERM  REQ  VALUE        DEFAULT  POSSIBLE
overlay0  encap              r-    -    vxlan        --       vxlan
overlay0  mtu                rw    -    1400         1400     576-8900
overlay0  vnetid             rw    -    100          --       0-16777215
overlay0  vxlan/listen_ip    rw    y    10.88.88.69  --       --
overlay0  vxlan/listen_port  rw    y    4789         4789     1-65535
overlay0  files/config       rw    y    --           --       --
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn targets_table_shows_every_destination_form() {
        let all = select_fields_default(None, TargetRow::FIELDS, 3).expect("dladm's fields");
        let got = render(&targets(), &all, Format::Human);
        let want = "\
LINK      TARGET             DESTINATION
ov0       02:08:20:aa:bb:01  10.0.0.2:4789
ov0       02:08:20:aa:bb:02  [fd00::2]:4789
overlay1  02:08:20:aa:bb:03  pending
overlay1  02:08:20:aa:bb:04  drop
";
        assert_eq!(got, want, "\n{got}");
    }

    #[test]
    fn status_table_and_absent_details() {
        let rows = vec![
            StatusRow {
                link: "ov0".into(),
                status: OverlayState::Online,
                details: None,
            },
            StatusRow {
                link: "ov1".into(),
                status: OverlayState::Degraded,
                details: Some("varpd is not running".into()),
            },
        ];
        let got = render(&rows, &[0, 1, 2], Format::Human);
        assert_eq!(
            got,
            "LINK  STATUS    DETAILS\nov0   ONLINE    --\nov1   DEGRADED  varpd is not running\n"
        );
    }

    #[test]
    fn no_rows_no_header() {
        let rows: Vec<TargetRow> = Vec::new();
        assert_eq!(render(&rows, &[0, 1, 2], Format::Human), "");
        assert_eq!(render(&rows, &[0, 1, 2], Format::Parseable), "");
        assert_eq!(render(&rows, &[0, 1, 2], Format::Json), "[]\n");
    }

    #[test]
    fn column_width_counts_characters_not_bytes() {
        let got = table(&["A".into(), "B".into()], &[vec!["é".into(), "x".into()]]);
        assert_eq!(got, "A  B\né  x\n");
    }

    #[test]
    fn parseable_escapes_colon_and_backslash_when_several_fields() {
        let f = select_fields(Some("link,target,destination"), TargetRow::FIELDS).expect("fields");
        let got = render(&targets(), &f, Format::Parseable);
        let want = "\
ov0:02\\:08\\:20\\:aa\\:bb\\:01:10.0.0.2\\:4789
ov0:02\\:08\\:20\\:aa\\:bb\\:02:[fd00\\:\\:2]\\:4789
overlay1:02\\:08\\:20\\:aa\\:bb\\:03:pending
overlay1:02\\:08\\:20\\:aa\\:bb\\:04:drop
";
        assert_eq!(got, want, "\n{got}");
        assert_eq!(escape_parseable(r"a\b:c"), r"a\\b\:c");
    }

    #[test]
    fn parseable_single_field_is_not_escaped() {
        let f = select_fields(Some("destination"), TargetRow::FIELDS).expect("fields");
        assert_eq!(
            render(&targets(), &f, Format::Parseable),
            "10.0.0.2:4789\n[fd00::2]:4789\npending\ndrop\n"
        );
    }

    #[test]
    fn parseable_absent_is_empty_and_req_is_y_or_dash() {
        let f = select_fields(Some("property,req,value,default"), PropRow::FIELDS).expect("fields");
        let got = render(&props()[3..], &f, Format::Parseable);
        assert_eq!(
            got,
            "vxlan/listen_ip:y:10.88.88.69:\nvxlan/listen_port:y:4789:4789\nfiles/config:y::\n"
        );
    }

    #[test]
    fn output_selection_orders_and_rejects() {
        assert_eq!(
            select_fields(Some("destination,link"), TargetRow::FIELDS),
            Ok(vec![2, 0])
        );
        assert_eq!(
            select_fields(Some("LINK,Status"), StatusRow::FIELDS),
            Ok(vec![0, 1])
        );
        assert_eq!(
            select_fields(Some("all"), StatusRow::FIELDS),
            Ok(vec![0, 1, 2])
        );
        assert_eq!(select_fields(None, PropRow::FIELDS).map(|v| v.len()), Ok(7));
        let e = select_fields(Some("link,dest"), TargetRow::FIELDS).expect_err("dest is unknown");
        assert_eq!(
            e,
            "unknown output field 'dest': valid fields are link,target,destination,age,idle,frames,bytes (or all)"
        );
        assert!(select_fields(Some("link,"), TargetRow::FIELDS).is_err());
        // A field of another table is unknown here.
        assert!(select_fields(Some("status"), TargetRow::FIELDS).is_err());
    }

    #[test]
    fn selected_columns_in_human_output() {
        let f = select_fields(Some("property,value"), PropRow::FIELDS).expect("fields");
        let got = render(&props()[..2], &f, Format::Human);
        assert_eq!(got, "PROPERTY  VALUE\nencap     vxlan\nmtu       1400\n");
    }

    #[test]
    fn json_shape() {
        let all = select_fields(None, PropRow::FIELDS).expect("all fields");
        let got = render(&props()[2..4], &all, Format::Json);
        assert_eq!(got.matches('\n').count(), 1, "one line: {got}");
        assert_eq!(
            got,
            concat!(
                r#"[{"link":"overlay0","property":"vnetid","perm":"rw","req":false,"value":"100","default":null,"possible":"0-16777215"},"#,
                r#"{"link":"overlay0","property":"vxlan/listen_ip","perm":"rw","req":true,"value":"10.88.88.69","default":null,"possible":null}]"#,
                "\n"
            )
        );
        let f = select_fields(Some("destination,target"), TargetRow::FIELDS).expect("fields");
        let v: serde_json::Value =
            serde_json::from_str(&render(&targets(), &f, Format::Json)).expect("valid JSON");
        assert_eq!(v[1]["destination"], "[fd00::2]:4789");
        assert_eq!(v[2]["destination"], "pending");
        assert_eq!(v[0]["target"], "02:08:20:aa:bb:01");
        assert_eq!(v[0].as_object().map(|o| o.len()), Some(2));
    }

    #[test]
    fn streamed_pages_are_the_rendered_rows_byte_for_byte() {
        let rows = targets();
        for spec in [None, Some("target"), Some("destination,link")] {
            let f = select_fields(spec, TargetRow::FIELDS).expect("fields");
            for format in [Format::Parseable, Format::Json] {
                // No rows, one page of one row, and pages of 1, 2 and 1 rows.
                for pages in [&[][..], &[1][..], &[1, 2, 1][..]] {
                    let mut stream =
                        RowStream::new::<TargetRow>(Vec::new(), &f, format).expect("streams");
                    let mut at = 0;
                    for &n in pages {
                        stream.rows(&rows[at..at + n]).expect("write");
                        at += n;
                    }
                    let got = String::from_utf8(stream.finish().expect("finish")).expect("utf-8");
                    assert_eq!(
                        got,
                        render(&rows[..at], &f, format),
                        "{spec:?} {format:?} {pages:?}"
                    );
                }
            }
        }
        let f = select_fields(None, TargetRow::FIELDS).expect("fields");
        assert!(RowStream::new::<TargetRow>(Vec::new(), &f, Format::Human).is_none());
    }

    #[test]
    fn stats_show_counters_and_only_nonzero_drops() {
        let snap = StatsSnapshot {
            time_ns: 1,
            mono_ns: 2,
            varpd_linked: true,
            overlays: vec![OverlayStats {
                offload: Default::default(),
                peers_total: 0,
                name: "ov0".into(),
                vnetid: 100,
                rx_frames: 10,
                rx_bytes: 1000,
                tx_frames: 5,
                tx_bytes: 500,
                lookups: 2,
                misses: 3,
                queue_overflows: 0,
                injected: 1,
                table_entries: 2,
                drops: BTreeMap::from([("target-drop".into(), 3), ("flushed".into(), 0)]),
                ..Default::default()
            }],
            muxes: vec![MuxStats {
                listen: Some("0.0.0.0:4789".parse().expect("addr")),
                rx_datagrams: 12,
                drops: BTreeMap::from([("unknown-vni".into(), 2)]),
                encap: "vxlan".into(),
                ..Default::default()
            }],
            started_mono_ns: 1,
            capture: Default::default(),
        };
        let got = render_stats(&snap);
        let want = "\
varpd: linked

LINK  VNETID  RX-FRAMES  RX-BYTES  TX-FRAMES  TX-BYTES  LOOKUPS  MISSES  Q-OVERFLOWS  INJECTED  ENTRIES
ov0   100     10         1000      5          500       2        3       0            1         2

MUX                     RX-DATAGRAMS
mux vxlan 0.0.0.0:4789  12

WHERE                   DROP-REASON  COUNT
ov0                     target-drop  3
mux vxlan 0.0.0.0:4789  unknown-vni  2
";
        assert_eq!(got, want, "\n{got}");
        let empty = render_stats(&StatsSnapshot::default());
        assert_eq!(empty, "varpd: not linked\n\nno drops\n");
        let back: StatsSnapshot = serde_json::from_str(&stats_json(&snap)).expect("valid JSON");
        assert_eq!(back, snap);
    }
}
