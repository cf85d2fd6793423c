//! The command line: clap's definitions of dladm's overlay subcommands, and
//! their resolution into an [`Invocation`] — the request to send and how to
//! print its answer.
//!
//! Every usage error, whether clap finds it (a missing `-v`, `-d` with `-f`)
//! or the resolution does (a property given twice, an unknown `-o` field), is
//! a [`clap::Error`], so all of them print the same way and exit with 2.
//! Range checks (VNI, MTU, ports) are overlayd's: it knows the properties.

use crate::output::{self, Format, Row};
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};
use overlay_api::proto::{Request, VarpdRequest};
use overlay_api::{
    Mac, OverlaySpec, PropRow, StatusRow, TargetDest, TargetRow, VnicRow, VnicSpec, VnicStats,
    DEFAULT_RUN_DIR,
};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Properties that have their own option in `create-overlay` and so may not
/// be given with `-p`.
pub const SPEC_PROPERTIES: &[(&str, &str)] = &[("encap", "-e"), ("search", "-s"), ("vnetid", "-v")];

/// `ovadm`: the operator's CLI for overlays (dladm's overlay subcommands).
#[derive(Debug, Parser)]
#[command(
    name = "ovadm",
    about = "Create, modify and show overlays (dladm's overlay subcommands)"
)]
pub struct Cli {
    /// Directory holding overlayd's control socket (overlayd.sock).
    #[arg(long, global = true, env = "OVERLAY_RUN_DIR", default_value = DEFAULT_RUN_DIR, value_name = "DIR")]
    pub run_dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create an overlay (its TAP device and its varpd instance).
    CreateOverlay(CreateArgs),
    /// Delete an overlay and its TAP device.
    DeleteOverlay(DeleteArgs),
    /// Change an overlay's target table: delete one entry, flush all, or set one.
    ModifyOverlay(ModifyArgs),
    /// Show overlays' properties (default), status (-f) or target tables (-t).
    ShowOverlay(ShowArgs),
    /// Show overlayd's counters per overlay and per mux, with drops by reason.
    ShowStats(StatsArgs),
    /// Create a VNIC (a macvlan over the overlay's TAP device), optionally in a guest namespace.
    CreateVnic(CreateVnicArgs),
    /// Delete a VNIC.
    DeleteVnic(DeleteArgs),
    /// Show VNICs (LINK OVER MACADDRESS MACADDRTYPE NETNS MTU), or their counters (-s).
    ShowVnic(ShowVnicArgs),
    /// Set a mapping by hand in the overlay's search plugin (etcd): where a
    /// MAC lives (-d) and/or an address it owns (-a). Written without a lease.
    SetMapping(SetMappingArgs),
    /// Remove a mapping set by hand: where a MAC lives (-m) and/or who owns
    /// an address (-a).
    RemoveMapping(RemoveMappingArgs),
    /// Write an Ethernet frame into the overlay's TAP device as if it had
    /// come from the underlay (illumos OVERLAY_TARG_INJECT).
    InjectFrame(FrameArgs),
    /// Send an Ethernet frame out of the overlay as if its TAP device had
    /// sent it: through the target table, encapsulated (illumos
    /// OVERLAY_TARG_RESEND).
    ResendFrame(FrameArgs),
}

/// `inject-frame -l OVERLAY {-x HEX | FILE}` and `resend-frame` alike.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("frame").required(true).multiple(false).args(["hex", "file"])))]
pub struct FrameArgs {
    /// The overlay.
    #[arg(short = 'l', long = "link", value_name = "OVERLAY")]
    pub link: String,
    /// The frame in hexadecimal, from the destination MAC on (no FCS);
    /// spaces and ':' between bytes are allowed.
    #[arg(short = 'x', long = "hex", value_name = "HEX", value_parser = parse_hex_frame)]
    pub hex: Option<HexFrame>,
    /// A file holding the frame's bytes as they are, from the destination
    /// MAC on (no FCS); `-` for standard input.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// A frame given with `-x`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HexFrame(pub Vec<u8>);

/// Where a frame to inject or resend comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSource {
    /// `-x HEX`.
    Bytes(Vec<u8>),
    /// `FILE` (`-` for standard input), read when the command runs.
    File(PathBuf),
}

