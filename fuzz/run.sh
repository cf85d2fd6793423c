#!/bin/bash
# fuzz/run.sh [SECONDS] [TARGET...]: run each cargo-fuzz target for SECONDS (default 15) on its
# checked-in corpus (fuzz/corpus/TARGET), failing on the first crash. `make fuzz` calls it, and
# `make test` with a short budget. Needs the nightly toolchain (libFuzzer's sanitizer flags);
# without one it says so and skips. Installs cargo-fuzz from crates.io when missing.
# For a long run: `make fuzz FUZZ_SECS=3600` (FUZZ_GROW=1 to keep what it finds in the corpus). A crash leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
secs=${1:-15}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(vxlan_decap geneve_decap nvgre_decap proxy_frames control_messages files_config target_table ovsnoop_decode pcap_read)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: skipped: no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked -q
fi
cargo +nightly fuzz build -O >/dev/null
failed=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log=$(mktemp)
  # libFuzzer adds what it finds to (and reduces) its first corpus
  # directory: a scratch one, so that a test run leaves the checked-in
  # corpus as it is; FUZZ_GROW=1 grows the checked-in one instead.
  if [[ "${FUZZ_GROW:-}" == 1 ]]; then dirs=("corpus/$t"); else dirs=("$(mktemp -d)" "corpus/$t"); fi
  if cargo +nightly fuzz run -O "$t" "${dirs[@]}" -- -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    echo "fuzz: $t: ${runs:-?} runs in ${secs}s, no crash"
  else
    echo "fuzz: $t: FAILED" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -10 >&2 || tail -20 "$log" >&2
    failed+=("$t")
  fi
  rm -f "$log"
  [[ "${FUZZ_GROW:-}" == 1 ]] || rm -rf "${dirs[0]}"
done
if ((${#failed[@]})); then
  echo "fuzz: crashes in: ${failed[*]}" >&2
  exit 1
fi
