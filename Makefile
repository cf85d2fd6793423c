# Build, test and lab plumbing. Everything builds in the release profile, so dependencies compile
# once for the binaries, the tests and the lab alike.
#
#   make / make build    release build of every binary in the workspace
#   make test            deps (as root), build, cargo test (root-only tests too, as root), then the
#                        acceptance scripts in ../shared/acceptance (as root, when present)
#   make lab [HOSTS=N] [GUESTS=M] [BACKEND=files|etcd]  build, then a lab of N hosts (default 2)
#                        with M guests each (default 1; VNICs in namespaces ovlab-hN-gK), mappings
#                        from a files config (default) or a real etcd: see lab/lab.sh
#   make lab-down        remove the lab whole; make lab-status: what runs in it
#   make deps            install the system tools the build, tests and lab use (as root, only what
#                        is missing; as another user: say what is missing, fail if the build needs it)
#   make build-deps      the same for the build's own tools only (protoc, cc): every cargo step runs
#                        it first; it prints nothing and costs nothing when all is there
#   make bench           the data path against kernel VXLAN: TCP 1 and 4 flows, 64-byte frames, ping (ratios),
#                        and what each costs (CPU s per Gbit: machine, softirq, the flow, overlayd) (root)
#   make profile [PATHS=overlayd|kernel|both] [SECS=8]  one TCP flow under perf record -e cpu-clock -a -g:
#                        the share of copies, segmentation, checksums, syscalls, wake-ups, idle (root)
#   make bench-probes    what the USDT probes cost the data path (ratios, see tests/benches)
#   make bench-capture   what the capture point (ovsnoop --capture) costs the data path, off and capturing (ratios)
#   make bench-capture-engine  the same for the forwarding engine alone, ns per frame (no root)
#   make bench-tunnel-gso  issue 21's prototype: VXLAN super-frames written whole to an underlay TAP
#                        device (kernel tunnel GSO, 6.17+) against overlayd's UDP_SEGMENT sends (root)
#   make bench-exporter  one exporter scrape of 1,000 overlays / 100,000 entries against its 50 ms budget
#   make bench-ovsnoop   ovsnoop against tcpdump -n -r on a 1,000,000-frame VXLAN capture (ratio)
#   make bench-scale [HOSTS=1000] [GUESTS=10]  the etcd plugin at scale: a real 3-member etcd and
#                        HOSTS real plugin instances (cold start, migrations, leader and host kills)
#   make fuzz            run every fuzz target FUZZ_SECS (60) on its corpus (nightly; make test: 15 s)
#   make fmt / clippy    cargo fmt / cargo clippy -D warnings over the whole workspace
#   make clean           cargo clean
#
# The lab and the end-to-end tests need root (network namespaces): sudo make test, sudo make lab.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
CARGO ?= cargo
HOSTS ?= 2
GUESTS ?= 1
BACKEND ?= files
# The acceptance scripts live beside the repository, in the shared directory; they run from here.
ACCEPTANCE ?= $(CURDIR)/../shared/acceptance
ACCEPTANCE_SCRIPTS ?= interop-kernel.sh varpd-failure.sh lab.sh
ROOT := $(shell id -u 2>/dev/null | grep -qx 0 && echo yes)

# `sudo make ...` usually leaves rustup's cargo off root's PATH: borrow the invoking user's
# toolchain then (build as yourself first with `make build` to keep target/ yours).
ifneq ($(SUDO_USER),)
ifeq ($(shell command -v $(CARGO) 2>/dev/null),)
SUDO_HOME := $(shell getent passwd $(SUDO_USER) | cut -d: -f6)
export RUSTUP_HOME ?= $(SUDO_HOME)/.rustup
export CARGO_HOME ?= $(SUDO_HOME)/.cargo
export PATH := $(CARGO_HOME)/bin:$(PATH)
endif
endif

# One thing at a time: cargo parallelises on its own, and the steps of `test` must not overlap.
.NOTPARALLEL:

.PHONY: all build build-deps test deps-test unit-test acceptance fuzz lab lab-down lab-status deps fmt clippy clean bench profile bench-probes bench-capture bench-capture-engine bench-tunnel-gso bench-exporter bench-ovsnoop bench-scale

all: build

build: build-deps
	$(CARGO) build --release --workspace --bins

# Both halves run even if the first fails, so one run reports everything; `test` fails if either did.
test: deps build
	@rc=0; \
	$(MAKE) --no-print-directory deps-test || rc=1; \
	$(MAKE) --no-print-directory unit-test || rc=1; \
	$(MAKE) --no-print-directory fuzz FUZZ_SECS=$(FUZZ_SMOKE_SECS) || rc=1; \
	$(MAKE) --no-print-directory acceptance || rc=1; \
	exit $$rc

# Root-only tests are #[ignore = "needs root ..."]: as root they run too; otherwise cargo lists
# them as ignored, with the reason.
unit-test: build-deps build
	$(CARGO) test --release --workspace $(if $(ROOT),-- --include-ignored)

