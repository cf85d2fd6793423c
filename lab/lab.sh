#!/bin/bash
# lab.sh: a multi-host overlay lab in network namespaces, for trying the overlay by hand.
#
#   lab.sh up [HOSTS]   bring up HOSTS hosts (default $HOSTS, else 2; 1..99), each with $GUESTS guests
#                       (default 1; 0..99), taking down any lab first
#   lab.sh down         remove the lab whole: its processes, namespaces and /run/ovlab (idempotent)
#   lab.sh status       show what runs; exit 0 only if a lab is up and healthy
#
# `make lab [HOSTS=N]`, `make lab-down` and `make lab-status` call this after building. Run as root.
#
# Layout. Hosts are namespaces ovlab-h1 .. ovlab-hN; a bridge br0 in namespace ovlab-sw joins them
# (one veth each: ul0 in the host, port hN on the bridge). Host N has:
#   underlay   10.77.0.N/24 on ul0
#   daemons    overlayd and varpd, run dir /run/ovlab/hN/run, state /run/ovlab/hN/state,
#              logs /run/ovlab/hN/{overlayd,varpd}.log, pid files /run/ovlab/hN/{overlayd,varpd}.pid
#   overlay    ov0, VNI 4242, files plugin with the one shared config /run/ovlab/files.json,
#              MAC 02:77:00:00:00:NN (N as two digits), 192.168.77.N/24 and fd77::N/64
# BACKEND=etcd (default files): ov0 uses the etcd plugin instead, on one etcd (the etcd-server
# package) in namespace ovlab-etcd on the bridge, 10.77.0.250, data in /run/ovlab/etcd, log
# /run/ovlab/etcd.log; no files config. Hosts and guests register themselves: guests announce
# their addresses (gratuitous ARP on link-up, IPv6 duplicate address detection).
# Guests. Each host N carries GUESTS guests K = 1..GUESTS, each a namespace ovlab-hN-gK holding a
# VNIC (a macvlan over ov0, made by `ovadm create-vnic --netns`) named vnicK, with
#   MAC 02:77:NN:00:00:KK (N and K as two digits), 10.78.N.K/16 and fd78::N:K/64
# Guests of one host talk through the kernel's macvlan bridge; guests of different hosts over the
# overlay, like the hosts. The files config lists every host's ov0 and every guest.
# No namespace has a default route, so nothing typed in the lab can leave it.
#
# One overlay-exporter serves the metrics of every host: it runs in the root namespace (it only
# reads the hosts' control sockets, as files) with one --run-dir per host, labelled host="hN", and
# listens on $EXPORTER_LISTEN (default 127.0.0.1:9477); pid /run/ovlab/exporter.pid, log
# /run/ovlab/exporter.log.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${OVERLAY_BIN_DIR:-$ROOT/target/release}
STATE=/run/ovlab
SW=ovlab-sw
VNI=4242
EXPORTER_LISTEN=${EXPORTER_LISTEN:-127.0.0.1:9477}
BACKEND=${BACKEND:-files}
ETCD_NS=ovlab-etcd
ETCD_IP=10.77.0.250
ETCD_URL=http://$ETCD_IP:2379

say() { echo "lab: $*"; }
die() { echo "lab: error: $*" >&2; exit 1; }

host_ns() { echo "ovlab-h$1"; }
host_mac() { printf '02:77:00:00:00:%02d' "$1"; }
guest_ns() { echo "ovlab-h$1-g$2"; }
guest_mac() { printf '02:77:%02d:00:00:%02d' "$1" "$2"; }
ovadm() { local n=$1; shift; "$BIN/ovadm" --run-dir "$STATE/h$n/run" "$@"; }

# Every lab namespace that exists now (hosts of any count, and the switch).
lab_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^ovlab-(sw|etcd|h[0-9]+|h[0-9]+-g[0-9]+)$' || true; }

# Host numbers of the lab that is up, from its namespaces.
lab_hosts() { lab_namespaces | sed -n 's/^ovlab-h\([0-9]*\)$/\1/p' | sort -n; }

# Guests of host N of the lab that is up, from their namespaces.
lab_guests() { lab_namespaces | sed -n "s/^ovlab-h$1-g//p" | sort -n; }