/// `set-mapping -m MAC [-d IP:PORT] [-a IP] NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["dest", "addr"])))]
pub struct SetMappingArgs {
    /// The VL2 MAC.
    #[arg(short = 'm', long = "mac", value_name = "MAC")]
    pub mac: Mac,
    /// Where it lives: underlay IP and UDP port.
    #[arg(short = 'd', long = "dest", value_name = "IP:PORT")]
    pub dest: Option<SocketAddr>,
    /// A VL3 address (IPv4 or IPv6) it owns, for proxy ARP/NDP.
    #[arg(short = 'a', long = "address", value_name = "IP")]
    pub addr: Option<std::net::IpAddr>,
    /// Overlay name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `remove-mapping [-m MAC] [-a IP] NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).multiple(true).args(["mac", "addr"])))]
pub struct RemoveMappingArgs {
    /// The VL2 MAC whose location goes.
    #[arg(short = 'm', long = "mac", value_name = "MAC")]
    pub mac: Option<Mac>,
    /// The VL3 address whose owner goes.
    #[arg(short = 'a', long = "address", value_name = "IP")]
    pub addr: Option<std::net::IpAddr>,
    /// Overlay name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `create-vnic -l OVERLAY [-m MAC|random] [--netns NS] NAME`.
#[derive(Debug, Args)]
pub struct CreateVnicArgs {
    /// The overlay to create it over.
    #[arg(short = 'l', long = "link", value_name = "OVERLAY")]
    pub link: String,
    /// Its MAC, or `random` (the default): a random locally administered one.
    #[arg(short = 'm', long = "mac-address", value_name = "MAC|random", value_parser = parse_vnic_mac)]
    pub mac: Option<VnicMac>,
    /// Move it into this network namespace (a name under /run/netns): a guest.
    #[arg(long = "netns", value_name = "NS")]
    pub netns: Option<String>,
    /// VNIC name (the link's name, 1-15 bytes).
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// A `create-vnic -m` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VnicMac {
    /// `-m random`.
    Random,
    /// `-m MAC`.
    Fixed(Mac),
}

/// `[-p] [-o FIELD,...|all] [--json]`: how a `show-*` table is printed.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Parseable output: no header, fields joined by ':'. Needs -o.
    #[arg(
        short = 'p',
        long = "parsable",
        visible_alias = "parseable",
        requires = "output"
    )]
    pub parsable: bool,
    /// Fields to print, comma-separated, or all.
    #[arg(short = 'o', long = "output", value_name = "FIELD,...|all")]
    pub output: Option<String>,
    /// One line of JSON: an array with an object per row, keyed by field name.
    #[arg(long, conflicts_with = "parsable")]
    pub json: bool,
}

impl OutputArgs {
    /// The fields (by `-o`, else the table's defaults) and the format, or
    /// a usage error of `subcommand` naming a bad field.
    fn select(
        &self,
        subcommand: &str,
        table: ShowTable,
    ) -> Result<(Vec<usize>, Format), clap::Error> {
        let fields = output::select_fields_default(
            self.output.as_deref(),
            table.fields(),
            table.default_len(),
        )
        .map_err(|m| usage_error(subcommand, m))?;
        let format = if self.json {
            Format::Json
        } else if self.parsable {
            Format::Parseable
        } else {
            Format::Human
        };
        Ok((fields, format))
    }
}

/// `show-vnic [-s] [-p] [-o FIELD,...|all] [--json] [NAME]`.
#[derive(Debug, Args)]
pub struct ShowVnicArgs {
    /// Show counters (LINK IPACKETS RBYTES OPACKETS OBYTES) instead.
    #[arg(short = 's', long = "statistics")]
    pub stats: bool,
    /// How to print the table.
    #[command(flatten)]
    pub out: OutputArgs,
    /// VNIC name; every VNIC when absent.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// `create-overlay -e ENCAP -s SEARCH -v VNETID [-t] [-p PROP=VALUE[,...]] NAME`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Encapsulation module (vxlan, geneve, nvgre).
    #[arg(short = 'e', long = "encap", value_name = "ENCAP")]
    pub encap: String,
    /// Search plugin in varpd (direct, files, etcd).
    #[arg(short = 's', long = "search", value_name = "SEARCH")]
    pub search: String,
    /// Virtual network id (the VXLAN VNI).
    #[arg(short = 'v', long = "vnetid", value_name = "VNETID", value_parser = parse_vnetid)]
    pub vnetid: u32,
    /// Temporary: not kept across overlayd restarts.
    #[arg(short = 't', long = "temporary")]
    pub temporary: bool,
    /// Properties, comma-separated; may be repeated.
    #[arg(short = 'p', long = "prop", value_name = "PROP=VALUE[,...]", value_parser = parse_prop_list)]
    pub props: Vec<PropList>,
    /// Overlay name, also the TAP device's name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `delete-overlay NAME`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Overlay name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `modify-overlay {-d MAC | -f | -s MAC=IP:PORT | -s MAC=drop} NAME`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).multiple(false).args(["delete", "flush", "set"])))]
pub struct ModifyArgs {
    /// Remove the target entry of this VL2 MAC.
    #[arg(short = 'd', long = "delete-entry", value_name = "MAC")]
    pub delete: Option<Mac>,
    /// Remove every target entry.
    #[arg(short = 'f', long = "flush-table")]
    pub flush: bool,
    /// Set a target entry: MAC=IP:PORT (IPv6 as MAC=[ADDR]:PORT) or MAC=drop.
    #[arg(short = 's', long = "set-entry", value_name = "MAC=IP:PORT|MAC=drop", value_parser = parse_target)]
    pub set: Option<SetTarget>,
    /// Overlay name.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `show-overlay [-f | -t] [-p] [-o FIELD,...|all] [--json] [NAME]`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Show status (LINK STATUS DETAILS) instead of properties.
    #[arg(short = 'f', long = "fma", conflicts_with = "target")]
    pub fma: bool,
    /// Show target tables (LINK TARGET DESTINATION) instead of properties.
    #[arg(short = 't', long = "target")]
    pub target: bool,
    /// How to print the table.
    #[command(flatten)]
    pub out: OutputArgs,
    /// Overlay name; every overlay when absent.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// `show-stats [--json] [NAME]`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the snapshot as one line of JSON (the api's StatsSnapshot).
    #[arg(long)]
    pub json: bool,
    /// Overlay name; every overlay when absent.
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
}

/// The properties of one `-p` argument, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropList(pub Vec<(String, String)>);

/// A `modify-overlay -s` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetTarget {
    /// The VL2 MAC.
    pub mac: Mac,
    /// Where its frames go.
    pub dest: TargetDest,
}

