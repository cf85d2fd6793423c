//! overlayd's modules import each other without cycles: the forwarding
//! engine reaches an overlay only through the `Port` trait, and the
//! event loop's state (`daemon.rs`) is imported by the modules that work
//! on it, never the other way round. This reads the sources, so a cycle
//! added later fails here, without root. Unit-test modules are left out
//! (they may use the test kit, which stands on the daemon).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module → the modules it names as `crate::module`.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = BTreeMap::new();
    for e in std::fs::read_dir(&src).expect("src/") {
        let p = e.expect("an entry").path();
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let name = p.file_stem().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&p).expect("a source file");
        let mut uses = BTreeSet::new();
        // Unit tests (from `mod tests` on) may use the test kit, which
        // stands on the daemon: they are not part of the module map.
        let code = text
            .lines()
            .take_while(|l| l.trim() != "mod tests {")
            .filter(|l| !l.trim_start().starts_with("//"));
        for line in code {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                rest = &rest[i + 7..];
                let m: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !m.is_empty() && m != name {
                    uses.insert(m);
                }
            }
        }
        g.insert(name, uses);
    }
    g
}

#[test]
fn overlayds_modules_import_each_other_without_cycles() {
    let g = graph();
    assert!(g.len() > 10, "found the modules: {:?}", g.keys());
    for start in g.keys() {
        // Depth-first from each module: reaching it again is a cycle.
        let mut path = vec![start.clone()];
        let mut stack = vec![(start.clone(), g[start].iter().cloned().collect::<Vec<_>>())];
        let mut seen = BTreeSet::new();
        while let Some((_, next)) = stack.last_mut() {
            let Some(m) = next.pop() else {
                stack.pop();
                path.pop();
                continue;
            };
            assert!(
                m != *start,
                "an import cycle: {} -> {start}",
                path.join(" -> ")
            );
            if seen.insert(m.clone()) {
                let deps = g
                    .get(&m)
                    .map(|d| d.iter().cloned().collect())
                    .unwrap_or_default();
                path.push(m.clone());
                stack.push((m, deps));
            }
        }
    }
    assert!(g["daemon"].contains("datapath") && !g["datapath"].contains("daemon"));
}
