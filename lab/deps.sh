#!/bin/bash
# deps.sh: install the system tools that the end-to-end tests, the acceptance scripts and the lab
# use, when something is missing and we are root (`make deps`, run by `make test`). As another user
# it only says what is missing: the root-only tests will not run there anyway.
set -euo pipefail

TOOLS=(ip ping iperf3 ethtool tshark tcpdump bpftrace tmux prometheus python3 ovs-vsctl protoc etcd etcdctl openssl)
PACKAGES=(iproute2 iputils-ping iperf3 ethtool tshark tcpdump bpftrace tmux prometheus python3 openvswitch-switch protobuf-compiler etcd-server etcd-client openssl)

missing=()
for t in "${TOOLS[@]}"; do command -v "$t" >/dev/null 2>&1 || missing+=("$t"); done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "deps: missing ${missing[*]}; as root, \`make deps\` installs ${PACKAGES[*]}" >&2
  exit 0
fi
echo "deps: missing ${missing[*]}: installing ${PACKAGES[*]}"
# tshark's package asks whether non-root users may capture; answer before apt can ask.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${PACKAGES[@]}"
