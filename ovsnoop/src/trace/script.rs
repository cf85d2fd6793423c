//! The bpftrace program of `--trace`, generated from the provider
//! definitions `probes/overlay.d` and `probes/varpd.d`.
//!
//! dtrace-parser reads each probe's name and argument types; the names of
//! the arguments come from the comment after each probe (`/* overlay, vni,
//! src, dst, len */`), which the D files keep for exactly this. For every
//! probe ovsnoop follows, the program prints one tab-separated line:
//! `OVSNOOP <provider> <probe> <nsecs> <arg0> <arg1> ...`, each argument
//! formatted by its D type (`char *` with `str(argN)`, integers with `%d`
//! or `%u`). So a probe gaining an argument at the end changes nothing
//! here, and one that loses or renames an argument ovsnoop needs is an
//! error at start-up, naming the probe, not a wrong trace.

use dtrace_parser::{DataType, Sign};
use std::fmt::Write;

/// The provider definitions, as built into the daemons.
pub const OVERLAY_D: &str = include_str!("../../../probes/overlay.d");
/// The varpd provider's definitions.
pub const VARPD_D: &str = include_str!("../../../probes/varpd.d");

/// What every line of the program starts with.
pub const TAG: &str = "OVSNOOP";

/// One argument of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arg {
    /// Its name, from the D file's comment.
    pub name: String,
    /// Whether it is a string (`char *`); otherwise an integer.
    pub string: bool,
    /// For integers, whether signed.
    pub signed: bool,
}

/// One probe of a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Provider (`overlay`, `varpd`).
    pub provider: String,
    /// Name as traces spell it (`target-miss`).
    pub name: String,
    /// Arguments, in order.
    pub args: Vec<Arg>,
}

/// Why a program cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The D file does not parse.
    #[error("probes/{file}: {detail}")]
    Parse {
        /// Which file.
        file: &'static str,
        /// The parser's message.
        detail: String,
    },
    /// A probe ovsnoop follows is missing, or lacks an argument it reads.
    #[error("probes/{file}: probe {probe} {detail} (ovsnoop --trace reads it)")]
    Probe {
        /// Which file.
        file: &'static str,
        /// The probe.
        probe: String,
        /// What is wrong.
        detail: String,
    },
}

/// The argument names in the comment after `probe NAME(...);`, by the
/// D name of the probe (`target__miss`).
fn arg_names(text: &str) -> Vec<(String, Vec<String>)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("probe ")?;
            let name = rest.split('(').next()?.trim().to_string();
            let comment = rest.split("/*").nth(1)?.split("*/").next()?;
            let names = comment
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            Some((name, names))
        })
        .collect()
}

/// Every probe of the D file `text` (named `file` in errors).
pub fn probes(file: &'static str, text: &str) -> Result<Vec<Probe>, ScriptError> {
    let parsed = dtrace_parser::File::try_from(text).map_err(|e| ScriptError::Parse {
        file,
        detail: e.to_string(),
    })?;
    let names = arg_names(text);
    let mut out = Vec::new();
    for prov in parsed.providers() {
        for p in &prov.probes {
            let arg_names = names
                .iter()
                .find(|(n, _)| *n == p.name)
                .map(|(_, a)| a.clone())
                .unwrap_or_default();
            let args = p
                .types
                .iter()
                .enumerate()
                .map(|(i, t)| Arg {
                    name: arg_names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| format!("arg{i}")),
                    string: matches!(t, DataType::String),
                    signed: matches!(t, DataType::Integer(n) if n.sign == Sign::Signed),
                })
                .collect();
            out.push(Probe {
                provider: prov.name.clone(),
                name: p.name.replace("__", "-"),
                args,
            });
        }
    }
    Ok(out)
}

/// The probes `--trace` follows, and the arguments it reads from each, per
/// provider.
pub const OVERLAY_WANTS: &[(&str, &[&str])] = &[
    ("tx", &["overlay", "vni", "src", "dst", "len"]),
    ("rx", &["overlay", "vni", "src", "dst", "len", "peer"]),
    ("encap", &["overlay", "vni", "dst", "ip", "port", "len"]),
    ("drop", &["overlay", "vni", "reason", "len"]),
    ("target-hit", &["overlay", "mac", "dest"]),
    ("target-miss", &["overlay", "mac", "new_entry"]),
    ("target-queue-overflow", &["overlay", "mac", "queued_bytes"]),
    ("lookup-request", &["overlay", "mac", "id", "bcast"]),
    ("lookup-reply", &["overlay", "mac", "result", "ns"]),
    ("inject", &["overlay", "vni", "src", "dst", "len"]),
];

