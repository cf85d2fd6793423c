#!/bin/bash
# ovsnoop/bench/bench.sh [ROUNDS] — `make bench-ovsnoop`: ovsnoop's default one-line output of a
# 1,000,000-frame VXLAN capture against `tcpdump -n -r` on the same file, both to /dev/null,
# alternating, ROUNDS (default 5) times each. Prints every time, the medians and their ratio
# (tcpdump / ovsnoop: above 1 means ovsnoop is faster; the goal is at least 2).
# The capture is generated deterministically by ovsnoop/examples/gen_capture.rs into
# target/bench/vxlan-1m.pcap (not in git). Needs tcpdump (lab/deps.sh installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rounds=${1:-5}
command -v tcpdump >/dev/null || { echo "bench-ovsnoop: tcpdump is missing (apt-get install tcpdump)" >&2; exit 1; }
cargo build --release -q -p ovsnoop --bin ovsnoop --example gen_capture
mkdir -p target/bench
file=target/bench/vxlan-1m.pcap
target/release/examples/gen_capture "$file" 1000000
frames=$(target/release/ovsnoop -r "$file" --run-dir /nonexistent 2>&1 >/dev/null | sed -n 's/^ovsnoop: \([0-9]*\) frames.*/\1/p')
echo "capture: $file, $frames frames, $(du -h "$file" | cut -f1)"

# Wall-clock seconds of one run of "$@", output to /dev/null.
secs() {
  local t0 t1
  t0=$(date +%s%N)
  "$@" >/dev/null 2>&1
  t1=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}

median() { sort -n | awk '{a[NR]=$1} END {printf "%.3f\n", (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

o=() t=()
for ((i = 1; i <= rounds; i++)); do
  o+=("$(secs target/release/ovsnoop -r "$file" --run-dir /nonexistent)")
  t+=("$(secs tcpdump -n -r "$file")")
  echo "round $i: ovsnoop ${o[-1]} s, tcpdump -n -r ${t[-1]} s"
done
mo=$(printf '%s\n' "${o[@]}" | median)
mt=$(printf '%s\n' "${t[@]}" | median)
ratio=$(awk -v t="$mt" -v o="$mo" 'BEGIN { printf "%.2f", t / o }')
echo "median: ovsnoop $mo s, tcpdump -n -r $mt s; tcpdump/ovsnoop = ${ratio}x"
