#!/bin/bash
# ovadm's peak memory while it dumps a large target table from a real overlayd:
#   sudo lab/dump_rss.sh [ENTRIES...]        (default: 1000000 10000000)
# For each size: a fresh overlayd in a namespace of its own (no varpd: the table is filled by
# pipelined set-target requests, as a bulk loader would), then `ovadm show-overlay -t -p` and
# `--json` to /dev/null under /usr/bin/time, which prints the peak RSS (maximum resident set).
# Everything it makes (namespace, overlayd, temp dir) goes on exit, also on failure.
set -euo pipefail
BIN=${BIN:-$PWD/target/release}
SIZES=("${@:-1000000 10000000}")
read -r -a SIZES <<<"${SIZES[*]}"
[[ $(id -u) == 0 ]] || { echo "dump_rss: needs root (a network namespace)" >&2; exit 1; }
for b in overlayd ovadm; do [[ -x $BIN/$b ]] || { echo "dump_rss: no $BIN/$b: make build first" >&2; exit 1; }; done
NS=ovrss$$; T=$(mktemp -d /tmp/ovrss.XXXXXX); PID=
cleanup() { [[ -n $PID ]] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; ip netns del "$NS" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
ip netns add "$NS"; ip -n "$NS" link set lo up
ovadm() { ip netns exec "$NS" "$BIN/ovadm" --run-dir "$T/run" "$@"; }
for n in "${SIZES[@]}"; do
  rm -rf "$T/run" "$T/state"; mkdir -p "$T/run" "$T/state"
  ip netns exec "$NS" "$BIN/overlayd" --workers 1 --run-dir "$T/run" --state-dir "$T/state" >"$T/overlayd.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do [[ -S $T/run/overlayd.sock ]] && break; sleep 0.05; done
  ovadm create-overlay -t -e vxlan -s direct -v 9 \
    -p vxlan/listen_ip=127.0.0.1,direct/dest_ip=127.0.0.2,direct/dest_port=4789,target/max_entries=$((n + 1)) ov0 2>/dev/null
  t0=$(date +%s.%N)
  python3 - "$T/run/overlayd.sock" "$n" <<'PY'
import socket, sys, threading
path, n = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_UNIX); s.connect(path)
def write():
    f = s.makefile("wb", buffering=1 << 20)
    for i in range(n):
        mac = "02:55:%02x:%02x:%02x:%02x" % (i >> 24 & 255, i >> 16 & 255, i >> 8 & 255, i & 255)
        f.write(b'{"op":"set-target","name":"ov0","mac":"%s","dest":{"state":"valid","addr":"10.55.%d.%d:4789"}}\n' % (mac.encode(), i >> 8 & 255, i & 255))
    f.flush()
w = threading.Thread(target=write); w.start()
r = s.makefile("rb", buffering=1 << 20); bad = 0
for _ in range(n):
    if not r.readline().startswith(b'{"reply":"ok"'): bad += 1
w.join()
if bad: sys.exit(f"{bad} set-target requests refused")
PY
  t1=$(date +%s.%N)
  for how in "-p -o target,destination" "--json"; do
    # shellcheck disable=SC2086
    /usr/bin/time -f "%M %e" -o "$T/time" ip netns exec "$NS" "$BIN/ovadm" --run-dir "$T/run" show-overlay -t $how ov0 >"$T/out"
    read -r kb secs <"$T/time"
    rows=$(if [[ $how == --json ]]; then grep -o '"target"' "$T/out" | wc -l; else wc -l <"$T/out"; fi)
    printf 'entries %9d  set in %5.1f s  show-overlay -t %-26s rows %9d  %6.1f s  ovadm peak RSS %7.1f MB\n' \
      "$n" "$(echo "$t1 - $t0" | bc)" "$how" "$rows" "$secs" "$(echo "scale=1; $kb / 1024" | bc)"
  done
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
done