/// varpd's probes that `--trace` follows.
pub const VARPD_WANTS: &[(&str, &[&str])] = &[
    ("proxy-arp", &["overlay", "requester", "ip", "mac"]),
    ("proxy-ndp", &["overlay", "requester", "ip", "mac"]),
    ("proxy-dhcp", &["overlay", "requester", "result"]),
];

/// The probes of `all` named in `wants`, checked to carry the arguments
/// `wants` reads.
pub fn select(
    file: &'static str,
    all: &[Probe],
    wants: &[(&str, &[&str])],
) -> Result<Vec<Probe>, ScriptError> {
    wants
        .iter()
        .map(|(name, args)| {
            let p = all
                .iter()
                .find(|p| p.name == *name)
                .ok_or_else(|| ScriptError::Probe {
                    file,
                    probe: name.to_string(),
                    detail: "is not defined".into(),
                })?;
            for a in *args {
                if !p.args.iter().any(|x| x.name == *a) {
                    return Err(ScriptError::Probe {
                        file,
                        probe: name.to_string(),
                        detail: format!("has no argument named {a}"),
                    });
                }
            }
            Ok(p.clone())
        })
        .collect()
}

/// The bpftrace program for `probes`, fired by the binary `bin`.
pub fn program(bin: &str, probes: &[Probe]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "BEGIN {{ printf(\"{TAG}\\tready\\n\"); }}");
    for p in probes {
        let mut fmt = format!("{TAG}\\t{}\\t{}\\t%u", p.provider, p.name);
        let mut vals = vec!["nsecs".to_string()];
        for (i, a) in p.args.iter().enumerate() {
            if a.string {
                fmt.push_str("\\t%s");
                vals.push(format!("str(arg{i})"));
            } else {
                fmt.push_str(if a.signed { "\\t%d" } else { "\\t%u" });
                vals.push(format!("arg{i}"));
            }
        }
        let _ = writeln!(
            s,
            "usdt:{bin}:{}:{} {{ printf(\"{fmt}\\n\", {}); }}",
            p.provider,
            p.name,
            vals.join(", ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_d_files_give_every_probe_ovsnoop_reads() {
        let o = probes("overlay.d", OVERLAY_D).unwrap();
        let sel = select("overlay.d", &o, OVERLAY_WANTS).unwrap();
        assert_eq!(sel.len(), OVERLAY_WANTS.len());
        let tx = &sel[0];
        assert_eq!(tx.name, "tx");
        let names: Vec<_> = tx.args.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["overlay", "vni", "src", "dst", "len"]);
        assert!(tx.args[0].string && !tx.args[1].string && !tx.args[1].signed);
        let v = probes("varpd.d", VARPD_D).unwrap();
        select("varpd.d", &v, VARPD_WANTS).unwrap();
    }

    #[test]
    fn program_prints_each_argument_by_type() {
        let o = probes("overlay.d", OVERLAY_D).unwrap();
        let sel = select("overlay.d", &o, &[("drop", &["reason"])]).unwrap();
        let prog = program("/usr/bin/overlayd", &sel);
        assert!(
            prog.contains(
                "usdt:/usr/bin/overlayd:overlay:drop { printf(\"OVSNOOP\\toverlay\\tdrop\\t%u\\t%s\\t%u\\t%s\\t%u\\n\", nsecs, str(arg0), arg1, str(arg2), arg3); }"
            ),
            "{prog}"
        );
        assert!(prog.starts_with("BEGIN"), "{prog}");
    }

    #[test]
    fn a_missing_argument_is_named() {
        let d = "provider overlay {\n\tprobe drop(char *, uint32_t);\t/* overlay, vni */\n};\n";
        let p = probes("overlay.d", d).unwrap();
        let e = select("overlay.d", &p, &[("drop", &["overlay", "reason"])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("probe drop has no argument named reason"), "{e}");
        let e = select("overlay.d", &p, &[("tx", &[])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("probe tx is not defined"), "{e}");
    }
}
