#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy into a cache
# outside the git tree, and prints the directory that holds them.
#
#   build.sh [SET|BINARY]...     (default: test)
#
#   cluster  what up.sh runs: etcd, kube-apiserver, kube-controller-manager,
#            kube-scheduler, kubectl, kwok (`make demo` adds kubeadm and
#            kubelet-bootstrap, built by name; not the kubelet, not helm)
#   node     the node side of the tests: kubeadm, the kubelet, and
#            kubelet-bootstrap (tests/cluster/cmd/kubelet-bootstrap: the kubelet's
#            TLS bootstrap and certificate rotation, without a container runtime)
#   konnectivity  konnectivity's proxy-server and proxy-agent, from the published
#            module sigs.k8s.io/apiserver-network-proxy (tests/cluster/konnectivity:
#            a module of its own, see its tools.go)
#   test     everything `make test` uses: cluster, node, konnectivity and helm
#   BINARY   one binary of the tables below, by name
#
# promtool is not built: it is the Debian package `prometheus` (.ci/run installs it).
#
# Each binary is keyed by a hash of what decides it; it is rebuilt only when a
# pin changes. The Kubernetes binaries of the cluster are keyed by go.mod,
# go.sum and versions.env (above its tools section); the node-side binaries by
# the same module plus node-extra.sum. They are built from the same go.mod with
# `-modfile` and a go.sum that adds node-extra.sum's lines (the modules only
# kubeadm and the kubelet import), so adding them left the cluster's key, and its
# binaries, as they were. `go mod tidy` at the next pin bump folds those lines
# into go.sum; node-extra.sum may then be emptied. A cold build takes many
# minutes on two cores; progress goes to stderr, the bin directory alone to stdout.
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
node_pin=$(cat <(echo "$module_pin") "$here/node-extra.sum" | sha256sum | cut -c1-16)
# konnectivity's module pins nothing the Kubernetes binaries use, and the reverse.
konnectivity_pin=$(cat "$here/konnectivity/go.mod" "$here/konnectivity/go.sum" | sha256sum | cut -c1-16)

mkdir -p "$bin"
log() { echo "cluster-build: $*" >&2; }
# One build at a time per cache: two callers asking for the same binary (tests
# run in parallel) wait for each other instead of racing on the same files.
exec 8>"$cache_root/.build.lock"
if ! flock -n 8; then
  log "waiting for another build.sh using $cache_root ..."
  flock 8
fi

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

# name|package|ldflags|module (go.mod; node: go.mod with node-extra.sum;
# konnectivity: tests/cluster/konnectivity/go.mod)|set
targets=(
  "etcd|./cmd/etcd||go.mod|cluster"
  "kube-apiserver|k8s.io/kubernetes/cmd/kube-apiserver|k8s|go.mod|cluster"
  "kube-controller-manager|k8s.io/kubernetes/cmd/kube-controller-manager|k8s|go.mod|cluster"
  "kube-scheduler|k8s.io/kubernetes/cmd/kube-scheduler|k8s|go.mod|cluster"
  "kubectl|k8s.io/kubernetes/cmd/kubectl|k8s|go.mod|cluster"
  "kubeadm|k8s.io/kubernetes/cmd/kubeadm|k8s|node|node"
  "kubelet-bootstrap|./cmd/kubelet-bootstrap|k8s|node|node"
  "kubelet|k8s.io/kubernetes/cmd/kubelet|k8s|node|node"
  # The names of the binaries in konnectivity's images (/proxy-server, /proxy-agent).
  "proxy-server|sigs.k8s.io/apiserver-network-proxy/cmd/server||konnectivity|konnectivity"
  "proxy-agent|sigs.k8s.io/apiserver-network-proxy/cmd/agent||konnectivity|konnectivity"
)
# Tools whose go.mod is free of replace directives install by version, pinned
# in versions.env and checked against the checksum database.
# name|package|version|extra ldflags|set
tools=(
  "kwok|sigs.k8s.io/kwok/cmd/kwok|$KWOK_VERSION||cluster"
  # go install does not stamp helm's version (`helm version` would say v4.3): set it as helm's Makefile does.
  "helm|helm.sh/helm/v4/cmd/helm|$HELM_VERSION|-X helm.sh/helm/v4/internal/version.version=$HELM_VERSION|test"
)

