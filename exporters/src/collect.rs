//! Snapshots to metric families: pure, so that unit tests can feed it canned
//! snapshots and read back the exposition text.

use overlay_api::{InstanceInfo, OverlayState, OverlayStats, StatsSnapshot, StatusRow};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{Encoder, TextEncoder};
use std::collections::{BTreeMap, HashMap};

/// Default cap on peer series per overlay (`--max-peers`).
pub const DEFAULT_MAX_PEERS: usize = 10;

/// Smallest finite bucket bound of the lookup-latency histogram: 2^11 ns
/// (2 µs).
pub const LATENCY_MIN_LOG2: u32 = 11;
/// Largest finite bucket bound of the lookup-latency histogram: 2^35 ns (34 s).
pub const LATENCY_MAX_LOG2: u32 = 35;
/// Bounds of the ladder are powers of four: 2^11, 2^13 … 2^35 ns, thirteen
/// buckets, as many as Prometheus advises for a histogram (a thousand
/// overlays' histograms are a sixth of a scrape).
pub const LATENCY_STEP_LOG2: usize = 2;

/// What varpd said about itself.
#[derive(Clone, Debug, Default)]
pub struct VarpdSample {
    /// Linked to overlayd.
    pub linked: bool,
    /// Plugins offered.
    pub plugins: usize,
    /// Its instances.
    pub instances: Vec<InstanceInfo>,
}

/// What overlayd said.
#[derive(Clone, Debug, Default)]
pub struct OverlaydSample {
    /// The counters.
    pub stats: StatsSnapshot,
    /// Health rows (`show-overlay -f`), for the degraded reason; may be empty.
    pub status: Vec<StatusRow>,
}

/// One run directory's daemons at scrape time; `None` = unreachable.
#[derive(Clone, Debug, Default)]
pub struct HostSample {
    /// Value of the `host` label, if hosts are labelled.
    pub host: Option<String>,
    /// overlayd's answers.
    pub overlayd: Option<OverlaydSample>,
    /// varpd's answers.
    pub varpd: Option<VarpdSample>,
}

/// Options of the conversion.
#[derive(Clone, Debug)]
pub struct Options {
    /// At most this many peers (busiest by bytes both ways) per overlay.
    pub max_peers: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_peers: DEFAULT_MAX_PEERS,
        }
    }
}

