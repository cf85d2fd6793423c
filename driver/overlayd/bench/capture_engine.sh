#!/usr/bin/env bash
# What the capture point costs the forwarding engine while no capture runs:
# the engine's frame path timed in-process (datapath::tests::engine_ns_per_frame,
# ignored in `cargo test`) in two builds of overlayd's unit tests, with the
# capture point (default features) and without it (--no-default-features
# --features probes), run alternately ROUNDS times (default 7). Prints each
# run, the medians and the ratios compiled-in/compiled-out, for a drop-entry
# frame (no I/O: the cheapest path, where one more load weighs most) and a
# target-table hit (encapsulated, sent in batches of 32).
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROUNDS=${1:-7}
CARGO=${CARGO:-cargo}
build() { # target-dir features... -> path of the unit-test binary
	local dir=$1; shift
	$CARGO test --release -p overlayd --bin overlayd --no-run --target-dir "$dir" "$@" \
		--message-format=json 2>/dev/null |
		python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "overlayd" and m["profile"]["test"]:
        print(m["executable"])'
}
IN=$(build target)
OUT=$(build target/nocapture --no-default-features --features probes)
[ -n "$IN" ] && [ -n "$OUT" ] || { echo "capture_engine: cannot build the unit tests" >&2; exit 1; }
run() { "$1" --ignored --exact datapath::tests::engine_ns_per_frame --nocapture 2>/dev/null | sed -n 's/^engine_ns_per_frame: drop \([0-9.]*\) hit \([0-9.]*\).*/\1 \2/p'; }
printf 'round  drop-in  drop-out  hit-in  hit-out   (ns per frame)\n'
: >"${TMPDIR:-/tmp}/capture_engine.$$"
for r in $(seq 1 "$ROUNDS"); do
	if (( r % 2 )); then a=$(run "$IN"); b=$(run "$OUT"); else b=$(run "$OUT"); a=$(run "$IN"); fi
	set -- $a $b
	printf '%5d  %7.1f  %8.1f  %6.1f  %7.1f\n' "$r" "$1" "$3" "$2" "$4"
	echo "$1 $3 $2 $4" >>"${TMPDIR:-/tmp}/capture_engine.$$"
done
python3 - "${TMPDIR:-/tmp}/capture_engine.$$" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = lambda i: statistics.median(r[i] for r in rows)
rat = lambda i, j: statistics.median(r[i] / r[j] for r in rows)
print(f"median {med(0):7.1f}  {med(1):8.1f}  {med(2):6.1f}  {med(3):7.1f}")
print(f"drop path: compiled in, off / compiled out = {rat(0, 1):.3f} (median of per-round ratios)")
print(f"hit path:  compiled in, off / compiled out = {rat(2, 3):.3f}")
PY
rm -f "${TMPDIR:-/tmp}/capture_engine.$$"
