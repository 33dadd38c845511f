#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache
# outside the git tree, and prints the directory that holds them.
#
# The cache key is a hash of everything that decides what gets built (go.mod,
# go.sum, this script's pins), so the binaries are rebuilt only when a pin
# changes. A cold build takes many minutes on two cores; progress goes to
# stderr, the bin directory alone to stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${KAMAJI_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kamaji-rs/cluster}
bin="$cache_root/bin"
# What decides the binaries built inside this module; a change rebuilds them.
# The tools section at the end of versions.env is left out: each tool there is
# keyed by its own pin, so bumping one does not rebuild the Kubernetes binaries.
module_pin=$(cat "$here/go.mod" "$here/go.sum" <(sed '/^# --- tools installed by version/,$d' "$here/versions.env") \
  "$here/cmd/etcd/main.go" | sha256sum | cut -c1-16)

mkdir -p "$bin"
log() { echo "cluster-build: $*" >&2; }

# Version stamps, so `kubectl version` and the API server's /version report the
# release they were built from instead of v0.0.0-master.
k8s_ldflags="-s -w \
  -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION \
  -X k8s.io/component-base/version.gitMajor=${KUBERNETES_VERSION_MAJOR} \
  -X k8s.io/component-base/version.gitMinor=${KUBERNETES_VERSION_MINOR} \
  -X k8s.io/component-base/version.gitTreeState=clean \
  -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION \
  -X k8s.io/client-go/pkg/version.gitMajor=${KUBERNETES_VERSION_MAJOR} \
  -X k8s.io/client-go/pkg/version.gitMinor=${KUBERNETES_VERSION_MINOR}"

targets=(
  "etcd|./cmd/etcd|"
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s"
  "kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|k8s"
  "kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|k8s"
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s"
)
total=$((${#targets[@]} + 3))
step=0
start=$SECONDS

# A binary is fresh when it exists and was built from the current pin.
fresh() {
  local name=$1 pin=$2
  if [[ -x "$bin/$name" && "$(cat "$bin/.$name.pin" 2>/dev/null)" == "$pin" ]]; then
    return 0
  fi
  return 1
}

build_in_module() {
  local name=$1 pkg=$2 flags=$3
  step=$((step + 1))
  if fresh "$name" "$module_pin"; then return; fi
  log "[$step/$total] building $name ($pkg) ... ($((SECONDS - start))s elapsed)"
  local ldflags="-s -w"
  [[ "$flags" == k8s ]] && ldflags=$k8s_ldflags
  (cd "$here" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$module_pin" >"$bin/.$name.pin"
}

# Tools with a go.mod free of replace directives install by version, pinned in
# versions.env and checked against the checksum database.
install_pinned() {
  local name=$1 pkg=$2 version=$3 ldflags="-s -w ${4:-}"
  local pin="$pkg@$version${4:+ $4}"
  step=$((step + 1))
  if fresh "$name" "$pin"; then return; fi
  log "[$step/$total] building $name ($pkg@$version) ... ($((SECONDS - start))s elapsed)"
  local gobin
  gobin=$(mktemp -d)
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "$ldflags" "$pkg@$version"
  mv "$gobin/$name" "$bin/$name"
  rmdir "$gobin"
  echo "$pin" >"$bin/.$name.pin"
}

for t in "${targets[@]}"; do
  IFS='|' read -r name pkg flags <<<"$t"
  build_in_module "$name" "$pkg" "$flags"
done
install_pinned kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
# go install does not stamp helm's version (`helm version` would say v4.3): set it as helm's Makefile does.
install_pinned helm helm.sh/helm/v4/cmd/helm "$HELM_VERSION" "-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
# promtool checks the chart's PrometheusRule (`promtool check rules`).
install_pinned promtool github.com/prometheus/prometheus/cmd/promtool "$PROMTOOL_VERSION"
log "all binaries in $bin ($((SECONDS - start))s)"
echo "$bin"
