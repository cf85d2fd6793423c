//! What the tshark-oracle tests share: running ovsnoop and `tshark -T
//! fields` on one capture, and comparing them frame by frame, field by
//! field.

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// `ovsnoop -r FILE ARGS --run-dir /nonexistent` (no VNI names): its
/// standard output; panics unless it succeeds.
pub fn ovsnoop(file: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ovsnoop"))
        .arg("-r")
        .arg(file)
        .args(args)
        .args(["--run-dir", "/nonexistent"])
        .output()
        .expect("running ovsnoop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ovsnoop --json` on `file`: one object per frame.
pub fn ovsnoop_json(file: &Path, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    ovsnoop(file, &a)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ovsnoop --json writes JSON lines"))
        .collect()
}

/// `tshark -r FILE ARGS -T fields -e F...`: per frame, per field, its
/// occurrences in order (booleans as 0/1, as ovsnoop writes them).
pub fn tshark_fields(file: &Path, args: &[&str], fields: &[&str]) -> Vec<Vec<Vec<String>>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(args)
        .args(["-T", "fields", "-E", "separator=/t"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let t = cmd.output().expect("tshark runs");
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    String::from_utf8_lossy(&t.stdout)
        .lines()
        .map(|l| {
            l.split('\t')
                .map(|v| {
                    v.split(',')
                        .filter(|x| !x.is_empty())
                        .map(|x| match x {
                            "True" => "1".to_string(),
                            "False" => "0".to_string(),
                            x => x.to_string(),
                        })
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Holds ovsnoop's frames against tshark's rows: as many frames, and for
/// each field ovsnoop's occurrences first in tshark's (tshark also decodes
/// the packet quoted inside an ICMP error: its extra occurrences come
/// after), every field seen at least once. Returns the `error` of every
/// frame that had one.
pub fn compare(
    objs: &[Value],
    rows: &[Vec<Vec<String>>],
    fields: &[&str],
    expected: impl Fn(&Value) -> Vec<Vec<String>>,
) -> Vec<String> {
    assert_eq!(
        objs.len(),
        rows.len(),
        "ovsnoop and tshark disagree on the number of frames"
    );
    let mut seen = BTreeSet::new();
    let mut errors = Vec::new();
    for (i, (o, row)) in objs.iter().zip(rows).enumerate() {
        if let Some(e) = o.get("error") {
            errors.push(e.as_str().unwrap_or_default().to_string());
        }
        let want = expected(o);
        for (k, name) in fields.iter().enumerate() {
            let got = &row[k];
            assert!(
                got.len() >= want[k].len() && got[..want[k].len()] == want[k][..],
                "frame {}: {name}: ovsnoop {:?}, tshark {:?}\n{o}",
                i + 1,
                want[k],
                got
            );
            if !want[k].is_empty() {
                seen.insert(*name);
            }
        }
    }
    assert_eq!(
        seen.len(),
        fields.len(),
        "some fields never occurred: {seen:?}"
    );
    errors
}
