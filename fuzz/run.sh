#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and prints a table.
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [TARGET]...    (default: 300 s, every target)
#
# `make fuzz` runs it for 300 s per target, `make fuzz-smoke` (CI) for 15 s.
# Before fuzzing, each target replays fuzz/regressions/<target>/ (every crash
# found so far, kept as a regression test) and starts from fuzz/seeds/<target>/
# plus seeds generated here with openssl (real certificates, keys, CA Secrets)
# and the malformed fixtures of the normal tests. A crash fails the run; its input
# lands in fuzz/artifacts/<target>/: move it to fuzz/regressions/<target>/ with
# the fix.
#
# cargo-fuzz passes -Zsanitizer=address, a nightly flag. The stable toolchain the
# crate builds with ships the same sanitizer runtime, so it runs with
# RUSTC_BOOTSTRAP=1 instead of a second toolchain a fresh machine may not have and
# cannot download (no internet but the package registries). The build is cached
# outside the git tree (KAMAJI_FUZZ_TARGET, default ~/.cache/kamaji-rs/fuzz-target);
# a cold one takes about 13 minutes on two cores.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"

seconds=${1:-300}
shift || true
all_targets=(secret_values der ca_secret kubeconfig rotate_annotation flags kubelet_patches node_csr)
targets=("${@:-${all_targets[@]}}")
target_dir=${KAMAJI_FUZZ_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/kamaji-rs/fuzz-target}
log() { echo "fuzz: $*" >&2; }

if ! command -v cargo-fuzz >/dev/null; then
  log "installing cargo-fuzz from crates.io"
  cargo install cargo-fuzz --locked --version 0.13.2 >&2
fi
# -Zsanitizer on the stable toolchain the crate builds with (see the header).
export RUSTC_BOOTSTRAP=1
cargo_fuzz=(cargo fuzz)

# Seeds a parser cannot easily discover alone: a real CA, its key and a leaf, as
# PEM (NUL-separated, the targets' input layout) and as DER.
generated_seeds() {
  local dir=$1 work
  work=$(mktemp -d)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=kubernetes \
    -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=system:node:n1/O=system:nodes \
    -keyout "$work/leaf.key" -out "$work/leaf.csr" 2>/dev/null
  openssl x509 -req -in "$work/leaf.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -days 1 \
    -out "$work/leaf.crt" 2>/dev/null
  mkdir -p "$dir"
  { cat "$work/leaf.crt"; printf '\0'; cat "$work/leaf.key"; printf '\0'; cat "$work/ca.crt"; } >"$dir/pem-leaf"
  { cat "$work/ca.crt"; printf '\0'; cat "$work/ca.key"; printf '\0'; cat "$work/ca.crt"; } >"$dir/pem-ca"
  { openssl x509 -in "$work/leaf.crt" -outform DER; printf '\0'; openssl pkey -in "$work/leaf.key" -outform DER; } >"$dir/der-leaf" 2>/dev/null
  openssl x509 -in "$work/ca.crt" -outform DER >"$dir/der-ca" 2>/dev/null
  rm -rf "$work"
}

log "building ${#targets[@]} targets (target dir $target_dir)"
"${cargo_fuzz[@]}" build -O --target-dir "$target_dir" >&2

results=()
failed=0
for target in "${targets[@]}"; do
  corpus=corpus/$target
  mkdir -p "$corpus" "artifacts/$target"
  if [[ -d seeds/$target ]]; then cp -n seeds/"$target"/* "$corpus"/; fi
  generated_seeds "$corpus/generated"
  cp -n ../tests/fixtures/malformed/* "$corpus"/ 2>/dev/null || true
  rm -f "$corpus"/README.md
  status=ok
  regressions=(regressions/"$target"/*)
  if [[ -e ${regressions[0]} ]]; then
    "${cargo_fuzz[@]}" run -O --target-dir "$target_dir" "$target" "${regressions[@]}" >"artifacts/$target/regressions.log" 2>&1 ||
      status="regression failed (artifacts/$target/regressions.log)"
  else
    regressions=()
  fi
  fuzz_log=artifacts/$target/fuzz.log
  if [[ $status == ok ]] && ! "${cargo_fuzz[@]}" run -O --target-dir "$target_dir" "$target" "$corpus" "$corpus/generated" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$fuzz_log" 2>&1; then
    status="CRASH (see $fuzz_log, input in artifacts/$target/)"
  fi
  [[ $status == ok ]] || failed=1
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$fuzz_log" 2>/dev/null | grep -o '[0-9]*$' || echo 0)
  size=$(find "$corpus" -type f | wc -l)
  results+=("$target|$seconds|${runs:-0}|$size|${#regressions[@]}|$status")
done

printf '\n%-18s %8s %12s %8s %12s  %s\n' target seconds executions corpus regressions result
for row in "${results[@]}"; do
  IFS='|' read -r target secs runs size regs status <<<"$row"
  printf '%-18s %8s %12s %8s %12s  %s\n' "$target" "$secs" "$runs" "$size" "$regs" "$status"
done
exit "$failed"
