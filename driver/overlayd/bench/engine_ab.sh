#!/usr/bin/env bash
# What a compiled-in but idle feature costs the forwarding engine: the
# engine's frame path timed in-process (datapath::tests::engine_ns_per_frame,
# ignored in `cargo test`) in two builds of overlayd's unit tests, the default
# (everything in) and one without FEATURE, run alternately ROUNDS times.
# Prints each run, the medians and the ratios compiled-in/compiled-out, for a
# drop-entry frame (no I/O: the cheapest path, where one more load weighs
# most) and a target-table hit (encapsulated, sent in batches of 32).
#
#   engine_ab.sh capture [ROUNDS]   # the capture point, off (make bench-capture-engine)
#   engine_ab.sh probes [ROUNDS]    # the USDT probes, disabled (make bench-probes)
set -euo pipefail
cd "$(dirname "$0")/../../.."
FEATURE=${1:?usage: engine_ab.sh capture|probes [ROUNDS]}
ROUNDS=${2:-7}
CARGO=${CARGO:-cargo}
case $FEATURE in
capture) KEEP=probes ;;
probes) KEEP=capture ;;
*) echo "engine_ab: no feature '$FEATURE' (capture or probes)" >&2; exit 2 ;;
esac
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
OUT=$(build "target/no$FEATURE" --no-default-features --features "$KEEP")
[ -n "$IN" ] && [ -n "$OUT" ] || { echo "engine_ab: cannot build the unit tests" >&2; exit 1; }
run() { "$1" --ignored --exact datapath::tests::engine_ns_per_frame --nocapture 2>/dev/null | sed -n 's/^engine_ns_per_frame: drop \([0-9.]*\) hit \([0-9.]*\).*/\1 \2/p'; }
printf 'round  drop-in  drop-out  hit-in  hit-out   (ns per frame; %s compiled in, idle / compiled out)\n' "$FEATURE"
rows="${TMPDIR:-/tmp}/engine_ab.$$"
trap 'rm -f "$rows"' EXIT
: >"$rows"
for r in $(seq 1 "$ROUNDS"); do
	if (( r % 2 )); then a=$(run "$IN"); b=$(run "$OUT"); else b=$(run "$OUT"); a=$(run "$IN"); fi
	set -- $a $b
	printf '%5d  %7.1f  %8.1f  %6.1f  %7.1f\n' "$r" "$1" "$3" "$2" "$4"
	echo "$1 $3 $2 $4" >>"$rows"
done
python3 - "$rows" "$FEATURE" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = lambda i: statistics.median(r[i] for r in rows)
rat = lambda i, j: statistics.median(r[i] / r[j] for r in rows)
print(f"median {med(0):7.1f}  {med(1):8.1f}  {med(2):6.1f}  {med(3):7.1f}")
print(f"drop path: {sys.argv[2]} compiled in, idle / compiled out = {rat(0, 1):.3f} (median of per-round ratios)")
print(f"hit path:  {sys.argv[2]} compiled in, idle / compiled out = {rat(2, 3):.3f}")
PY