/// Which table `show-overlay` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShowTable {
    /// Properties (default).
    Props,
    /// Status (`-f`).
    Status,
    /// Target tables (`-t`).
    Targets,
    /// VNICs (`show-vnic`).
    Vnics,
    /// VNIC counters (`show-vnic -s`), from the statistics snapshot.
    VnicStats,
}

impl ShowTable {
    /// The table's fields, as `-o` names them.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            ShowTable::Props => PropRow::FIELDS,
            ShowTable::Status => StatusRow::FIELDS,
            ShowTable::Targets => TargetRow::FIELDS,
            ShowTable::Vnics => VnicRow::FIELDS,
            ShowTable::VnicStats => VnicStats::FIELDS,
        }
    }

    /// How many of the fields (from the first) show without `-o`: dladm's
    /// columns; the rest (a target entry's age, idle time, frames and
    /// bytes) are there for `-o` and `-o all`.
    pub fn default_len(self) -> usize {
        match self {
            ShowTable::Targets => 3,
            ShowTable::VnicStats => 5,
            t => t.fields().len(),
        }
    }
}

/// What to do, fully checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// A change (create, delete, modify); overlayd answers `Ok`.
    Change(Request),
    /// `show-overlay`.
    Show {
        /// ShowProps, ShowStatus or ShowTargets.
        request: Request,
        /// Which rows the answer holds.
        table: ShowTable,
        /// Indices into [`ShowTable::fields`] to print, in order.
        fields: Vec<usize>,
        /// How to print them.
        format: Format,
    },
    /// `show-vnic -s`: the snapshot's VNIC counters.
    VnicStats {
        /// VNIC name; all when absent.
        name: Option<String>,
        /// Indices into [`ShowTable::fields`] of [`ShowTable::VnicStats`].
        fields: Vec<usize>,
        /// How to print them.
        format: Format,
    },
    /// A change asked of varpd (set-mapping, remove-mapping); it answers `Done`.
    Varpd(VarpdRequest),
    /// `inject-frame` or `resend-frame`: the frame is read, then sent as
    /// [`Request::InjectFrame`] or [`Request::ResendFrame`].
    Frame {
        /// The overlay.
        name: String,
        /// The frame.
        source: FrameSource,
        /// Resend (through the target table) rather than inject.
        resend: bool,
    },
    /// `show-stats`.
    Stats {
        /// Overlay name; all when absent.
        name: Option<String>,
        /// JSON instead of tables.
        json: bool,
    },
}

/// A checked command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// Where overlayd's socket is.
    pub run_dir: PathBuf,
    /// What to do.
    pub action: Action,
}

/// Parses and checks a command line (`args[0]` is the program name).
pub fn parse<I, T>(args: I) -> Result<Invocation, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    Cli::try_parse_from(args)?.resolve()
}