# pid_alive PID: the process exists and is not a zombie (a zombie has let go of everything).
pid_alive() { [[ -e /proc/$1 ]] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# alive PID...: those of the PIDs still running.
alive() { local p; for p in "$@"; do if pid_alive "$p"; then echo "$p"; fi; done; }

# present PID...: those of the PIDs that still exist at all, zombies included.
present() { local p; for p in "$@"; do if [[ -e /proc/$p ]]; then echo "$p"; fi; done; }

# The lab's processes: those named by its pid files (only if they still run one of its daemons:
# a pid may have been reused since) and everything inside its namespaces.
lab_pids() {
  local f p n
  for f in "$STATE"/h*/*.pid "$STATE"/exporter.pid "$STATE"/etcd.pid; do
    [[ -f $f ]] || continue
    p=$(<"$f")
    [[ $p =~ ^[0-9]+$ ]] || continue
    if [[ $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) == *"-dir $STATE/"* ]]; then echo "$p"; fi
  done
  for n in $(lab_namespaces); do ip netns pids "$n" 2>/dev/null || true; done
}

# wait_empty SECONDS FUNC PID...: until FUNC (alive or present) lists none of the PIDs; prints
# those left when time is up.
wait_empty() {
  local t=$(($1 * 10)) f=$2 left; shift 2
  while :; do
    left=$("$f" "$@")
    [[ -z $left ]] && return 0
    ((t-- > 0)) || break
    sleep 0.1
  done
  echo "$left"
}

cmd_down() {
  local all=() left=()
  # TERM first so the daemons can remove their TAP devices and sockets; KILL whatever still runs
  # after 5 s (and whatever appeared in the namespaces meanwhile, such as a shell someone left
  # there); then wait until every one is gone from the process table, zombies reaped too, so that
  # a `pgrep` right after sees none of them.
  mapfile -t all < <(lab_pids | grep -E '^[0-9]+$' | sort -un)
  if ((${#all[@]})); then
    kill -TERM "${all[@]}" 2>/dev/null || true
    wait_empty 5 alive "${all[@]}" >/dev/null
    mapfile -t all < <({ printf '%s\n' "${all[@]}"; lab_pids; } | grep -E '^[0-9]+$' | sort -un)
    mapfile -t left < <(alive "${all[@]}")
    if ((${#left[@]})); then kill -KILL "${left[@]}" 2>/dev/null || true; fi
    mapfile -t left < <(wait_empty 10 present "${all[@]}")
    if ((${#left[@]})); then echo "lab: warning: processes not reaped after SIGKILL: ${left[*]}" >&2; fi
  fi
  local n
  for n in $(lab_namespaces); do ip netns del "$n" || die "cannot delete namespace $n"; done
  rm -rf "$STATE"
  say "down"
}

# start_daemon N NAME: NAME (overlayd or varpd) inside host N, detached from whoever started us
# (its own session, SIGHUP ignored, no terminal, output to its log) so it outlives `make`. `ip
# netns exec` execs the daemon in place, so $! is the daemon's own pid.
start_daemon() {
  local n=$1 d=$2 dir="$STATE/h$1"
  setsid nohup ip netns exec "$(host_ns "$n")" "$BIN/$d" --run-dir "$dir/run" --state-dir "$dir/state" \
    </dev/null >>"$dir/$d.log" 2>&1 &
  echo "$!" >"$dir/$d.pid"
}

# listening HOST:PORT: something accepts TCP connections there.
listening() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# start_exporter HOSTS: one overlay-exporter for hosts 1..HOSTS, detached like the daemons. Only a
# warning if it cannot serve (the address is taken, say): the overlays work without it.
start_exporter() {
  local hosts=$1 n args=() p
  for n in $(seq "$hosts"); do args+=(--run-dir "$STATE/h$n/run" --host "h$n"); done
  if listening "$EXPORTER_LISTEN"; then
    echo "lab: warning: $EXPORTER_LISTEN is taken: no exporter (set EXPORTER_LISTEN=127.0.0.1:PORT)" >&2
    return 0
  fi
  setsid nohup "$BIN/overlay-exporter" "${args[@]}" --listen "$EXPORTER_LISTEN" \
    </dev/null >>"$STATE/exporter.log" 2>&1 &
  p=$!
  echo "$p" >"$STATE/exporter.pid"
  for _ in $(seq 50); do
    listening "$EXPORTER_LISTEN" && pid_alive "$p" && return 0
    pid_alive "$p" || break
    sleep 0.1
  done
  tail -5 "$STATE/exporter.log" >&2
  echo "lab: warning: overlay-exporter is not serving $EXPORTER_LISTEN (log: $STATE/exporter.log)" >&2
}

# start_etcd: one etcd member in its own namespace on the bridge, detached like the daemons; waits
# until it answers (20 s), else shows its log and fails.
start_etcd() {
  command -v etcd >/dev/null || die "'etcd' is missing: install etcd-server (make deps)"
  command -v etcdctl >/dev/null || die "'etcdctl' is missing: install etcd-client (make deps)"
  ip netns add "$ETCD_NS"
  ip -n "$ETCD_NS" link set lo up
  ip link add ul0 netns "$ETCD_NS" type veth peer name etcd netns "$SW"
  ip -n "$SW" link set etcd master br0 up
  ip -n "$ETCD_NS" addr add "$ETCD_IP/24" dev ul0
  ip -n "$ETCD_NS" link set ul0 up
  setsid nohup ip netns exec "$ETCD_NS" etcd --name lab --data-dir "$STATE/etcd" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster lab=http://127.0.0.1:2380 </dev/null >>"$STATE/etcd.log" 2>&1 &
  echo "$!" >"$STATE/etcd.pid"
  for _ in $(seq 200); do
    etcdctl_lab endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -20 "$STATE/etcd.log" >&2
  die "etcd did not come up (log: $STATE/etcd.log)"
}

etcdctl_lab() { ETCDCTL_API=3 ip netns exec "$ETCD_NS" etcdctl --endpoints "$ETCD_URL" "$@"; }

# wait_socket N NAME: until NAME's control socket exists (10 s), else show its log and fail.
wait_socket() {
  local n=$1 d=$2 dir="$STATE/h$1"
  for _ in $(seq 100); do
    [[ -S "$dir/run/$d.sock" ]] && return 0
    pid_alive "$(<"$dir/$d.pid")" || break
    sleep 0.1
  done
  tail -20 "$dir/$d.log" >&2
  die "$d on h$n did not come up (log: $dir/$d.log)"
}

# wait_linked N: until varpd on host N has linked to overlayd (5 s), so that overlays are created
# with their search plugin at hand rather than DEGRADED for a moment. Only a warning if not.
wait_linked() {
  local n=$1
  for _ in $(seq 50); do
    # (Captured first: with pipefail, `grep -q` quitting early could fail the pipe.)
    [[ $(ovadm "$n" show-stats --json 2>/dev/null) =~ \"varpd_linked\":\ *true ]] && return 0
    sleep 0.1
  done
  echo "lab: warning: varpd on h$n has not linked to overlayd yet (log: $STATE/h$n/varpd.log)" >&2
}

cmd_up() {
  local hosts=${1:-${HOSTS:-2}} guests=${GUESTS:-1} n b k
  [[ $hosts =~ ^[1-9][0-9]?$ ]] || die "HOSTS must be a number from 1 to 99, not '$hosts'"
  [[ $guests =~ ^[0-9][0-9]?$ ]] || die "GUESTS must be a number from 0 to 99, not '$guests'"
  [[ $BACKEND == files || $BACKEND == etcd ]] || die "BACKEND must be files or etcd, not '$BACKEND'"
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces): sudo make lab"
  for b in overlayd varpd ovadm overlay-exporter; do
    [[ -x $BIN/$b ]] || die "$BIN/$b is missing: build first (make build)"
  done
  command -v ip >/dev/null || die "'ip' is missing: install iproute2 (make deps)"
  # A lab that is already up (or half up after a failure) goes first: `up` always starts clean.
  if [[ -n $(lab_namespaces) || -e $STATE ]]; then
    say "taking down the lab that is up"
    cmd_down >/dev/null
  fi
  # A failure half-way leaves nothing behind.
  trap 'echo "lab: up failed; taking down what was made" >&2; cmd_down >/dev/null 2>&1 || true' EXIT

  mkdir -p "$STATE"
  echo "$BACKEND" >"$STATE/backend"
  [[ $BACKEND == files ]] && {
    echo "{"
    for n in $(seq "$hosts"); do
      for k in $(seq "$guests"); do
        printf '  "%s": { "ip": "10.77.0.%d", "port": 4789, "arp": "10.78.%d.%d", "ndp": "fd78::%d:%d" },\n' \
          "$(guest_mac "$n" "$k")" "$n" "$n" "$k" "$n" "$k"
      done
      printf '  "%s": { "ip": "10.77.0.%d", "port": 4789, "arp": "192.168.77.%d", "ndp": "fd77::%d" }%s\n' \
        "$(host_mac "$n")" "$n" "$n" "$n" "$([[ $n == "$hosts" ]] || echo ,)"
    done
    echo "}"
  } >"$STATE/files.json"

  ip netns add "$SW"
  ip -n "$SW" link set lo up
  ip -n "$SW" link add br0 type bridge
  ip -n "$SW" link set br0 up
  [[ $BACKEND == etcd ]] && start_etcd
  for n in $(seq "$hosts"); do
    local ns; ns=$(host_ns "$n")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # The pair is made directly in the two namespaces: no name ever appears in the root namespace.
    ip link add ul0 netns "$ns" type veth peer name "h$n" netns "$SW"
    ip -n "$SW" link set "h$n" master br0 up
    ip -n "$ns" addr add "10.77.0.$n/24" dev ul0
    ip -n "$ns" link set ul0 up
    mkdir -p "$STATE/h$n/run" "$STATE/h$n/state"
    start_daemon "$n" overlayd
    start_daemon "$n" varpd
  done

  for n in $(seq "$hosts"); do
    local ns; ns=$(host_ns "$n")
    wait_socket "$n" overlayd
    wait_socket "$n" varpd
    wait_linked "$n"
    if [[ $BACKEND == etcd ]]; then
      ovadm "$n" create-overlay -e vxlan -s etcd -v "$VNI" \
        -p "vxlan/listen_ip=10.77.0.$n,etcd/endpoints=$ETCD_URL" ov0 >/dev/null
    else
      ovadm "$n" create-overlay -e vxlan -s files -v "$VNI" \
        -p "vxlan/listen_ip=10.77.0.$n,files/config=$STATE/files.json" ov0 >/dev/null
    fi
    ip -n "$ns" link set ov0 address "$(host_mac "$n")"
    # With etcd, guests announce themselves (gratuitous ARP on link-up, IPv6 DAD): that is what
    # the plugin learns their addresses from.
    if [[ $BACKEND == etcd ]]; then
      ip netns exec "$ns" sysctl -qw net.ipv4.conf.ov0.arp_notify=1
      ip -n "$ns" addr add "fd77::$n/64" dev ov0
    else
      ip -n "$ns" addr add "fd77::$n/64" dev ov0 nodad
    fi
    ip -n "$ns" addr add "192.168.77.$n/24" dev ov0
    ip -n "$ns" link set ov0 up
    for k in $(seq "$guests"); do
      local g; g=$(guest_ns "$n" "$k")
      ip netns add "$g"
      ip -n "$g" link set lo up
      ovadm "$n" create-vnic -l ov0 -m "$(guest_mac "$n" "$k")" --netns "$g" "vnic$k"
      if [[ $BACKEND == etcd ]]; then
        # Down first (it would flush IPv6 addresses): the guest announces itself on the way up.
        ip -n "$g" link set "vnic$k" down
        ip netns exec "$g" sysctl -qw "net.ipv4.conf.vnic$k.arp_notify=1"
        ip -n "$g" addr add "10.78.$n.$k/16" dev "vnic$k"
        ip -n "$g" addr add "fd78::$n:$k/64" dev "vnic$k"
        ip -n "$g" link set "vnic$k" up
      else
        ip -n "$g" addr add "10.78.$n.$k/16" dev "vnic$k"
        ip -n "$g" addr add "fd78::$n:$k/64" dev "vnic$k" nodad
      fi
    done
  done

  # varpd links to overlayd by itself; until it has, ov0 is DEGRADED. Give it a few seconds.
  local ok
  for _ in $(seq 50); do
    ok=1
    for n in $(seq "$hosts"); do
      [[ $(ovadm "$n" show-overlay -f ov0 2>/dev/null) == *ONLINE* ]] || { ok=0; break; }
    done
    ((ok)) && break
    sleep 0.1
  done
  start_exporter "$hosts"
  trap - EXIT

  cmd_status || true
  local peer=$((hosts > 1 ? 2 : 1)) ov="$BIN/ovadm --run-dir $STATE/h1/run"
  echo
  echo "Try:"
  hint "ip netns exec ovlab-h1 ping 192.168.77.$peer" "IPv4 (proxy ARP, lookups)"
  hint "ip netns exec ovlab-h1 ping fd77::$peer" "IPv6 (proxy NDP)"
  hint "$ov show-overlay -t" "h1's target table"
  hint "$ov show-overlay -f" "h1's overlay health"
  hint "$ov show-stats --json" "h1's counters"
  hint "ip netns exec ovlab-h$peer tshark -ni ul0 -f 'udp port 4789'" "VXLAN on h$peer's underlay"
  if ((guests > 0)); then
    hint "ip netns exec ovlab-h1-g1 ping 10.78.$peer.1" "guest to guest (VNICs)"
    hint "$ov show-vnic -s" "h1's VNIC counters"
  fi
  hint "ip netns exec ovlab-h1 bash" "a shell on h1"
  if [[ $BACKEND == etcd ]]; then
    hint "ETCDCTL_API=3 ip netns exec $ETCD_NS etcdctl --endpoints $ETCD_URL get --prefix /overlay/$VNI/" "the mappings in etcd"
  fi
  hint "curl -s http://$EXPORTER_LISTEN/metrics" "every host's metrics"
  hint "$BIN/ovstat --run-dir $STATE/h1/run 1" "h1's rates, vmstat-style"
  if [[ $BACKEND == etcd ]]; then
    echo "Logs: $STATE/hN/overlayd.log and varpd.log, $STATE/etcd.log; mappings in etcd at $ETCD_URL"
  else
    echo "Logs: $STATE/hN/overlayd.log and varpd.log; files config: $STATE/files.json"
  fi
  echo "Status: make lab-status    Take it down: make lab-down"
}

# hint COMMAND WHY: one line of the "try" list.
hint() { printf '  %-28s %s\n' "$2:" "$1"; }

cmd_status() {
  local hosts n ns d p bad=0
  hosts=$(lab_hosts)
  if [[ -z $hosts ]]; then
    say "no lab is up"
    return 1
  fi
  say "$(echo "$hosts" | wc -l) hosts on bridge br0 in $SW; state in $STATE"
  printf '%-10s %-13s %-18s %-16s %-10s %-10s %s\n' HOST UNDERLAY MAC OVERLAY OVERLAYD VARPD OV0
  for n in $hosts; do
    ns=$(host_ns "$n")
    local state=() st
    for d in overlayd varpd; do
      p=$(cat "$STATE/h$n/$d.pid" 2>/dev/null || true)
      if [[ -n $p ]] && pid_alive "$p"; then state+=("pid $p"); else state+=("DOWN"); bad=1; fi
    done
    st=$(ovadm "$n" show-overlay -f ov0 2>/dev/null | awk 'NR > 1 {print $2; exit}' || true)
    [[ $st == ONLINE ]] || bad=1
    printf '%-10s %-13s %-18s %-16s %-10s %-10s %s\n' "$ns" "10.77.0.$n" "$(host_mac "$n")" \
      "192.168.77.$n" "${state[0]}" "${state[1]}" "${st:-missing}"
  done
  local g gs
  for n in $hosts; do
    gs=$(lab_guests "$n")
    [[ -n $gs ]] || continue
    for g in $gs; do
      [[ $(ovadm "$n" show-vnic -p -o link "vnic$g" 2>/dev/null) == "vnic$g" ]] || { bad=1; echo "guest ovlab-h$n-g$g: VNIC vnic$g missing"; }
    done
  done
  gs=$(lab_guests 1 | wc -l)
  ((gs == 0)) || echo "guests: $gs per host (ovlab-hN-gK: VNIC vnicK on ov0, MAC 02:77:NN:00:00:KK, 10.78.N.K/16, fd78::N:K/64)"
  if [[ $(cat "$STATE/backend" 2>/dev/null || true) == etcd ]]; then
    p=$(cat "$STATE/etcd.pid" 2>/dev/null || true)
    if [[ -n $p ]] && pid_alive "$p" && etcdctl_lab endpoint health >/dev/null 2>&1; then
      echo "etcd: pid $p in $ETCD_NS at $ETCD_URL, $(etcdctl_lab get --prefix --keys-only "/overlay/$VNI/" | grep -c . || true) keys under /overlay/$VNI/; log $STATE/etcd.log"
    else
      echo "etcd: DOWN (log: $STATE/etcd.log)"
      bad=1
    fi
  fi
  p=$(cat "$STATE/exporter.pid" 2>/dev/null || true)
  if [[ -n $p ]] && pid_alive "$p"; then
    echo "exporter: pid $p, metrics of all $(echo "$hosts" | wc -l) hosts (label host=\"hN\") at http://$EXPORTER_LISTEN/metrics; log $STATE/exporter.log"
  else
    echo "exporter: DOWN (log: $STATE/exporter.log)"
    bad=1
  fi
  ((bad == 0)) || { say "something is wrong: see the logs in $STATE/hN/ and $STATE/exporter.log"; return 1; }
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) echo "usage: $0 up [HOSTS] | down | status" >&2; exit 2 ;;
esac