# Whether a row of set `set` named `name` is asked for by the arguments.
wanted() {
  local name=$1 set=$2 arg
  for arg in "${requested[@]}"; do
    case $arg in
      "$name" | "$set" | all) return 0 ;;
      test) [[ "$set" == cluster || "$set" == node || "$set" == konnectivity || "$set" == test ]] && return 0 ;;
    esac
  done
  return 1
}

requested=("$@")
((${#requested[@]})) || requested=(test)
for arg in "${requested[@]}"; do
  known=0
  case $arg in cluster | node | konnectivity | test | all) known=1 ;; esac
  for row in "${targets[@]}" "${tools[@]}"; do
    [[ "${row%%|*}" == "$arg" ]] && known=1
  done
  if ((!known)); then
    log "unknown set or binary: $arg (sets: cluster node konnectivity test all)"
    exit 2
  fi
done

selected_targets=()
for row in "${targets[@]}"; do
  IFS='|' read -r name _ _ _ set <<<"$row"
  wanted "$name" "$set" && selected_targets+=("$row")
done
selected_tools=()
for row in "${tools[@]}"; do
  IFS='|' read -r name _ _ _ set <<<"$row"
  wanted "$name" "$set" && selected_tools+=("$row")
done
total=$((${#selected_targets[@]} + ${#selected_tools[@]}))
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

# The node module file: go.mod as it is, with go.sum plus node-extra.sum beside it.
node_modfile() {
  local dir="$cache_root/modfile-$node_pin"
  if [[ ! -f "$dir/node.mod" ]]; then
    mkdir -p "$dir"
    cat "$here/go.sum" "$here/node-extra.sum" >"$dir/node.sum"
    cp "$here/go.mod" "$dir/node.mod"
  fi
  echo "$dir/node.mod"
}

build_in_module() {
  local name=$1 pkg=$2 flags=$3 module=$4 pin=$module_pin modflag=() dir=$here
  step=$((step + 1))
  if [[ "$module" == konnectivity ]]; then
    pin=$konnectivity_pin
    dir=$here/konnectivity
  elif [[ "$module" == node ]]; then
    # Our own programs are keyed by their sources too.
    if [[ "$pkg" == ./cmd/* ]]; then
      pin=$(cat <(echo "$node_pin") "$here/${pkg#./}"/*.go | sha256sum | cut -c1-16)
    else
      pin=$node_pin
    fi
    modflag=("-modfile=$(node_modfile)")
  fi
  if fresh "$name" "$pin"; then return; fi
  log "[$step/$total] building $name ($pkg) ... ($((SECONDS - start))s elapsed)"
  local ldflags="-s -w"
  [[ "$flags" == k8s ]] && ldflags=$k8s_ldflags
  (cd "$dir" && CGO_ENABLED=0 go build "${modflag[@]}" -trimpath -ldflags "$ldflags" -o "$bin/$name.tmp" "$pkg")
  mv "$bin/$name.tmp" "$bin/$name"
  echo "$pin" >"$bin/.$name.pin"
}

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

for row in "${selected_targets[@]}"; do
  IFS='|' read -r name pkg flags module _ <<<"$row"
  build_in_module "$name" "$pkg" "$flags" "$module"
done
for row in "${selected_tools[@]}"; do
  IFS='|' read -r name pkg version extra _ <<<"$row"
  install_pinned "$name" "$pkg" "$version" "$extra"
done
log "${requested[*]}: $total binaries in $bin ($((SECONDS - start))s)"
echo "$bin"