impl Cli {
    /// Checks what clap cannot and turns the arguments into an [`Invocation`].
    pub fn resolve(self) -> Result<Invocation, clap::Error> {
        let action = match self.command {
            Command::CreateOverlay(a) => {
                let props = merge_props(&a.props).map_err(|m| usage_error("create-overlay", m))?;
                Action::Change(Request::CreateOverlay {
                    spec: OverlaySpec {
                        name: a.name,
                        encap: a.encap,
                        search: a.search,
                        vnetid: a.vnetid,
                        temporary: a.temporary,
                        props,
                    },
                })
            }
            Command::DeleteOverlay(a) => Action::Change(Request::DeleteOverlay { name: a.name }),
            Command::ModifyOverlay(a) => Action::Change(match (a.delete, a.flush, a.set) {
                (Some(mac), _, _) => Request::RemoveTarget { name: a.name, mac },
                (_, _, Some(s)) => Request::SetTarget {
                    name: a.name,
                    mac: s.mac,
                    dest: s.dest,
                },
                // clap's group guarantees exactly one of the three.
                _ => Request::FlushTargets { name: a.name },
            }),
            Command::ShowOverlay(a) => {
                let name = a.name;
                let (table, request) = if a.fma {
                    (ShowTable::Status, Request::ShowStatus { name })
                } else if a.target {
                    (
                        ShowTable::Targets,
                        Request::ShowTargets {
                            name,
                            cursor: None,
                            limit: None,
                        },
                    )
                } else {
                    (ShowTable::Props, Request::ShowProps { name })
                };
                let (fields, format) = a.out.select("show-overlay", table)?;
                Action::Show {
                    request,
                    table,
                    fields,
                    format,
                }
            }
            Command::ShowStats(a) => Action::Stats {
                name: a.name,
                json: a.json,
            },
            Command::CreateVnic(a) => Action::Change(Request::CreateVnic {
                spec: VnicSpec {
                    name: a.name,
                    over: a.link,
                    mac: match a.mac {
                        Some(VnicMac::Fixed(m)) => Some(m),
                        Some(VnicMac::Random) | None => None,
                    },
                    netns: a.netns,
                },
            }),
            Command::DeleteVnic(a) => Action::Change(Request::DeleteVnic { name: a.name }),
            Command::SetMapping(a) => Action::Varpd(VarpdRequest::SetMapping {
                overlay: a.name,
                mac: a.mac,
                dest: a.dest,
                ip: a.addr,
            }),
            Command::RemoveMapping(a) => Action::Varpd(VarpdRequest::RemoveMapping {
                overlay: a.name,
                mac: a.mac,
                ip: a.addr,
            }),
            Command::InjectFrame(a) => frame_action(a, false),
            Command::ResendFrame(a) => frame_action(a, true),
            Command::ShowVnic(a) => {
                let table = if a.stats {
                    ShowTable::VnicStats
                } else {
                    ShowTable::Vnics
                };
                let (fields, format) = a.out.select("show-vnic", table)?;
                if a.stats {
                    Action::VnicStats {
                        name: a.name,
                        fields,
                        format,
                    }
                } else {
                    Action::Show {
                        request: Request::ShowVnics { name: a.name },
                        table,
                        fields,
                        format,
                    }
                }
            }
        };
        Ok(Invocation {
            run_dir: self.run_dir,
            action,
        })
    }
}

/// The action of `inject-frame` / `resend-frame`; clap's group guarantees
/// exactly one of `-x` and `FILE`.
fn frame_action(a: FrameArgs, resend: bool) -> Action {
    let source = match (a.hex, a.file) {
        (Some(HexFrame(b)), _) => FrameSource::Bytes(b),
        (None, Some(f)) => FrameSource::File(f),
        (None, None) => FrameSource::Bytes(Vec::new()),
    };
    Action::Frame {
        name: a.link,
        source,
        resend,
    }
}

/// Parses `-x`: pairs of hexadecimal digits, optionally separated by spaces
/// or ':'. Its length is overlayd's to check (it knows the MTU).
pub fn parse_hex_frame(s: &str) -> Result<HexFrame, String> {
    let digits: Vec<char> = s
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect();
    if let Some(bad) = digits.iter().find(|c| !c.is_ascii_hexdigit()) {
        return Err(format!(
            "'{bad}' is not a hexadecimal digit: expected the frame as hex bytes, like 02:00:00:00:00:02:02:00:00:00:00:01:88:b5:..."
        ));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "{} hexadecimal digits: a frame is whole bytes, two digits each",
            digits.len()
        ));
    }
    let nibble = |c: char| c.to_digit(16).unwrap_or(0) as u8;
    Ok(HexFrame(
        digits
            .chunks(2)
            .map(|p| (nibble(p[0]) << 4) | nibble(p[1]))
            .collect(),
    ))
}

/// A usage error found after clap's parse, printed with the subcommand's usage.
fn usage_error(subcommand: &str, message: String) -> clap::Error {
    let mut cmd = Cli::command();
    cmd.build();
    match cmd.find_subcommand_mut(subcommand) {
        Some(sub) => sub.error(ErrorKind::ValueValidation, message),
        None => cmd.error(ErrorKind::ValueValidation, message),
    }
}

/// Parses `-v`: a whole number (its range is overlayd's to check).
pub fn parse_vnetid(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => {
            format!("'{s}' is too large for a virtual network id")
        }
        _ => format!("'{s}' is not a virtual network id: expected a whole number, like 100"),
    })
}

