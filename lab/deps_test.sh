#!/bin/bash
# deps_test.sh: prove that a fresh machine gets what the build needs before anything compiles
# (`make deps-test`, run by `make test`). Fails, naming the reason, if
#   - a Makefile target that compiles (or, for the lab and the benches, runs the lab's tools) does
#     not run lab/deps.sh before its first other command (read from `make -n TARGET`);
#   - a dependency in Cargo.lock needs a system tool at build time that deps.sh's BUILD_DEPS does
#     not list (protoc for prost/tonic build scripts, cc for the cc crate);
#   - deps.sh, as a non-root user without protoc, does not stop with a message naming protoc and
#     its package (it must not let a build start that cannot succeed);
#   - deps.sh build, with everything installed, is not silent, quick and successful.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
fails=0
fail() {
  echo "deps_test: FAIL: $*" >&2
  fails=$((fails + 1))
}

# 1. Every target that compiles or needs the system tools runs deps.sh first. `make -n` prints the
# recipes in the order make would run them, `@` lines included.
for target in build lab bench profile bench-probes bench-exporter bench-ovsnoop unit-test clippy; do
  # The whole output first: a reader that stops early (head, grep -q) would give make a SIGPIPE,
  # which pipefail turns into a failure now and then.
  recipe=$(make -n --no-print-directory "$target")
  first=$(grep -v '^\s*$' <<<"$recipe" | sed -n 1p)
  if [[ $first != *lab/deps.sh* ]]; then
    fail "make $target runs '$first' before lab/deps.sh"
  fi
done
# The lab and the benches need the lab's tools too (ip, etcd, iperf3...), not only the build's.
for target in lab bench profile bench-probes bench-ovsnoop; do
  if ! grep -qx 'bash lab/deps.sh' <<<"$(make -n --no-print-directory "$target")"; then
    fail "make $target does not install every tool (bash lab/deps.sh)"
  fi
done

# 2. The build list covers what the dependencies' build scripts run.
eval "$(grep '^BUILD_DEPS=' lab/deps.sh)"
declare -p BUILD_DEPS >/dev/null 2>&1 || fail "lab/deps.sh has no BUILD_DEPS list"
needs() { # needs CRATE TOOL: CRATE in Cargo.lock means the build needs TOOL
  if grep -qx "name = \"$1\"" Cargo.lock && [[ " ${BUILD_DEPS[*]:-} " != *" $2:"* ]]; then
    fail "Cargo.lock has $1, whose build needs $2, but lab/deps.sh BUILD_DEPS lacks it"
  fi
}
needs prost-build protoc
needs tonic-build protoc
needs tonic-prost-build protoc
needs cc cc

# 3. Not root and no protoc: deps.sh must stop, saying what is missing and how to get it. Run a copy
# as nobody (when we are root) with a PATH that holds only `id`, so protoc cannot be found.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/bin"
ln -s "$(command -v id)" "$tmp/bin/id"
cp lab/deps.sh "$tmp/deps.sh"
chmod -R a+rX "$tmp"
as_user=()
if [[ $(id -u) == 0 ]]; then as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups); fi
for mode in build all; do
  arg=()
  [[ $mode == build ]] && arg=(build)
  rc=0
  out=$("${as_user[@]}" env PATH="$tmp/bin" /bin/bash "$tmp/deps.sh" "${arg[@]}" 2>&1) || rc=$?
  if ((rc == 0)); then
    fail "deps.sh $mode, not root and without protoc, exited 0 (a build would start and fail)"
  fi
  if [[ $out != *protoc* || $out != *protobuf-compiler* ]]; then
    fail "deps.sh $mode without protoc did not name protoc and protobuf-compiler: $out"
  fi
done

# 4. With everything installed (make test ran `make deps` first), the check is silent and quick.
start=$(date +%s%N)
rc=0
out=$(bash lab/deps.sh build 2>&1) || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
if ((rc != 0)) || [[ -n $out ]]; then
  fail "deps.sh build with everything installed: exit $rc, output '$out' (want 0 and nothing)"
fi
if ((ms > 1000)); then fail "deps.sh build took $ms ms with nothing to do"; fi

if ((fails)); then exit 1; fi
echo "deps_test: ok (every cargo step runs lab/deps.sh first; protoc and cc listed; non-root without protoc stops)"
