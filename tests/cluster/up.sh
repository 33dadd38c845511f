#!/usr/bin/env bash
# Starts the local Kubernetes cluster on 127.0.0.1 (or reuses the one already
# running from the same state directory) and prints its kubeconfig path on
# stdout. Progress goes to stderr.
#
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler, and kwok
#   with three fake nodes (kwok-node-0..2) on which pods become Running and
#   Ready without a container runtime.
#
# Environment:
#   KAMAJI_CLUSTER_STATE  state directory (default ${XDG_RUNTIME_DIR:-/tmp}/kamaji-rs-cluster)
#   KAMAJI_CLUSTER_BIN    directory holding the binaries (default: what `build.sh cluster` prints;
#                         build.sh builds them first when needed)
#   KAMAJI_CLUSTER_START_TIMEOUT  seconds to wait for each step (default 120)
#
# State directory: kubeconfig (admin, O=system:masters), pki/, data/etcd/,
# logs/<component>.log, pids/<component>, ports/<component>, bin (the bin path).
# Two callers never both start a cluster: a lock beside the state directory
# serialises them, and the second finds the first's cluster healthy and reuses
# it. A state directory whose processes died is cleaned and started afresh.
# A running cluster is reused as it is, even after build.sh rebuilt the
# binaries: down.sh, then up.sh, to run the new ones.
set -euo pipefail

# Only the kubeconfig path goes to stdout (fd 3); everything else to stderr.
exec 3>&1 1>&2

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

timeout=${KAMAJI_CLUSTER_START_TIMEOUT:-120}
state=$cluster_state
service_cidr=10.0.0.0/24
pod_cidr=10.244.0.0/16

cluster_lock

if cluster_healthy; then
  cluster_log "reusing the cluster running from $state"
  echo "$state/kubeconfig" >&3
  exit 0
fi

if [[ -e "$state" ]]; then
  cluster_log "$state holds a cluster that is not healthy; cleaning it"
  cluster_stop
  rm -rf "$state"
fi

if [[ -n "${KAMAJI_CLUSTER_BIN:-}" ]]; then
  bin=$KAMAJI_CLUSTER_BIN
else
  bin=$("$cluster_here/build.sh" cluster)
fi
for name in "${cluster_components[@]}" kubectl; do
  [[ -x "$bin/$name" ]] || { cluster_log "missing $bin/$name"; exit 1; }
done

started=$SECONDS
mkdir -p "$state"/{pki,data/etcd,logs,pids,ports,kwok}
chmod 700 "$state" "$state/data/etcd"
echo "$bin" >"$state/bin"
pki=$state/pki