/// Parses one `-p` argument: items split on ',', each split at its first '='
/// (so a value may hold '='). An item without '=' or with an empty name is an
/// error naming it — except a URL (`SCHEME://...`) right after a property
/// whose value is a URL too: as dladm does for multi-valued properties, it
/// is one more value of that property, so that
/// `etcd/endpoints=http://a:2379,http://b:2379` is one list.
pub fn parse_prop_list(s: &str) -> Result<PropList, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in s.split(',') {
        match item.split_once('=') {
            None if item.is_empty() => {
                return Err(format!(
                    "empty item in '{s}': expected PROP=VALUE[,PROP=VALUE...]"
                ))
            }
            None => match out.last_mut() {
                Some((_, v)) if item.contains("://") && v.contains("://") => {
                    v.push(',');
                    v.push_str(item);
                }
                _ => return Err(format!("'{item}' is not PROP=VALUE")),
            },
            Some(("", _)) => {
                return Err(format!(
                    "'{item}' has no property name: expected PROP=VALUE"
                ))
            }
            Some((k, v)) => out.push((k.to_string(), v.to_string())),
        }
    }
    Ok(PropList(out))
}

/// Merges every `-p` into one map; a property given twice, or one that has
/// its own option (`encap`, `search`, `vnetid`), is an error naming it.
pub fn merge_props(lists: &[PropList]) -> Result<BTreeMap<String, String>, String> {
    let mut props = BTreeMap::new();
    for (k, v) in lists.iter().flat_map(|l| &l.0) {
        if let Some((_, opt)) = SPEC_PROPERTIES.iter().find(|(p, _)| p == k) {
            return Err(format!("property '{k}' is set with {opt}, not with -p"));
        }
        if props.insert(k.clone(), v.clone()).is_some() {
            return Err(format!("property '{k}' is given more than once"));
        }
    }
    Ok(props)
}

/// Parses `create-vnic -m`: a unicast MAC, or `random`.
pub fn parse_vnic_mac(s: &str) -> Result<VnicMac, String> {
    if s.eq_ignore_ascii_case("random") {
        return Ok(VnicMac::Random);
    }
    let mac: Mac = s
        .parse()
        .map_err(|e: overlay_api::mac::MacParseError| format!("{e} (or random)"))?;
    if !mac.is_unicast() {
        return Err(format!(
            "{mac} is a group (multicast) address: a VNIC needs a unicast MAC"
        ));
    }
    Ok(VnicMac::Fixed(mac))
}