# Each acceptance script runs even if an earlier one failed, so one run reports them all.
acceptance: build
	@if [[ -z "$(ROOT)" ]]; then echo "acceptance: skipped (needs root)"; exit 0; fi; \
	if [[ ! -d "$(ACCEPTANCE)" ]]; then echo "acceptance: skipped ($(ACCEPTANCE) not found)"; exit 0; fi; \
	failed=(); \
	for s in $(ACCEPTANCE_SCRIPTS); do \
	  echo "== acceptance: $$s"; \
	  bash "$(ACCEPTANCE)/$$s" || failed+=("$$s"); \
	done; \
	if (( $${#failed[@]} )); then echo "acceptance: FAILED: $${failed[*]}" >&2; exit 1; fi; \
	echo "acceptance: all passed ($(ACCEPTANCE_SCRIPTS))"

# Every parser of untrusted bytes under libFuzzer (fuzz/fuzz_targets), FUZZ_SECS per target, on the
# checked-in corpus; `make test` runs it briefly (FUZZ_SMOKE_SECS). Skipped without a nightly toolchain.
FUZZ_SECS ?= 60
FUZZ_SMOKE_SECS ?= 15
fuzz:
	bash fuzz/run.sh $(FUZZ_SECS)

lab: deps build
	GUESTS=$(GUESTS) BACKEND=$(BACKEND) bash lab/lab.sh up $(HOSTS)

lab-down:
	bash lab/lab.sh down

lab-status:
	bash lab/lab.sh status

deps:
	@bash lab/deps.sh

build-deps:
	@bash lab/deps.sh build

# Every cargo step installs (or, not as root, demands) the build's system tools before it compiles.
deps-test:
	bash lab/deps_test.sh

# What the USDT probes cost: overlayd with probes (disabled, then traced by bpftrace) against
# overlayd built without them, alternating in one run. Prints ratios; writes target/bench/probe-cost.json.
# The data path against Linux kernel VXLAN in the same namespaces, alternating, in one run; prints
# every figure and the ratio overlayd/kernel, writes target/bench/datapath.json (root).
bench: deps build
	$(CARGO) bench -p overlay-tests --bench datapath

# Where one TCP flow's CPU time goes, through overlayd and through kernel VXLAN (PATHS=overlayd,
# kernel or both; SECS of perf record each): buckets, processes, top symbols; writes
# target/bench/profile.json (root).
profile: deps build
	$(CARGO) bench -p overlay-tests --bench profile

bench-probes: deps build
	$(CARGO) build --release -p overlayd --no-default-features --features capture --target-dir target/noprobes
	mkdir -p target/noprobes/bin
	cp target/noprobes/release/overlayd target/noprobes/bin/overlayd
	cp target/release/varpd target/release/ovadm target/noprobes/bin/
	PROBE_COST_NOPROBES_DIR=$(CURDIR)/target/noprobes/bin $(CARGO) bench -p overlay-tests --bench probe_cost
	bash driver/overlayd/bench/engine_ab.sh probes $(ROUNDS)

bench-capture: deps build
	$(CARGO) build --release -p overlayd --no-default-features --features probes --target-dir target/nocapture
	mkdir -p target/nocapture/bin
	cp target/nocapture/release/overlayd target/nocapture/bin/overlayd
	cp target/release/varpd target/release/ovadm target/release/ovsnoop target/nocapture/bin/
	CAPTURE_COST_BASELINE_DIR=$(CURDIR)/target/nocapture/bin $(CARGO) bench -p overlay-tests --bench capture_cost

# The engine alone (no namespaces, no root): ns per frame with the capture point compiled
# in (off) and compiled out, ROUNDS alternating runs of each, medians and their ratio.
bench-capture-engine: build-deps
	bash driver/overlayd/bench/engine_ab.sh capture $(ROUNDS)

# Issue 21's prototype (tests/benches/tunnel_gso): the same TCP stream sent as pre-cut VXLAN datagrams
# with UDP_SEGMENT (overlayd today) and as whole super-frames through an underlay TAP device with the
# 6.17 tunnel virtio-net header, alternating ROUNDS (5) times, to a kernel VXLAN peer and to a UDP
# socket; CPU per GB, ratios; writes target/bench/tunnel-gso.json. Exits 0 with a message on kernels
# without TUN_F_UDP_TUNNEL_GSO (root).
bench-tunnel-gso: deps build
	ROUNDS=$(ROUNDS) $(CARGO) bench -p overlay-tests --bench tunnel_gso

# ovsnoop's one-line output against tcpdump -n -r on the same generated capture, alternating,
# ROUNDS times; prints both medians and their ratio (ovsnoop/bench/bench.sh).
ROUNDS ?= 5
bench-ovsnoop: deps
	bash ovsnoop/bench/bench.sh $(ROUNDS)

# One /metrics scrape with 1,000 overlays and 100,000 target entries (stand-in daemons on real
# Unix sockets, the real exporter binary over HTTP): median and p99 against the 50 ms budget.
bench-exporter: build-deps
	$(CARGO) bench -p overlay-exporter --bench scrape

# The etcd plugin at scale (bench/scale): a three-member etcd on loopback ports and HOSTS real etcd
# plugin instances with GUESTS guests each, in one process. Prints every figure and writes
# target/bench/scale.json. Here HOSTS and GUESTS default to 1,000 and 10 (the lab's 2 and 1 are
# for the lab); `make test` runs a 20-host smoke of it (bench/scale/tests/smoke.rs).
bench-scale: HOSTS = 1000
bench-scale: GUESTS = 10
bench-scale: build-deps
	$(CARGO) build --release -p overlay-bench-scale
	target/release/bench-scale --hosts $(HOSTS) --guests $(GUESTS) --out target/bench/scale.json

fmt:
	$(CARGO) fmt --all

clippy: build-deps
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
