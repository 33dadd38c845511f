#!/usr/bin/env bash
# The quick start: the reference walkthrough, live, on the local cluster.
# Starts (or reuses) the cluster, installs the CRDs, runs the operator, applies
# a DataStore and the tenant k8s-133, waits for Ready, shows the tenant, its
# Secrets and their expiry, then rotates the x509 Secrets and prints their
# "rotated at" lines. The cluster keeps running afterwards (make cluster-down).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "building kamaji and starting the local cluster"
cargo build --quiet --bin kamaji
kamaji=$PWD/target/debug/kamaji
KUBECONFIG=$(tests/cluster/up.sh)
export KUBECONFIG
state=$(dirname "$KUBECONFIG")
PATH="$(cat "$state/bin"):$PATH"
export PATH

step "installing the CRDs"
show kubectl apply --server-side -f crds/kamaji.clastix.io.yaml
kubectl wait --for condition=established --timeout=60s crd/tenantcontrolplanes.kamaji.clastix.io crd/datastores.kamaji.clastix.io >/dev/null

step "a DataStore CA and the DataStore 'default'"
kubectl create namespace kamaji-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if ! kubectl -n kamaji-system get secret etcd-ca >/dev/null 2>&1; then
  ca_dir=$(mktemp -d)
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=etcd-ca \
    -keyout "$ca_dir/ca.key" -out "$ca_dir/ca.crt" 2>/dev/null
  kubectl -n kamaji-system create secret generic etcd-ca \
    --from-file=ca.crt="$ca_dir/ca.crt" --from-file=ca.key="$ca_dir/ca.key" >/dev/null
  rm -rf "$ca_dir"
fi
show kubectl apply -f samples/datastore.yaml

step "starting the operator (log: $state/logs/kamaji.log)"
# One process outside the cluster: no leader election; endpoints on free local
# ports; only the default namespace, so tests running on the same cluster keep
# their tenants to themselves.
# --tenant-cluster-setup=false: the local cluster has no kube-proxy, so the demo
# tenant's ClusterIP is not reachable from this host (and its pods are kwok fakes).
"$kamaji" manager --kubeconfig "$KUBECONFIG" --leader-elect=false --watch-namespace default \
  --tenant-cluster-setup=false \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >"$state/logs/kamaji.log" 2>&1 &
operator=$!
trap 'kill $operator 2>/dev/null || true' EXIT

step "the tenant k8s-133"
show kubectl apply -f samples/tenant.yaml
echo "waiting for Ready ..."
for _ in $(seq 1 120); do
  status=$(kubectl get tcp k8s-133 -o jsonpath='{.status.kubernetesResources.version.status}' 2>/dev/null || true)
  [[ "$status" == Ready ]] && break
  sleep 1
done
[[ "$status" == Ready ]] || { echo "k8s-133 did not become Ready (status: ${status:-none}); see $state/logs/kamaji.log" >&2; exit 1; }
show kubectl get tcp
show kubectl get secret -l kamaji.clastix.io/name=k8s-133
show "$kamaji" certs check-expiration k8s-133 -n default

step "rotating every x509 Secret"
generation=$(kubectl get deployment k8s-133 -o jsonpath='{.metadata.generation}')
# --overwrite: on a re-run the annotation already holds the previous rotation time.
show kubectl annotate secret -l kamaji.clastix.io/certificate_lifecycle_controller=x509 certs.kamaji.clastix.io/rotate="" --overwrite
for _ in $(seq 1 60); do
  pending=$(kubectl get secrets -l kamaji.clastix.io/certificate_lifecycle_controller=x509 -o json |
    jq '[.items[] | select(.metadata.annotations["certs.kamaji.clastix.io/rotate"] == "")] | length')
  [[ "$pending" == 0 ]] && break
  sleep 1
done
echo '$ kubectl get secrets -l kamaji.clastix.io/certificate_lifecycle_controller=x509 -ojson | jq -r ...'
kubectl get secrets -l kamaji.clastix.io/certificate_lifecycle_controller=x509 -ojson |
  jq -r '.items[] | "\(.metadata.name) rotated at \(.metadata.annotations["certs.kamaji.clastix.io/rotate"])"'
# The Secrets are written at once; the control plane rolls once the batch has
# settled (--rollout-batch-window): wait for that one rollout.
for _ in $(seq 1 60); do
  [[ "$(kubectl get deployment k8s-133 -o jsonpath='{.metadata.generation}')" -gt "$generation" ]] && break
  sleep 0.5
done
kubectl rollout status deployment/k8s-133 --timeout=120s
show kubectl get replicasets -l kamaji.clastix.io/name=k8s-133
show kubectl get tcp

step "the operator's readiness and metrics"
endpoint() { grep -o "serving $1 on http://[0-9.:]*" "$state/logs/kamaji.log" | head -1 | sed 's|.*http://||'; }
probes=$(endpoint '/healthz and /readyz')
metrics=$(endpoint '/metrics')
show curl -s "http://$probes/readyz"
echo "\$ curl -s http://$metrics/metrics | grep -E '^kamaji_(certificate_expiration_timestamp_seconds|certificates_current|leader)'"
curl -s "http://$metrics/metrics" | grep -E '^kamaji_(certificate_expiration_timestamp_seconds|certificates_current|leader)' || true

step "done"
echo "The cluster keeps running: export KUBECONFIG=$KUBECONFIG PATH=$(cat "$state/bin"):\$PATH"
echo "Run the operator again with: $kamaji manager --kubeconfig \$KUBECONFIG --leader-elect=false --tenant-cluster-setup=false"
echo "Stop the cluster with: make cluster-down"