/// Parses `-s MAC=IP:PORT`, `-s MAC=[IPv6]:PORT` or `-s MAC=drop`, split at
/// the first '='.
pub fn parse_target(s: &str) -> Result<SetTarget, String> {
    let (mac, dest) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not MAC=IP:PORT, MAC=[IPv6]:PORT or MAC=drop"))?;
    let mac: Mac = mac
        .parse()
        .map_err(|e: overlay_api::mac::MacParseError| e.to_string())?;
    let dest = if dest.eq_ignore_ascii_case("drop") {
        TargetDest::Drop
    } else if dest.eq_ignore_ascii_case("pending") {
        return Err(
            "a target cannot be set to pending (varpd sets that); use -d to remove the entry"
                .into(),
        );
    } else {
        match dest.parse::<SocketAddr>() {
            Ok(a) => TargetDest::Valid(a),
            Err(_) if !dest.starts_with('[') && dest.matches(':').count() > 1 => {
                return Err(format!("invalid destination '{dest}': write an IPv6 address in brackets, like [fd00::1]:4789"))
            }
            Err(_) => {
                return Err(format!("invalid destination '{dest}': expected IP:PORT (like 10.0.0.2:4789 or [fd00::1]:4789) or drop"))
            }
        }
    };
    Ok(SetTarget { mac, dest })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str]) -> Invocation {
        match parse(std::iter::once("ovadm").chain(args.iter().copied())) {
            Ok(i) => i,
            Err(e) => panic!("{args:?} failed: {e}"),
        }
    }

    fn usage(args: &[&str]) -> clap::Error {
        match parse(std::iter::once("ovadm").chain(args.iter().copied())) {
            Ok(i) => panic!("{args:?} parsed: {i:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                e
            }
        }
    }

    fn pl(items: &[(&str, &str)]) -> PropList {
        PropList(
            items
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn prop_list_splits_on_commas_then_first_equals() {
        assert_eq!(parse_prop_list("mtu=1400"), Ok(pl(&[("mtu", "1400")])));
        assert_eq!(
            parse_prop_list("vxlan/listen_ip=10.0.0.1,vxlan/listen_port=4789"),
            Ok(pl(&[
                ("vxlan/listen_ip", "10.0.0.1"),
                ("vxlan/listen_port", "4789")
            ]))
        );
        assert_eq!(
            parse_prop_list("etcd/prefix=a=b=c"),
            Ok(pl(&[("etcd/prefix", "a=b=c")]))
        );
        assert_eq!(
            parse_prop_list("files/config="),
            Ok(pl(&[("files/config", "")]))
        );
        // A list of URLs stays one value (dladm's multi-valued properties).
        assert_eq!(
            parse_prop_list("etcd/endpoints=http://a:2379,http://b:2379,etcd/lease_ttl=4"),
            Ok(pl(&[
                ("etcd/endpoints", "http://a:2379,http://b:2379"),
                ("etcd/lease_ttl", "4")
            ]))
        );
        assert_eq!(
            parse_prop_list("mtu=1400,http://b:2379"),
            Err("'http://b:2379' is not PROP=VALUE".to_string())
        );
    }

    #[test]
    fn prop_list_errors_name_the_item() {
        assert_eq!(
            parse_prop_list("mtu"),
            Err("'mtu' is not PROP=VALUE".to_string())
        );
        assert_eq!(
            parse_prop_list("mtu=1400,bogus"),
            Err("'bogus' is not PROP=VALUE".to_string())
        );
        assert_eq!(
            parse_prop_list("=1400"),
            Err("'=1400' has no property name: expected PROP=VALUE".to_string())
        );
        assert!(parse_prop_list("mtu=1400,").is_err_and(|e| e.contains("empty item")));
        assert!(parse_prop_list("").is_err());
    }

    #[test]
    fn merged_props_refuse_duplicates_and_spec_fields() {
        let m = merge_props(&[pl(&[("mtu", "1400")]), pl(&[("vxlan/listen_ip", "::1")])])
            .expect("merge");
        assert_eq!(m.len(), 2);
        assert_eq!(m["vxlan/listen_ip"], "::1");
        assert_eq!(
            merge_props(&[pl(&[("mtu", "1400")]), pl(&[("mtu", "1500")])]),
            Err("property 'mtu' is given more than once".to_string())
        );
        assert_eq!(
            merge_props(&[pl(&[("vnetid", "7")])]),
            Err("property 'vnetid' is set with -v, not with -p".to_string())
        );
    }

    #[test]
    fn frame_commands_take_hex_or_a_file() {
        let i = ok(&[
            "inject-frame",
            "-l",
            "ov0",
            "-x",
            "02:00:00:00:00:02 0200000000 01 88b5",
        ]);
        assert_eq!(
            i.action,
            Action::Frame {
                name: "ov0".into(),
                source: FrameSource::Bytes(vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x88, 0xb5]),
                resend: false,
            }
        );
        let i = ok(&["resend-frame", "-l", "ov0", "/tmp/frame.bin"]);
        assert_eq!(
            i.action,
            Action::Frame {
                name: "ov0".into(),
                source: FrameSource::File("/tmp/frame.bin".into()),
                resend: true,
            }
        );
        usage(&["inject-frame", "-l", "ov0"]);
        usage(&["inject-frame", "-l", "ov0", "-x", "0102", "/tmp/f"]);
        usage(&["resend-frame", "ov0", "-x", "0102"]);
        assert!(usage(&["inject-frame", "-l", "ov0", "-x", "01zz"])
            .to_string()
            .contains("'z' is not a hexadecimal digit"));
        assert!(usage(&["inject-frame", "-l", "ov0", "-x", "010"])
            .to_string()
            .contains("3 hexadecimal digits: a frame is whole bytes"));
    }

    #[test]
    fn set_target_forms() {
        let mac: Mac = "02:08:20:aa:bb:cc".parse().expect("mac");
        let t = parse_target("02:08:20:aa:bb:cc=10.0.0.2:4789").expect("ipv4");
        assert_eq!(
            t,
            SetTarget {
                mac,
                dest: TargetDest::Valid("10.0.0.2:4789".parse().expect("addr"))
            }
        );
        let t = parse_target("2:8:20:aa:bb:cc=[fd00::1]:4789").expect("ipv6");
        assert_eq!(
            t,
            SetTarget {
                mac,
                dest: TargetDest::Valid("[fd00::1]:4789".parse().expect("addr"))
            }
        );
        assert_eq!(
            parse_target("02:08:20:aa:bb:cc=drop").expect("drop").dest,
            TargetDest::Drop
        );
        assert_eq!(
            parse_target("02:08:20:aa:bb:cc=DROP").expect("drop").dest,
            TargetDest::Drop
        );
    }

    #[test]
    fn set_target_rejects_bad_input() {
        for (arg, says) in [
            ("02:08:20:aa:bb:cc", "is not MAC=IP:PORT"),
            (
                "02:08:20:aa:bb=10.0.0.2:4789",
                "invalid MAC address '02:08:20:aa:bb'",
            ),
            (
                "02:08:20:aa:bb:cc=10.0.0.2",
                "invalid destination '10.0.0.2'",
            ),
            ("02:08:20:aa:bb:cc=10.0.0.2:99999", "invalid destination"),
            ("02:08:20:aa:bb:cc=fd00::1:4789", "in brackets"),
            ("02:08:20:aa:bb:cc=pending", "pending"),
            ("02:08:20:aa:bb:cc=", "invalid destination ''"),
            ("=10.0.0.2:4789", "invalid MAC address ''"),
        ] {
            match parse_target(arg) {
                Ok(t) => panic!("{arg} parsed: {t:?}"),
                Err(e) => assert!(e.contains(says), "{arg}: {e}"),
            }
        }
    }

    #[test]
    fn vnetid_must_be_an_integer() {
        assert_eq!(parse_vnetid("100"), Ok(100));
        assert!(parse_vnetid("0x10").is_err());
        assert!(parse_vnetid("-1").is_err());
        assert!(parse_vnetid("99999999999").is_err_and(|e| e.contains("too large")));
    }

    #[test]
    fn create_overlay_builds_the_spec() {
        let i = ok(&[
            "--run-dir",
            "/tmp/x",
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "100",
            "-t",
            "-p",
            "vxlan/listen_ip=10.0.0.1,vxlan/listen_port=4790",
            "-p",
            "direct/dest_ip=10.0.0.2",
            "ov0",
        ]);
        assert_eq!(i.run_dir, PathBuf::from("/tmp/x"));
        let Action::Change(Request::CreateOverlay { spec }) = i.action else {
            panic!("{i:?}")
        };
        assert_eq!(
            (
                spec.name.as_str(),
                spec.encap.as_str(),
                spec.search.as_str()
            ),
            ("ov0", "vxlan", "direct")
        );
        assert_eq!((spec.vnetid, spec.temporary), (100, true));
        assert_eq!(
            spec.props.keys().collect::<Vec<_>>(),
            ["direct/dest_ip", "vxlan/listen_ip", "vxlan/listen_port"]
        );
        assert!(!spec.props.contains_key("encap") && !spec.props.contains_key("vnetid"));
    }

    #[test]
    fn run_dir_may_follow_the_subcommand() {
        let i = ok(&["delete-overlay", "ov0", "--run-dir", "/tmp/y"]);
        assert_eq!(i.run_dir, PathBuf::from("/tmp/y"));
        assert_eq!(
            i.action,
            Action::Change(Request::DeleteOverlay { name: "ov0".into() })
        );
    }

    #[test]
    fn modify_overlay_requests() {
        let mac: Mac = "02:00:00:00:00:02".parse().expect("mac");
        assert_eq!(
            ok(&["modify-overlay", "-d", "02:00:00:00:00:02", "ov0"]).action,
            Action::Change(Request::RemoveTarget {
                name: "ov0".into(),
                mac
            })
        );
        assert_eq!(
            ok(&["modify-overlay", "-f", "ov0"]).action,
            Action::Change(Request::FlushTargets { name: "ov0".into() })
        );
        assert_eq!(
            ok(&[
                "modify-overlay",
                "-s",
                "02:00:00:00:00:02=[fd00::2]:4789",
                "ov0"
            ])
            .action,
            Action::Change(Request::SetTarget {
                name: "ov0".into(),
                mac,
                dest: TargetDest::Valid("[fd00::2]:4789".parse().expect("addr"))
            })
        );
    }

    #[test]
    fn show_overlay_resolves_table_fields_and_format() {
        let i = ok(&["show-overlay"]);
        assert_eq!(
            i.action,
            Action::Show {
                request: Request::ShowProps { name: None },
                table: ShowTable::Props,
                fields: (0..7).collect(),
                format: Format::Human
            }
        );
        let i = ok(&[
            "show-overlay",
            "-t",
            "-p",
            "-o",
            "target,destination",
            "ov0",
        ]);
        assert_eq!(
            i.action,
            Action::Show {
                request: Request::ShowTargets {
                    name: Some("ov0".into()),
                    cursor: None,
                    limit: None
                },
                table: ShowTable::Targets,
                fields: vec![1, 2],
                format: Format::Parseable
            }
        );
        let i = ok(&["show-overlay", "-f", "--json"]);
        assert!(
            matches!(
                i.action,
                Action::Show {
                    table: ShowTable::Status,
                    format: Format::Json,
                    ..
                }
            ),
            "{i:?}"
        );
    }

    #[test]
    fn usage_errors_exit_2() {
        let e = usage(&["create-overlay", "-e", "vxlan", "-s", "direct", "ov0"]);
        assert_eq!(e.kind(), ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("-v"), "{e}");
        usage(&[
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "ten",
            "ov0",
        ]);
        usage(&["create-overlay", "-e", "vxlan", "-s", "direct", "-v", "1"]);
        let e = usage(&[
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "1",
            "-p",
            "mtu",
            "ov0",
        ]);
        assert!(e.to_string().contains("'mtu' is not PROP=VALUE"), "{e}");
        let e = usage(&[
            "create-overlay",
            "-e",
            "vxlan",
            "-s",
            "direct",
            "-v",
            "1",
            "-p",
            "mtu=1",
            "-p",
            "mtu=2",
            "ov0",
        ]);
        assert!(
            e.to_string()
                .contains("property 'mtu' is given more than once"),
            "{e}"
        );
        assert_eq!(
            usage(&["modify-overlay", "-d", "02:00:00:00:00:01", "-f", "ov0"]).kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage(&[
                "modify-overlay",
                "-f",
                "-s",
                "02:00:00:00:00:01=drop",
                "ov0"
            ])
            .kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage(&["modify-overlay", "ov0"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        usage(&["modify-overlay", "-f"]);
        usage(&["modify-overlay", "-d", "nonsense", "ov0"]);
        usage(&["modify-overlay", "-s", "02:00:00:00:00:01=10.0.0.1", "ov0"]);
        assert_eq!(
            usage(&["show-overlay", "-f", "-t"]).kind(),
            ErrorKind::ArgumentConflict
        );
        assert_eq!(
            usage(&["show-overlay", "-p"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        usage(&["show-overlay", "-p", "-o", "link", "--json"]);
        let e = usage(&["show-overlay", "-t", "-o", "link,status"]);
        assert!(
            e.to_string().contains(
                "unknown output field 'status': valid fields are link,target,destination"
            ),
            "{e}"
        );
        usage(&["delete-overlay"]);
        usage(&["frobnicate"]);
        usage(&[]);
    }

    #[test]
    fn create_vnic_builds_the_spec() {
        let i = ok(&[
            "create-vnic",
            "-l",
            "ov0",
            "-m",
            "02:77:01:00:00:01",
            "--netns",
            "g1",
            "vnic1",
        ]);
        assert_eq!(
            i.action,
            Action::Change(Request::CreateVnic {
                spec: VnicSpec {
                    name: "vnic1".into(),
                    over: "ov0".into(),
                    mac: Some("02:77:01:00:00:01".parse().expect("mac")),
                    netns: Some("g1".into()),
                }
            })
        );
        for args in [
            &["create-vnic", "-l", "ov0", "v"][..],
            &["create-vnic", "-l", "ov0", "-m", "RANDOM", "v"][..],
        ] {
            let Action::Change(Request::CreateVnic { spec }) = ok(args).action else {
                panic!("{args:?}")
            };
            assert_eq!((spec.mac, spec.netns), (None, None));
        }
        assert_eq!(
            ok(&["delete-vnic", "v"]).action,
            Action::Change(Request::DeleteVnic { name: "v".into() })
        );
    }

    #[test]
    fn mappings_by_hand_go_to_varpd() {
        let m: Mac = "02:00:00:00:00:07".parse().unwrap();
        assert_eq!(
            ok(&[
                "set-mapping",
                "-m",
                "02:00:00:00:00:07",
                "-d",
                "10.0.0.3:4789",
                "-a",
                "fd00::7",
                "ov0"
            ])
            .action,
            Action::Varpd(VarpdRequest::SetMapping {
                overlay: "ov0".into(),
                mac: m,
                dest: Some("10.0.0.3:4789".parse().unwrap()),
                ip: Some("fd00::7".parse().unwrap()),
            })
        );
        assert_eq!(
            ok(&["remove-mapping", "-a", "192.168.0.7", "ov0"]).action,
            Action::Varpd(VarpdRequest::RemoveMapping {
                overlay: "ov0".into(),
                mac: None,
                ip: Some("192.168.0.7".parse().unwrap()),
            })
        );
        // Something to set, and to remove, is required.
        usage(&["set-mapping", "-m", "02:00:00:00:00:07", "ov0"]);
        usage(&["remove-mapping", "ov0"]);
        usage(&[
            "set-mapping",
            "-m",
            "02:00:00:00:00:07",
            "-d",
            "10.0.0.3",
            "ov0",
        ]);
    }

    #[test]
    fn create_vnic_usage_errors() {
        let e = usage(&["create-vnic", "-l", "ov0", "-m", "01:00:5e:00:00:01", "v"]);
        assert!(e.to_string().contains("group (multicast) address"), "{e}");
        let e = usage(&["create-vnic", "-l", "ov0", "-m", "nonsense", "v"]);
        assert!(
            e.to_string().contains("invalid MAC address 'nonsense'"),
            "{e}"
        );
        assert_eq!(
            usage(&["create-vnic", "v"]).kind(),
            ErrorKind::MissingRequiredArgument
        );
        usage(&["create-vnic", "-l", "ov0"]);
        usage(&["delete-vnic"]);
    }

    #[test]
    fn show_vnic_resolves_fields() {
        assert_eq!(
            ok(&["show-vnic"]).action,
            Action::Show {
                request: Request::ShowVnics { name: None },
                table: ShowTable::Vnics,
                fields: (0..6).collect(),
                format: Format::Human
            }
        );
        assert_eq!(
            ok(&["show-vnic", "-s", "-p", "-o", "link,opackets", "v"]).action,
            Action::VnicStats {
                name: Some("v".into()),
                fields: vec![0, 3],
                format: Format::Parseable
            }
        );
        assert!(matches!(
            ok(&["show-vnic", "-s", "-o", "all"]).action,
            Action::VnicStats { ref fields, .. } if fields.len() == 6
        ));
        let e = usage(&["show-vnic", "-o", "link,ipackets"]);
        assert!(
            e.to_string().contains("unknown output field 'ipackets'"),
            "{e}"
        );
        usage(&["show-vnic", "-p"]);
    }

    #[test]
    fn clap_definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