# If anything below fails, stop what was started; the logs stay for a look,
# and the next up.sh cleans the directory.
on_exit() {
  local rc=$?
  if ((rc != 0)); then
    cluster_log "start failed (exit $rc); logs in $state/logs"
    local f
    for f in "$state"/logs/*.log; do
      [[ -f "$f" ]] || continue
      echo "--- last lines of $f" >&2
      tail -n 15 "$f" >&2 || true
    done
    cluster_stop || true
  fi
}
trap on_exit EXIT

# --- ports: free ones on 127.0.0.1, below the ephemeral range so outgoing
# connections do not take them between now and the bind.
read -r port_etcd port_peer port_api port_kcm port_sched < <(python3 - <<'EOF'
import random, socket
ports = []
for p in random.sample(range(20000, 32000), 200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    ports.append(p)
    if len(ports) == 5:
        break
print(*ports)
EOF
)
[[ -n "${port_sched:-}" ]] || { cluster_log "could not find free ports on 127.0.0.1"; exit 1; }
for p in etcd:$port_etcd etcd-peer:$port_peer kube-apiserver:$port_api \
  kube-controller-manager:$port_kcm kube-scheduler:$port_sched; do
  echo "${p#*:}" >"$state/ports/${p%%:*}"
done
cluster_log "ports: etcd $port_etcd, kube-apiserver $port_api, kube-controller-manager $port_kcm, kube-scheduler $port_sched"

# --- PKI: one CA for serving and client certificates, and the service-account
# key pair. ECDSA P-256 keys: quick to generate, accepted everywhere here.
newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
# sign <name> <subject> <extensions>
sign() {
  local name=$1 subject=$2 ext=$3
  newkey "$pki/$name.key"
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -out "$pki/$name.crt" \
    -extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "$ext") 2>/dev/null
  rm "$pki/$name.csr"
}
(
  umask 077
  newkey "$pki/ca.key"
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=kamaji-rs-local-ca" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$pki/ca.crt"
  sign apiserver "/CN=kube-apiserver" \
    "extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  sign admin "/O=system:masters/CN=kubernetes-admin" "extendedKeyUsage=clientAuth"
  sign controller-manager "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth"
  sign scheduler "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth"
  newkey "$pki/sa.key"
  openssl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
)

# kubeconfig <file> <cert name>
kubeconfig() {
  local file=$1 cert=$2
  (
    umask 077
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kamaji-rs-local
  cluster:
    server: https://127.0.0.1:$port_api
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $cert
  user:
    client-certificate-data: $(base64 -w0 "$pki/$cert.crt")
    client-key-data: $(base64 -w0 "$pki/$cert.key")
contexts:
- name: kamaji-rs-local
  context:
    cluster: kamaji-rs-local
    user: $cert
current-context: kamaji-rs-local
EOF
  )
}
kubeconfig "$state/controller-manager.kubeconfig" controller-manager
kubeconfig "$state/scheduler.kubeconfig" scheduler

# start <name> <args...>: in its own session, with no descriptor of this shell
# (stdout, the lock, or a pipe the caller reads to its end), so it outlives the
# caller and never holds it up; tracked by its pid file. (A background job of
# a non-interactive shell is no process-group leader, so setsid calls
# setsid(2) and execs in place: $! is the component's own pid.)
start() {
  local name=$1
  shift
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-"
    done
    exec setsid "$bin/$name" "$@" </dev/null >"$state/logs/$name.log" 2>&1
  ) &
  echo $! >"$state/pids/$name"
  cluster_log "started $name (pid $!)"
}

# wait_until <what> <component> <command...>: polls until the command succeeds,
# failing early when the component died.
wait_until() {
  local what=$1 name=$2 deadline=$((SECONDS + timeout))
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ! cluster_pid "$name" >/dev/null; then
      cluster_log "$name exited while waiting for $what"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      cluster_log "timed out after ${timeout}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
  cluster_log "$what ($((SECONDS - started))s)"
}

start etcd \
  --name=local \
  --data-dir="$state/data/etcd" \
  --listen-client-urls="http://127.0.0.1:$port_etcd" \
  --advertise-client-urls="http://127.0.0.1:$port_etcd" \
  --listen-peer-urls="http://127.0.0.1:$port_peer" \
  --initial-advertise-peer-urls="http://127.0.0.1:$port_peer" \
  --initial-cluster="local=http://127.0.0.1:$port_peer" \
  --initial-cluster-state=new \
  --unsafe-no-fsync \
  --log-level=warn
etcd_healthy() { curl -sf --max-time 2 "http://127.0.0.1:$port_etcd/health" | grep -q '"health":"true"'; }
wait_until "etcd healthy" etcd etcd_healthy

# The endpoint reconciler refuses a loopback advertise address (the API server
# exits: "may not be in the loopback range"), so it is off: the `kubernetes`
# Service in `default` has no endpoints, which nothing here needs, since every
# client of this cluster runs on the host.
start kube-apiserver \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --secure-port="$port_api" \
  --etcd-servers="http://127.0.0.1:$port_etcd" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range="$service_cidr" \
  --allow-privileged=true \
  --cert-dir="$pki"
kubectl() { "$bin/kubectl" --kubeconfig="$state/kubeconfig" "$@"; }
kubeconfig "$state/kubeconfig" admin
wait_until "kube-apiserver ready" kube-apiserver cluster_api_ready "$port_api"

# The client CA of the secure ports of the controller manager and the
# scheduler comes from the flag, not from the extension-apiserver-authentication
# ConfigMap (which lacks the front-proxy CA here: the lookup logs an error
# every few seconds).
start kube-controller-manager \
  --kubeconfig="$state/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$state/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$state/controller-manager.kubeconfig" \
  --authentication-skip-lookup \
  --client-ca-file="$pki/ca.crt" \
  --bind-address=127.0.0.1 \
  --secure-port="$port_kcm" \
  --leader-elect=false \
  --controllers='*' \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$pki/sa.key" \
  --root-ca-file="$pki/ca.crt" \
  --cluster-signing-cert-file="$pki/ca.crt" \
  --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$service_cidr" \
  --cluster-name=kamaji-rs-local

start kube-scheduler \
  --kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/scheduler.kubeconfig" \
  --authorization-kubeconfig="$state/scheduler.kubeconfig" \
  --authentication-skip-lookup \
  --client-ca-file="$pki/ca.crt" \
  --bind-address=127.0.0.1 \
  --secure-port="$port_sched" \
  --leader-elect=false

# kwok plays the Stages in kwok/stages/ on the nodes annotated
# kwok.x-k8s.io/node=fake and their pods; no server of its own (no port). It
# renews the nodes' Leases (the node lifecycle controller's heartbeat), gives
# the nodes InternalIP 127.0.0.1 and the pods fake IPs from the pod CIDR.
# KWOK_WORKDIR keeps it from reading the user's ~/.kwok/kwok.yaml.
stages=$(printf '%s,' "$cluster_here"/kwok/stages/*.yaml)
KWOK_WORKDIR="$state/kwok" start kwok \
  --kubeconfig="$state/kubeconfig" \
  --config="${stages%,}" \
  --manage-all-nodes=false \
  --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
  --manage-nodes-with-label-selector= \
  --node-lease-duration-seconds=40 \
  --node-ip=127.0.0.1 \
  --cidr="$pod_cidr"

healthz() { curl -sfk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
wait_until "kube-controller-manager healthy" kube-controller-manager healthz "$port_kcm"
wait_until "kube-scheduler healthy" kube-scheduler healthz "$port_sched"

kubectl apply -f "$cluster_here/kwok/nodes.yaml" >/dev/null
nodes_ready() {
  local ready
  ready=$(kubectl get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}')
  [[ -n "$ready" && "$ready" != *False* && "$ready" != *Unknown* && $(grep -c True <<<"$ready") -ge 3 ]]
}
wait_until "fake nodes Ready" kwok nodes_ready
wait_until "default ServiceAccount" kube-controller-manager kubectl -n default get serviceaccount default

for name in "${cluster_components[@]}"; do
  cluster_pid "$name" >/dev/null || { cluster_log "$name is not running"; exit 1; }
done
cluster_log "cluster up in $((SECONDS - started))s; KUBECONFIG=$state/kubeconfig"
echo "$state/kubeconfig" >&3
