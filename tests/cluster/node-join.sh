#!/usr/bin/env bash
# Joins this machine to a tenant as a worker node, for the tests, in a private
# mount namespace: /etc/kubernetes and /var/lib/kubelet are the test's own
# directories under ROOT (bind-mounted), so nothing is written to the machine's.
#
#   node-join.sh ROOT NODE KUBEADM KUBELET_BOOTSTRAP -- KUBEADM_JOIN_ARGS...
#
# Runs `KUBEADM join KUBEADM_JOIN_ARGS... --node-name NODE` and, as the kubelet
# kubeadm starts would, KUBELET_BOOTSTRAP (tests/cluster/cmd/kubelet-bootstrap:
# the kubelet's own TLS bootstrap and certificate rotation code) on the bootstrap
# kubeconfig kubeadm writes. Output: ROOT/kubeadm-join.log, ROOT/kubelet-bootstrap.json
# and .log. Exit status: kubeadm's, else the bootstrap program's. Needs root.
set -euo pipefail

if [[ "${1:-}" != --in-namespace ]]; then
  exec unshare --mount --propagation private -- "$0" --in-namespace "$@"
fi
shift
root=$1 node=$2 kubeadm=$3 bootstrap=$4
shift 4
[[ "${1:-}" == -- ]] && shift

mkdir -p "$root/etc-kubernetes" "$root/var-lib-kubelet"
# Mount points on the machine (empty directories); the mounts exist only here.
mkdir -p /etc/kubernetes /var/lib/kubelet
mount --bind "$root/etc-kubernetes" /etc/kubernetes
mount --bind "$root/var-lib-kubelet" /var/lib/kubelet

"$bootstrap" --node-name "$node" --rotate --timeout 2m \
  >"$root/kubelet-bootstrap.json" 2>"$root/kubelet-bootstrap.log" &
bootstrap_pid=$!

status=0
"$kubeadm" join "$@" --node-name "$node" >"$root/kubeadm-join.log" 2>&1 || status=$?
if ((status != 0)); then
  kill "$bootstrap_pid" 2>/dev/null || true
  wait "$bootstrap_pid" 2>/dev/null || true
  exit "$status"
fi
wait "$bootstrap_pid"
