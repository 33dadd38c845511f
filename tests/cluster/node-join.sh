#!/usr/bin/env bash
# Joins this machine to a tenant as a worker node, for the tests, in private
# mount and pid namespaces: /etc/kubernetes and /var/lib/kubelet are the test's
# own directories under ROOT (bind-mounted), so nothing is written to the
# machine's, and killing this script kills everything it started.
#
#   node-join.sh ROOT NODE KUBEADM KUBELET_PART -- KUBEADM_JOIN_ARGS...
#
# Runs `KUBEADM join KUBEADM_JOIN_ARGS... --node-name NODE` and the kubelet's
# part, KUBELET_PART:
#   bootstrap:PATH  tests/cluster/cmd/kubelet-bootstrap (the kubelet's own TLS
#                   bootstrap and certificate rotation code) on the bootstrap
#                   kubeconfig kubeadm writes; exits when it is done.
#   kubelet:PATH    a real kubelet, started as kubeadm's systemd drop-in
#                   (10-kubeadm.conf) starts it, with $KUBELET_EXTRA_ARGS;
#                   it keeps running until this script is killed.
# Output under ROOT: kubeadm-join.log, kubelet-bootstrap.json and .log, or
# kubelet.log, and `joined` once kubeadm join succeeded. Exit status: kubeadm's,
# else the kubelet part's. Needs root (unshare).
set -euo pipefail

if [[ "${1:-}" != --in-namespace ]]; then
  exec unshare --mount --propagation private --pid --fork --kill-child --mount-proc -- \
    "$0" --in-namespace "$@"
fi
shift
root=$1 node=$2 kubeadm=$3 part=$4
shift 4
[[ "${1:-}" == -- ]] && shift

mkdir -p "$root/etc-kubernetes" "$root/var-lib-kubelet"
# Mount points on the machine (empty directories); the mounts exist only here.
mkdir -p /etc/kubernetes /var/lib/kubelet
mount --bind "$root/etc-kubernetes" /etc/kubernetes
mount --bind "$root/var-lib-kubelet" /var/lib/kubelet

# What systemd does with kubeadm's drop-in: (re)start the kubelet once kubeadm
# wrote its configuration and flags.
run_kubelet() {
  local kubelet=$1 flags=/var/lib/kubelet/kubeadm-flags.env
  local kubeadm_args=() extra_args=()
  while [[ ! -s "$flags" ]]; do sleep 0.2; done
  sleep 0.5
  # shellcheck disable=SC1090 # written by kubeadm join
  source "$flags"
  read -r -a kubeadm_args <<<"${KUBELET_KUBEADM_ARGS:-}"
  read -r -a extra_args <<<"${KUBELET_EXTRA_ARGS:-}"
  exec "$kubelet" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
    --kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
    "${kubeadm_args[@]}" "${extra_args[@]}"
}

case $part in
  bootstrap:*)
    "${part#bootstrap:}" --node-name "$node" --rotate --timeout 2m \
      >"$root/kubelet-bootstrap.json" 2>"$root/kubelet-bootstrap.log" &
    ;;
  kubelet:*)
    run_kubelet "${part#kubelet:}" >"$root/kubelet.log" 2>&1 &
    ;;
  *)
    echo "node-join.sh: unknown kubelet part $part" >&2
    exit 2
    ;;
esac
part_pid=$!

status=0
"$kubeadm" join "$@" --node-name "$node" >"$root/kubeadm-join.log" 2>&1 || status=$?
if ((status != 0)); then
  kill "$part_pid" 2>/dev/null || true
  wait "$part_pid" 2>/dev/null || true
  exit "$status"
fi
touch "$root/joined"
wait "$part_pid"
