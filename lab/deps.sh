#!/bin/bash
# deps.sh: install the system tools that the build, the end-to-end tests, the acceptance scripts
# and the lab use, when something is missing and we are root.
#
#   deps.sh build   only what the build itself needs (protoc for etcd-client's gRPC code, a C
#                   compiler for ring): run before every cargo step of the Makefile (build, lab,
#                   bench*, unit-test, clippy)
#   deps.sh         everything (`make deps`, run by `make test`, `make lab` and `make bench*`)
#
# When nothing is missing it prints nothing and takes a few milliseconds. As root it installs the
# missing packages with apt-get. As another user it says what is missing and how to get it; a
# missing build prerequisite then fails (exit 1), since a build without it cannot succeed, while a
# missing test tool only warns (the root-only tests will not run as that user anyway).
#
# lab/deps_test.sh (run by `make test`) checks that every cargo step of the Makefile runs this
# first and that the build list covers the system tools the dependencies' build scripts need.
set -euo pipefail

# tool:package pairs. BUILD_DEPS are what `cargo build` needs beyond the Rust toolchain.
BUILD_DEPS=(protoc:protobuf-compiler cc:build-essential)
TEST_DEPS=(ip:iproute2 ping:iputils-ping iperf3:iperf3 ethtool:ethtool tshark:tshark
  tcpdump:tcpdump bpftrace:bpftrace tmux:tmux prometheus:prometheus python3:python3
  ovs-vsctl:openvswitch-switch etcd:etcd-server etcdctl:etcd-client openssl:openssl perf:linux-perf)

mode=${1:-all}
case $mode in
build) wanted=("${BUILD_DEPS[@]}") ;;
all) wanted=("${BUILD_DEPS[@]}" "${TEST_DEPS[@]}") ;;
*)
  echo "usage: deps.sh [build]" >&2
  exit 2
  ;;
esac

missing=() packages=() build_missing=()
for pair in "${wanted[@]}"; do
  tool=${pair%%:*} package=${pair#*:}
  command -v "$tool" >/dev/null 2>&1 && continue
  missing+=("$tool")
  packages+=("$package")
  for b in "${BUILD_DEPS[@]}"; do [[ $b == "$pair" ]] && build_missing+=("$tool"); done
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) != 0 ]]; then
  echo "deps: missing ${missing[*]}; install ${packages[*]} (as root: \`sudo make deps\`, or apt-get install)" >&2
  if ((${#build_missing[@]})); then
    echo "deps: the build cannot succeed without ${build_missing[*]}: stopping" >&2
    exit 1
  fi
  exit 0
fi
echo "deps: missing ${missing[*]}: installing ${packages[*]}"
# tshark's package asks whether non-root users may capture; answer before apt can ask.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