/// Families being built, by name (every name is a literal of this module).
#[derive(Default)]
struct Families(BTreeMap<&'static str, MetricFamily>);

type Labels<'a> = &'a [(&'a str, &'a str)];

fn label_pairs(host: &Option<String>, labels: Labels) -> Vec<proto::LabelPair> {
    let mut v = Vec::with_capacity(labels.len() + 1);
    let host = host.as_deref().map(|h| ("host", h));
    for (k, val) in host.into_iter().chain(labels.iter().copied()) {
        let mut lp = proto::LabelPair::default();
        lp.set_name(k.to_string());
        lp.set_value(val.to_string());
        v.push(lp);
    }
    v
}

impl Families {
    fn family(&mut self, name: &'static str, help: &str, t: MetricType) -> &mut MetricFamily {
        let f = self.0.entry(name).or_insert_with(|| {
            let mut f = MetricFamily::default();
            f.set_name(name.to_string());
            f.set_help(help.to_string());
            f.set_field_type(t);
            f
        });
        debug_assert_eq!(f.get_field_type(), t, "{name} declared with two types");
        f
    }

    fn counter(
        &mut self,
        name: &'static str,
        help: &str,
        host: &Option<String>,
        l: Labels,
        v: u64,
    ) {
        debug_assert!(name.ends_with("_total"), "counter {name} lacks _total");
        let mut c = proto::Counter::default();
        c.set_value(v as f64);
        let mut m = proto::Metric::from_label(label_pairs(host, l));
        m.set_counter(c);
        self.family(name, help, MetricType::COUNTER)
            .mut_metric()
            .push(m);
    }

    fn gauge(&mut self, name: &'static str, help: &str, host: &Option<String>, l: Labels, v: f64) {
        let mut g = proto::Gauge::default();
        g.set_value(v);
        let mut m = proto::Metric::from_label(label_pairs(host, l));
        m.set_gauge(g);
        self.family(name, help, MetricType::GAUGE)
            .mut_metric()
            .push(m);
    }

    fn histogram(
        &mut self,
        name: &'static str,
        help: &str,
        host: &Option<String>,
        l: Labels,
        h: proto::Histogram,
    ) {
        let mut m = proto::Metric::from_label(label_pairs(host, l));
        m.set_histogram(h);
        self.family(name, help, MetricType::HISTOGRAM)
            .mut_metric()
            .push(m);
    }

    /// Appends `other`'s samples after this one's, family by family.
    fn merge(&mut self, other: Families) {
        for (name, mut theirs) in other.0 {
            match self.0.get_mut(name) {
                Some(ours) => ours.mut_metric().extend(theirs.take_metric()),
                None => {
                    self.0.insert(name, theirs);
                }
            }
        }
    }
}

/// Overlays per thread below which a scrape does not bother with threads.
const OVERLAYS_PER_THREAD: usize = 64;

/// Threads a large scrape builds and encodes with: the machine's cores, at
/// most 8.
fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// overlayd's log2 nanosecond buckets (non-cumulative, non-empty only) as a
/// Prometheus histogram in seconds: a fixed ladder of cumulative buckets
/// 2^11, 2^13 ..= 2^35 ns (the `+Inf` bucket is implied by the count), so every
/// scrape has the same `le` values. Bounds below the ladder fold into its
/// first bucket, bounds above into `+Inf` only; both keep counts exact.
/// `_sum` is overlayd's own sum of the latencies (`sum_ns`); only a
/// snapshot from an older overlayd, which kept none (0 with observations),
/// has it estimated as each observation at 3/4 of its log2 bucket's bound.
pub fn latency_histogram(buckets: &[overlay_api::HistBucket], sum_ns: u64) -> proto::Histogram {
    let mut out = Vec::new();
    let (mut count, mut estimate) = (0u64, 0f64);
    for b in buckets {
        count += b.count;
        estimate += b.count as f64 * b.le_ns as f64 * 0.75 / 1e9;
    }
    let sum = if sum_ns == 0 && count > 0 {
        estimate
    } else {
        sum_ns as f64 / 1e9
    };
    for k in (LATENCY_MIN_LOG2..=LATENCY_MAX_LOG2).step_by(LATENCY_STEP_LOG2) {
        let le_ns = 1u64 << k;
        let cum: u64 = buckets
            .iter()
            .filter(|b| b.le_ns <= le_ns)
            .map(|b| b.count)
            .sum();
        let mut pb = proto::Bucket::default();
        pb.set_upper_bound(le_ns as f64 / 1e9);
        pb.set_cumulative_count(cum);
        out.push(pb);
    }
    let mut h = proto::Histogram::default();
    h.set_sample_count(count);
    h.set_sample_sum(sum);
    h.set_bucket(out);
    h
}

/// All metric families of one scrape.
pub fn families(hosts: &[HostSample], opts: &Options) -> Vec<MetricFamily> {
    let mut f = Families::default();
    for h in hosts {
        let host = &h.host;
        f.gauge(
            "overlay_up",
            "Whether overlayd answered on its control socket (1) or not (0).",
            host,
            &[],
            flag(h.overlayd.is_some()),
        );
        f.gauge(
            "varpd_up",
            "Whether varpd answered on its control socket (1) or not (0).",
            host,
            &[],
            flag(h.varpd.is_some()),
        );
        if let Some(o) = &h.overlayd {
            overlayd(&mut f, host, o, h.varpd.as_ref(), opts);
        }
        if let Some(v) = &h.varpd {
            varpd(&mut f, host, v);
        }
    }
    f.0.into_values().collect()
}

fn overlayd(
    f: &mut Families,
    host: &Option<String>,
    o: &OverlaydSample,
    v: Option<&VarpdSample>,
    opts: &Options,
) {
    let s = &o.stats;
    f.gauge(
        "overlay_varpd_linked",
        "Whether overlayd is linked to varpd now.",
        host,
        &[],
        flag(s.varpd_linked),
    );
    // The degraded reasons, by overlay name: overlayd's health rows first,
    // varpd's instance details otherwise.
    let mut reasons: HashMap<&str, &str> = HashMap::new();
    for i in v.map_or(&[][..], |v| &v.instances[..]) {
        if let Some(d) = &i.details {
            reasons.insert(&i.overlay, d);
        }
    }
    for r in &o.status {
        if let Some(d) = &r.details {
            reasons.insert(&r.link, d);
        }
    }
    // A thousand overlays are some 100,000 samples: the chunks of overlays
    // are built on all cores and joined in order.
    let chunk = s
        .overlays
        .len()
        .div_ceil(threads())
        .max(OVERLAYS_PER_THREAD);
    let (reasons, max_peers) = (&reasons, opts.max_peers);
    let parts: Vec<Families> = std::thread::scope(|scope| {
        let handles: Vec<_> = s
            .overlays
            .chunks(chunk)
            .map(|ovs| {
                scope.spawn(move || {
                    let mut part = Families::default();
                    for ov in ovs {
                        overlay(&mut part, host, ov, reasons, max_peers);
                    }
                    part
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("building metric families panicked"))
            .collect()
    });
    for part in parts {
        f.merge(part);
    }
    for m in &s.muxes {
        let listen = m.listen.map(|a| a.to_string()).unwrap_or_default();
        let l: Labels = &[("listen", &listen), ("encap", &m.encap)];
        f.counter(
            "overlay_mux_rx_datagrams_total",
            "Datagrams received by a mux (a shared underlay socket), by its encapsulation.",
            host,
            l,
            m.rx_datagrams,
        );
        f.counter(
            "overlay_mux_options_skipped_total",
            "Header options a mux received and skipped, not interpreted (Geneve's non-critical options).",
            host,
            l,
            m.options_skipped,
        );
        for (reason, n) in &m.drops {
            f.counter(
                "overlay_mux_drops_total",
                "Datagrams a mux dropped before any overlay, by reason.",
                host,
                &[("listen", &listen), ("encap", &m.encap), ("reason", reason)],
                *n,
            );
        }
    }
}

fn overlay(
    f: &mut Families,
    host: &Option<String>,
    ov: &OverlayStats,
    reasons: &HashMap<&str, &str>,
    max_peers: usize,
) {
    let name = ov.name.as_str();
    let l: Labels = &[("overlay", name)];
    let counters: [(&str, &str, u64); 8] = [
        (
            "overlay_rx_frames_total",
            "Frames written to the overlay's TAP device (from the underlay or injected).",
            ov.rx_frames,
        ),
        (
            "overlay_rx_bytes_total",
            "Bytes of the frames written to the TAP device.",
            ov.rx_bytes,
        ),
        (
            "overlay_tx_frames_total",
            "Frames read from the TAP device and sent to the underlay.",
            ov.tx_frames,
        ),
        (
            "overlay_tx_bytes_total",
            "Bytes (inner frame) of the frames sent to the underlay.",
            ov.tx_bytes,
        ),
        (
            "overlay_lookups_total",
            "Lookups sent to varpd.",
            ov.lookups,
        ),
        (
            "overlay_misses_total",
            "Unicast frames that found no valid target entry.",
            ov.misses,
        ),
        (
            "overlay_queue_overflows_total",
            "Frames dropped because a pending entry's queue was full.",
            ov.queue_overflows,
        ),
        (
            "overlay_injected_frames_total",
            "Frames injected by varpd (proxy ARP/NDP replies).",
            ov.injected,
        ),
    ];
    for (n, help, val) in counters {
        f.counter(n, help, host, l, val);
    }
    for (reason, n) in &ov.drops {
        f.counter(
            "overlay_drops_total",
            "Frames dropped, by reason (the closed DropReason set).",
            host,
            &[("overlay", name), ("reason", reason)],
            *n,
        );
    }

    // Health, as an info metric (value 1) and a plain 0/1 gauge.
    let degraded = ov.status == OverlayState::Degraded;
    let reason = match reasons.get(name) {
        Some(r) if degraded => r,
        _ => "",
    };
    let vnetid = ov.vnetid.to_string();
    let status = ov.status.to_string();
    f.gauge(
        "overlay_info",
        "Overlay identity and health (value always 1): vnetid, status (ONLINE/DEGRADED), reason when degraded.",
        host,
        &[("overlay", name), ("vnetid", &vnetid), ("status", &status), ("reason", reason)],
        1.0,
    );
    f.gauge(
        "overlay_degraded",
        "Whether the overlay is degraded (1) or online (0); the reason is on overlay_info.",
        host,
        l,
        flag(degraded),
    );

    // The target table.
    let t = &ov.table;
    f.gauge(
        "overlay_target_entries",
        "Entries in the target table.",
        host,
        l,
        ov.table_entries as f64,
    );
    f.gauge(
        "overlay_target_max_entries",
        "Most entries the target table accepts (target/max_entries).",
        host,
        l,
        t.max_entries as f64,
    );
    f.gauge(
        "overlay_target_capacity_buckets",
        "Buckets of the target table's index.",
        host,
        l,
        t.capacity as f64,
    );
    f.gauge(
        "overlay_target_load_ratio",
        "Target-table entries per index bucket.",
        host,
        l,
        t.load,
    );
    f.gauge(
        "overlay_target_resizing",
        "Whether a target-table resize is under way.",
        host,
        l,
        flag(t.resizing),
    );
    f.counter(
        "overlay_target_resizes_total",
        "Target-table resizes completed.",
        host,
        l,
        t.resizes,
    );
    f.counter(
        "overlay_target_entries_moved_total",
        "Target-table entries moved by resizes.",
        host,
        l,
        t.entries_moved,
    );
    f.counter(
        "overlay_target_rejected_full_total",
        "New target entries refused at target/max_entries.",
        host,
        l,
        t.rejected_full,
    );

    // Peers: the busiest `max_peers` by bytes both ways; the total is a gauge.
    f.gauge(
        "overlay_peers",
        "Underlay peers the overlay has counters for (only the busiest --max-peers get overlay_peer_* series).",
        host,
        l,
        ov.peers_total.max(ov.peers.len() as u64) as f64,
    );
    let mut peers: Vec<_> = ov.peers.iter().collect();
    peers.sort_by_key(|p| std::cmp::Reverse(p.rx_bytes.saturating_add(p.tx_bytes)));
    for p in peers.into_iter().take(max_peers) {
        let addr = p.addr.map(|a| a.to_string()).unwrap_or_default();
        let pl: Labels = &[("overlay", name), ("peer", &addr)];
        f.counter(
            "overlay_peer_rx_bytes_total",
            "Bytes (inner) received from an underlay peer (busiest --max-peers only).",
            host,
            pl,
            p.rx_bytes,
        );
        f.counter(
            "overlay_peer_tx_bytes_total",
            "Bytes (inner) sent to an underlay peer (busiest --max-peers only).",
            host,
            pl,
            p.tx_bytes,
        );
    }

    // VNICs: one series each (a host carries tens of guests, not thousands).
    for v in &ov.vnics {
        let mac = v.mac.to_string();
        let vl: Labels = &[("overlay", name), ("vnic", &v.name), ("mac", &mac)];
        f.counter(
            "overlay_vnic_rx_frames_total",
            "Frames overlayd delivered from the underlay to a VNIC's MAC (unicast only).",
            host,
            vl,
            v.rx_frames,
        );
        f.counter(
            "overlay_vnic_rx_bytes_total",
            "Bytes of the frames delivered to a VNIC's MAC.",
            host,
            vl,
            v.rx_bytes,
        );
        f.counter(
            "overlay_vnic_tx_frames_total",
            "Frames overlayd read from the TAP device with a VNIC's MAC as source (segments, as on the wire).",
            host,
            vl,
            v.tx_frames,
        );
        f.counter(
            "overlay_vnic_tx_bytes_total",
            "Bytes of the frames read with a VNIC's MAC as source.",
            host,
            vl,
            v.tx_bytes,
        );
    }

    f.histogram(
        "overlay_varpd_lookup_duration_seconds",
        "Latency of varpd lookups, request to answer, as overlayd measures it.",
        host,
        l,
        latency_histogram(&ov.lookup_latency, ov.lookup_latency_sum_ns),
    );
}

fn varpd(f: &mut Families, host: &Option<String>, v: &VarpdSample) {
    f.gauge(
        "varpd_linked",
        "Whether varpd is linked to overlayd now.",
        host,
        &[],
        flag(v.linked),
    );
    f.gauge(
        "varpd_plugins",
        "Search plugins varpd offers.",
        host,
        &[],
        v.plugins as f64,
    );
    for i in &v.instances {
        let l: Labels = &[("overlay", &i.overlay), ("search", &i.search)];
        f.counter(
            "varpd_lookups_total",
            "Lookups an instance answered.",
            host,
            l,
            i.lookups,
        );
        f.counter(
            "varpd_proxy_arp_total",
            "ARP requests an instance answered by proxy.",
            host,
            l,
            i.proxy_arp,
        );
        f.counter(
            "varpd_proxy_ndp_total",
            "Neighbour solicitations an instance answered by proxy.",
            host,
            l,
            i.proxy_ndp,
        );
        f.counter(
            "varpd_proxy_dhcp_total",
            "DHCP requests an instance re-addressed to the client's DHCP server and resent.",
            host,
            l,
            i.proxy_dhcp,
        );
        f.counter(
            "varpd_invalidations_total",
            "Target entries an instance invalidated in overlayd because their mapping changed, moved or expired.",
            host,
            l,
            i.invalidations,
        );
        f.counter(
            "varpd_mac_conflicts_total",
            "MAC conflicts an instance yielded: another host registered, later, a MAC a guest of this host still uses.",
            host,
            l,
            i.mac_conflicts,
        );
        let status = i.status.to_string();
        let reason = i.details.clone().unwrap_or_default();
        f.gauge(
            "varpd_instance_info",
            "A search-plugin instance's health (value always 1): status, reason when degraded.",
            host,
            &[
                ("overlay", &i.overlay),
                ("search", &i.search),
                ("status", &status),
                ("reason", &reason),
            ],
            1.0,
        );
    }
}

/// Encodes the families of one scrape as exposition text, sorted by name.
///
/// The families are made here, one per name with consistent labels (the
/// unit tests and `promtool check metrics` hold them to that), so they go
/// to the `prometheus` crate's encoder directly rather than through a
/// registry, whose gathering would check and copy some 100,000 samples
/// again on a large scrape.
///
/// A large scrape is encoded on all cores, in runs of whole families of
/// about equal sample counts joined in order, and its families are freed
/// on a thread of their own rather than before the answer goes out.
pub fn render(mut families: Vec<MetricFamily>) -> anyhow::Result<String> {
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let samples: usize = families.iter().map(|f| f.get_metric().len()).sum();
    let threads = threads().min(samples / (OVERLAYS_PER_THREAD * 50)).max(1);
    // Cut into `threads` runs of consecutive families.
    let mut runs: Vec<Vec<MetricFamily>> = Vec::with_capacity(threads);
    let (mut run, mut in_run) = (Vec::new(), 0);
    for f in families {
        in_run += f.get_metric().len();
        run.push(f);
        if in_run * threads >= samples * (runs.len() + 1) && runs.len() + 1 < threads {
            runs.push(std::mem::take(&mut run));
        }
    }
    runs.push(run);
    let texts: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| {
                scope.spawn(move || {
                    let mut buf = Vec::with_capacity(1 << 20);
                    TextEncoder::new().encode(run, &mut buf).map(|()| buf)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("encoding metric families panicked"))
            .collect()
    });
    if samples > OVERLAYS_PER_THREAD * 50 {
        std::thread::spawn(move || drop(runs));
    }
    let mut out = Vec::with_capacity(texts.iter().map(|t| t.as_ref().map_or(0, Vec::len)).sum());
    for t in texts {
        out.extend_from_slice(&t?);
    }
    Ok(String::from_utf8(out)?)
}

/// Snapshots to exposition text.
pub fn text(hosts: &[HostSample], opts: &Options) -> anyhow::Result<String> {
    render(families(hosts, opts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_api::{HistBucket, PeerStats, TableStats, VnicStats};

    /// One sample line: name, labels, value.
    #[derive(Debug)]
    struct Sample {
        name: String,
        labels: BTreeMap<String, String>,
        value: f64,
    }

    /// A small parser of the text format: samples, and `# TYPE` lines.
    fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
        let (mut out, mut types) = (Vec::new(), BTreeMap::new());
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (n, t) = rest.split_once(' ').unwrap();
                types.insert(n.to_string(), t.to_string());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap();
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v
                    .parse()
                    .unwrap_or_else(|_| panic!("bad value in {line:?}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_string(), BTreeMap::new()),
                Some((n, rest)) => {
                    let body = rest.strip_suffix('}').unwrap();
                    let mut labels = BTreeMap::new();
                    for kv in body.split("\",").filter(|s| !s.is_empty()) {
                        let (k, v) = kv.split_once("=\"").unwrap();
                        labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                    }
                    (n.to_string(), labels)
                }
            };
            out.push(Sample {
                name,
                labels,
                value,
            });
        }
        (out, types)
    }

    fn find<'a>(s: &'a [Sample], name: &str, l: &[(&str, &str)]) -> Vec<&'a Sample> {
        s.iter()
            .filter(|x| {
                x.name == name
                    && l.iter()
                        .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn one(s: &[Sample], name: &str, l: &[(&str, &str)]) -> f64 {
        let v = find(s, name, l);
        assert_eq!(v.len(), 1, "{name}{l:?}: {v:?}");
        v[0].value
    }

    fn canned() -> StatsSnapshot {
        let peers = (0..15u8)
            .map(|i| PeerStats {
                addr: Some(format!("10.0.0.{i}").parse().unwrap()),
                tx_frames: i as u64,
                tx_bytes: 100 * i as u64,
                rx_frames: 1,
                rx_bytes: 10,
            })
            .collect();
        StatsSnapshot {
            varpd_linked: true,
            overlays: vec![
                OverlayStats {
                    offload: Default::default(),
                    peers_total: 0,
                    name: "ov0".into(),
                    vnetid: 4040,
                    rx_frames: 5,
                    rx_bytes: 500,
                    tx_frames: 6,
                    tx_bytes: 600,
                    lookups: 3,
                    misses: 4,
                    queue_overflows: 1,
                    injected: 2,
                    table_entries: 7,
                    drops: [("no-target".to_string(), 9), ("too-big".to_string(), 1)].into(),
                    status: OverlayState::Online,
                    peers,
                    lookup_latency: vec![
                        HistBucket {
                            le_ns: 1 << 5,
                            count: 1,
                        },
                        HistBucket {
                            le_ns: 1 << 17,
                            count: 2,
                        },
                        HistBucket {
                            le_ns: 1 << 20,
                            count: 3,
                        },
                        HistBucket {
                            le_ns: 1 << 40,
                            count: 4,
                        },
                    ],
                    lookup_latency_sum_ns: 2_500_000_000,
                    table: TableStats {
                        entries: 7,
                        max_entries: 1000,
                        capacity: 64,
                        load: 0.25,
                        resizes: 2,
                        entries_moved: 30,
                        resizing: false,
                        rejected_full: 0,
                    },
                    created_mono_ns: 1,
                    vnics: vec![VnicStats {
                        name: "vnic1".into(),
                        mac: "02:00:00:00:01:01".parse().unwrap(),
                        rx_frames: 3,
                        rx_bytes: 300,
                        tx_frames: 4,
                        tx_bytes: 400,
                    }],
                },
                OverlayStats {
                    offload: Default::default(),
                    peers_total: 0,
                    name: "ov1".into(),
                    vnetid: 7,
                    status: OverlayState::Degraded,
                    ..Default::default()
                },
            ],
            muxes: vec![overlay_api::MuxStats {
                listen: Some("10.0.0.1:6081".parse().unwrap()),
                rx_datagrams: 9,
                drops: [("critical-option".to_string(), 2)].into(),
                encap: "geneve".into(),
                options_skipped: 4,
            }],
            ..Default::default()
        }
    }

    fn hosts() -> Vec<HostSample> {
        vec![
            HostSample {
                host: Some("a".into()),
                overlayd: Some(OverlaydSample {
                    stats: canned(),
                    status: vec![StatusRow {
                        link: "ov1".into(),
                        status: OverlayState::Degraded,
                        details: Some("varpd is not running".into()),
                    }],
                }),
                varpd: Some(VarpdSample {
                    linked: true,
                    plugins: 2,
                    instances: vec![InstanceInfo {
                        oid: 1,
                        overlay: "ov0".into(),
                        search: "files".into(),
                        status: OverlayState::Online,
                        details: None,
                        lookups: 11,
                        proxy_arp: 1,
                        proxy_ndp: 2,
                        proxy_dhcp: 3,
                        invalidations: 0,
                        mac_conflicts: 2,
                    }],
                }),
            },
            HostSample {
                host: Some("b".into()),
                overlayd: None,
                varpd: None,
            },
        ]
    }

    #[test]
    fn names_labels_and_counters() {
        let text = text(&hosts(), &Options::default()).unwrap();
        let (s, types) = parse(&text);
        for (name, t) in &types {
            if t == "counter" {
                assert!(name.ends_with("_total"), "counter {name} lacks _total");
            } else {
                assert!(!name.ends_with("_total"), "{t} {name} ends in _total");
            }
            assert!(
                name.starts_with("overlay_") || name.starts_with("varpd_"),
                "{name} lacks the prefix"
            );
        }
        let a = ("host", "a");
        let ov0 = ("overlay", "ov0");
        assert_eq!(one(&s, "overlay_up", &[a]), 1.0);
        assert_eq!(one(&s, "varpd_up", &[a]), 1.0);
        assert_eq!(one(&s, "overlay_rx_frames_total", &[a, ov0]), 5.0);
        assert_eq!(one(&s, "overlay_tx_bytes_total", &[a, ov0]), 600.0);
        assert_eq!(one(&s, "overlay_misses_total", &[a, ov0]), 4.0);
        assert_eq!(one(&s, "overlay_lookups_total", &[a, ov0]), 3.0);
        assert_eq!(one(&s, "overlay_queue_overflows_total", &[a, ov0]), 1.0);
        assert_eq!(one(&s, "varpd_mac_conflicts_total", &[a, ov0]), 2.0);
        assert_eq!(
            one(
                &s,
                "overlay_drops_total",
                &[a, ov0, ("reason", "no-target")]
            ),
            9.0
        );
        assert_eq!(one(&s, "overlay_target_entries", &[a, ov0]), 7.0);
        assert_eq!(one(&s, "overlay_target_max_entries", &[a, ov0]), 1000.0);
        assert_eq!(one(&s, "overlay_target_capacity_buckets", &[a, ov0]), 64.0);
        assert_eq!(one(&s, "overlay_target_resizes_total", &[a, ov0]), 2.0);
        let mux = [a, ("listen", "10.0.0.1:6081"), ("encap", "geneve")];
        assert_eq!(one(&s, "overlay_mux_rx_datagrams_total", &mux), 9.0);
        assert_eq!(one(&s, "overlay_mux_options_skipped_total", &mux), 4.0);
        assert_eq!(
            one(
                &s,
                "overlay_mux_drops_total",
                &[mux[0], mux[1], mux[2], ("reason", "critical-option")]
            ),
            2.0
        );
        assert_eq!(
            one(&s, "varpd_lookups_total", &[a, ov0, ("search", "files")]),
            11.0
        );
        let info = find(&s, "overlay_info", &[a, ("overlay", "ov1")]);
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].labels["status"], "DEGRADED");
        assert_eq!(info[0].labels["reason"], "varpd is not running");
        assert_eq!(info[0].labels["vnetid"], "7");
        assert_eq!(one(&s, "overlay_degraded", &[a, ("overlay", "ov1")]), 1.0);
        assert_eq!(one(&s, "overlay_degraded", &[a, ov0]), 0.0);
        assert_eq!(find(&s, "overlay_info", &[a, ov0])[0].labels["reason"], "");
    }

    #[test]
    fn vnic_counters_name_the_guest() {
        let (s, _) = parse(&text(&hosts(), &Options::default()).unwrap());
        let l = [
            ("host", "a"),
            ("overlay", "ov0"),
            ("vnic", "vnic1"),
            ("mac", "02:00:00:00:01:01"),
        ];
        assert_eq!(one(&s, "overlay_vnic_rx_frames_total", &l), 3.0);
        assert_eq!(one(&s, "overlay_vnic_rx_bytes_total", &l), 300.0);
        assert_eq!(one(&s, "overlay_vnic_tx_frames_total", &l), 4.0);
        assert_eq!(one(&s, "overlay_vnic_tx_bytes_total", &l), 400.0);
        assert!(find(&s, "overlay_vnic_rx_frames_total", &[("overlay", "ov1")]).is_empty());
    }

    #[test]
    fn unreachable_host_has_only_up_gauges() {
        let (s, _) = parse(&text(&hosts(), &Options::default()).unwrap());
        let b: Vec<_> = s
            .iter()
            .filter(|x| x.labels.get("host").map(String::as_str) == Some("b"))
            .collect();
        let names: Vec<_> = b.iter().map(|x| (x.name.as_str(), x.value)).collect();
        assert_eq!(names, [("overlay_up", 0.0), ("varpd_up", 0.0)]);
    }

    #[test]
    fn peers_are_capped_busiest_first() {
        let (s, _) = parse(&text(&hosts(), &Options { max_peers: 10 }).unwrap());
        let p = find(
            &s,
            "overlay_peer_tx_bytes_total",
            &[("host", "a"), ("overlay", "ov0")],
        );
        assert_eq!(p.len(), 10, "{p:?}");
        let mut peers: Vec<_> = p.iter().map(|x| x.labels["peer"].clone()).collect();
        peers.sort();
        let mut want: Vec<_> = (5..15).map(|i| format!("10.0.0.{i}")).collect();
        want.sort();
        assert_eq!(peers, want);
        assert_eq!(
            one(&s, "overlay_peers", &[("host", "a"), ("overlay", "ov0")]),
            15.0
        );
        let (s, _) = parse(&text(&hosts(), &Options { max_peers: 3 }).unwrap());
        assert_eq!(find(&s, "overlay_peer_rx_bytes_total", &[]).len(), 3);

        // overlayd sent only the busiest (max_peers in the request) but
        // said how many it counts: the gauge shows all of them.
        let mut h = hosts();
        if let Some(o) = h[0].overlayd.as_mut() {
            let ov = &mut o.stats.overlays[0];
            ov.peers_total = ov.peers.len() as u64;
            ov.peers.truncate(3);
        }
        let (s, _) = parse(&text(&h, &Options { max_peers: 10 }).unwrap());
        assert_eq!(
            one(&s, "overlay_peers", &[("host", "a"), ("overlay", "ov0")]),
            15.0
        );
        let p = find(
            &s,
            "overlay_peer_tx_bytes_total",
            &[("host", "a"), ("overlay", "ov0")],
        );
        assert_eq!(p.len(), 3, "{p:?}");
    }

    #[test]
    fn latency_is_a_cumulative_histogram_in_seconds() {
        let (s, types) = parse(&text(&hosts(), &Options::default()).unwrap());
        let name = "overlay_varpd_lookup_duration_seconds";
        assert_eq!(types[name], "histogram");
        let l = [("host", "a"), ("overlay", "ov0")];
        let buckets = find(&s, &format!("{name}_bucket"), &l);
        let bounds: Vec<(f64, f64)> = buckets
            .iter()
            .map(|b| (b.labels["le"].parse::<f64>().unwrap(), b.value))
            .collect();
        // 2^11, 2^13 ..= 2^35 ns, then +Inf.
        assert_eq!(bounds.len(), 14, "{bounds:?}");
        assert_eq!(bounds[0].0, 2048e-9);
        assert_eq!(bounds[12].0, (1u64 << 35) as f64 / 1e9);
        assert!(bounds[13].0.is_infinite());
        for w in bounds.windows(2) {
            assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{bounds:?}");
        }
        let at = |le_ns: u64| {
            bounds
                .iter()
                .find(|b| (b.0 - le_ns as f64 / 1e9).abs() < 1e-15)
                .unwrap()
                .1
        };
        assert_eq!(at(1 << 11), 1.0); // 2^5 folds into the first bucket
        assert_eq!(at(1 << 15), 1.0);
        assert_eq!(at(1 << 17), 3.0); // 2^17 is a rung of the ladder
        assert_eq!(at(1 << 21), 6.0); // 2^20 counts under the next rung up
        assert_eq!(at(1 << 35), 6.0); // 2^40 is beyond the ladder: +Inf only
        assert_eq!(bounds[13].1, 10.0);
        assert_eq!(one(&s, &format!("{name}_count"), &l), 10.0);
        // The sum is overlayd's own, not an estimate from the buckets.
        assert_eq!(one(&s, &format!("{name}_sum"), &l), 2.5);
        // An overlay with no lookups still has the whole ladder, at zero.
        let l1 = [("host", "a"), ("overlay", "ov1")];
        let z = find(&s, &format!("{name}_bucket"), &l1);
        assert_eq!(z.len(), 14);
        assert!(z.iter().all(|b| b.value == 0.0));
    }

    #[test]
    fn latency_sum_is_overlayds_own_and_estimated_only_for_an_older_one() {
        let b = [overlay_api::HistBucket {
            le_ns: 1 << 20,
            count: 2,
        }];
        assert_eq!(
            latency_histogram(&b, 1_234_567).get_sample_sum(),
            0.001_234_567
        );
        let est = latency_histogram(&b, 0).get_sample_sum();
        assert_eq!(est, 2.0 * (1u64 << 20) as f64 * 0.75 / 1e9);
        assert_eq!(latency_histogram(&[], 0).get_sample_sum(), 0.0);
    }

    #[test]
    fn a_single_host_has_no_host_label() {
        let mut h = hosts();
        h.truncate(1);
        h[0].host = None;
        let (s, _) = parse(&text(&h, &Options::default()).unwrap());
        assert!(s.iter().all(|x| !x.labels.contains_key("host")));
        assert_eq!(one(&s, "overlay_up", &[]), 1.0);
    }
}
