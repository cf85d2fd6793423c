//! # ovstat: overlay counters as vmstat-style lines
//!
//! Theory statement. overlayd counts, per overlay, the frames and bytes that
//! cross its TAP device in each direction, the target-table misses, the
//! lookups sent to varpd, the table's entries, the traffic with each
//! underlay (UL3) peer and every drop by its named reason; it serves all of
//! them as one consistent [`overlay_api::StatsSnapshot`] per request on
//! `RUN_DIR/overlayd.sock`, stamped with CLOCK_MONOTONIC (`mono_ns`).
//! `ovstat` turns two such snapshots into per-second rates and prints them
//! the way `vmstat INTERVAL COUNT` does: one line per overlay (or per peer
//! with `-d`, per drop reason with `-D`) per interval.
//!
//! Data flows through three parts:
//!
//! 1. `main.rs`: parses the command line, fetches a snapshot, sleeps,
//!    fetches the next one, and so on; stops after COUNT reports, on
//!    Ctrl-C/SIGTERM (cleanly, exit 0) or on a closed stdout.
//! 2. [`rates`]: two snapshots → per-overlay rates over the time between
//!    them. Overlays are matched by name; counters that went backwards (the
//!    overlay was recreated, overlayd restarted) are taken as counted since
//!    the overlay's creation.
//! 3. [`output`]: rates → aligned columns with a header every 20 lines,
//!    `-p` colon-separated lines of `-o` fields, or `--json` objects.
//!
//! The first report. vmstat's first line is "since boot"; ovstat's is since
//! each overlay was created: the snapshot carries `started_mono_ns` (when
//! overlayd started) and, per overlay, `created_mono_ns`, on the clock of
//! `mono_ns`, so the first report is printed at once from one snapshot as
//! counters / age ([`rates::since_creation`]). Every later report is over
//! INTERVAL. Without INTERVAL, ovstat prints that first report and ends. An
//! older overlayd that sends no creation times gets a short first sample of
//! one second (or INTERVAL, if that is shorter) instead.
//!
//! `--tui` (module [`tui`]) shows the same rates as a live dashboard: the
//! overlays table, and for the selected overlay a tx sparkline, drops by
//! reason, the lookup-latency histogram, target-table occupancy and resize
//! activity, and the top peers. It never exits because overlayd is away: it
//! says so and retries every interval.
//!
//! Failure: a usage error (bad option, unknown `-o` field, INTERVAL not a
//! positive number) prints the reason and exits 2. overlayd unreachable,
//! or failing mid-run, prints `ovstat: <message>` naming the socket and
//! exits 1.

pub mod output;
pub mod rates;
pub mod tui;
