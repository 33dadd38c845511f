#!/usr/bin/env bash
# The quick start: the reference walkthrough, live, on the local cluster, with
# a tenant that works. Starts (or reuses) the cluster, installs the CRDs, runs
# the operator, applies a DataStore backed by a real etcd on 127.0.0.1 and the
# tenant k8s-133 (samples/, aimed at 127.0.0.1 and the cluster's Kubernetes
# version), waits for Ready, and shows the tenant, its Secrets and their
# expiry. Then the tenant's control plane runs for real from the operator's
# Deployment and Secrets (`kamaji dev control-plane`, the code the integration
# tests start tenants with), kubectl answers with the tenant's admin.conf, and a
# node joins with `kubeadm token create --print-join-command` + `kubeadm join`
# (the kubelet's part: tests/cluster/cmd/kubelet-bootstrap, the kubelet's own
# TLS bootstrap code). Finally every x509 Secret is rotated, the control plane
# restarts on the rotated material, and kubectl and the node's credential still
# work. Re-runnable on a running cluster. The cluster keeps running afterwards
# (make cluster-down); the tenant's processes stop with the demo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# A free port on 127.0.0.1, below the ephemeral range (as up.sh picks them);
# kept in a file so a re-run keeps the tenant's and its etcd's ports.
port_of() {
  local file=$1
  if [[ ! -s "$file" ]]; then
    python3 -c 'import random, socket
for p in random.sample(range(20000, 32000), 200):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break' >"$file"
  fi
  cat "$file"
}

# wait_for <what> <seconds> <command...>: polls until the command succeeds.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || { echo "timed out waiting for $what" >&2; return 1; }
    sleep 0.5
  done
}

step "building kamaji, kubeadm and kubelet-bootstrap; starting the local cluster"
cargo build --quiet --bin kamaji
kamaji=${CARGO_TARGET_DIR:-$PWD/target}/debug/kamaji
# The node side of the join: kubeadm and the kubelet's TLS bootstrap (cached).
node_bin=$(tests/cluster/build.sh kubeadm kubelet-bootstrap)
KUBECONFIG=$(tests/cluster/up.sh)
export KUBECONFIG
state=$(dirname "$KUBECONFIG")
bin=$(cat "$state/bin")
PATH="$bin:$PATH"
export PATH
demo=$state/demo
mkdir -p "$demo/logs"
chmod 700 "$demo"
pids=()
stop_all() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait
}
trap stop_all EXIT

step "installing the CRDs"
show kubectl apply --server-side -f crds/kamaji.clastix.io.yaml
# Polled, not `kubectl wait`: on a CRD created a moment ago, whose status has no
# conditions yet, kubectl wait fails (".status.conditions accessor error").
crds_established() {
  local crd
  for crd in tenantcontrolplanes.kamaji.clastix.io datastores.kamaji.clastix.io; do
    [[ "$(kubectl get crd "$crd" -o jsonpath='{.status.conditions[?(@.type=="Established")].status}')" == True ]] || return 1
  done
}
wait_for "the CRDs to be established" 60 crds_established

step "a DataStore CA, an etcd on 127.0.0.1 serving with it, and the DataStore 'default'"
kubectl create namespace kamaji-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
etcd_dir=$demo/etcd
mkdir -p "$etcd_dir"
(
  umask 077
  if ! kubectl -n kamaji-system get secret etcd-ca >/dev/null 2>&1; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=etcd-ca \
      -keyout "$etcd_dir/ca.key" -out "$etcd_dir/ca.crt" 2>/dev/null
    kubectl -n kamaji-system create secret generic etcd-ca \
      --from-file=ca.crt="$etcd_dir/ca.crt" --from-file=ca.key="$etcd_dir/ca.key" >/dev/null
  fi
  kubectl -n kamaji-system get secret etcd-ca -o jsonpath='{.data.ca\.crt}' | base64 -d >"$etcd_dir/ca.crt"
  kubectl -n kamaji-system get secret etcd-ca -o jsonpath='{.data.ca\.key}' | base64 -d >"$etcd_dir/ca.key"
  openssl req -new -newkey rsa:2048 -nodes -subj /CN=etcd-server -keyout "$etcd_dir/server.key" \
    -out "$etcd_dir/server.csr" 2>/dev/null
  openssl x509 -req -in "$etcd_dir/server.csr" -CA "$etcd_dir/ca.crt" -CAkey "$etcd_dir/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days 365 -out "$etcd_dir/server.crt" \
    -extfile <(printf '%s\n' "extendedKeyUsage=serverAuth,clientAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost") 2>/dev/null
  rm "$etcd_dir/server.csr" "$etcd_dir/ca.key"
)
etcd_port=$(port_of "$demo/etcd.port")
etcd_peer=$(port_of "$demo/etcd-peer.port")
# The tenant's etcd requires client certificates of the DataStore CA, as Kamaji's does.
"$bin/etcd" --name=tenants --data-dir="$etcd_dir/data" --log-level=warn \
  --listen-client-urls="https://127.0.0.1:$etcd_port" --advertise-client-urls="https://127.0.0.1:$etcd_port" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
  --initial-cluster="tenants=http://127.0.0.1:$etcd_peer" \
  --client-cert-auth --trusted-ca-file="$etcd_dir/ca.crt" \
  --cert-file="$etcd_dir/server.crt" --key-file="$etcd_dir/server.key" >"$demo/logs/etcd.log" 2>&1 &
pids+=($!)
# samples/datastore.yaml names the etcd of a Kamaji install; here it is the one above.
echo "\$ kubectl apply -f samples/datastore.yaml  # endpoints: [127.0.0.1:$etcd_port]"
kubectl create --dry-run=client -o json -f samples/datastore.yaml |
  jq --arg endpoint "127.0.0.1:$etcd_port" '.spec.endpoints = [$endpoint]' | kubectl apply -f -

step "starting the operator (log: $state/logs/kamaji.log)"
# One process outside the cluster: no leader election; endpoints on free local
# ports; only the default namespace, so tests running on the same cluster keep
# their tenants to themselves.
# The tenant-side controller reaches the tenant at its endpoint, 127.0.0.1:<port>
# (the tenant's address, as in the integration tests), where its API server runs below.
"$kamaji" manager --kubeconfig "$KUBECONFIG" --leader-elect=false --watch-namespace default \
  --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >"$state/logs/kamaji.log" 2>&1 &
pids+=($!)

step "the tenant k8s-133"
tenant_port=$(port_of "$demo/k8s-133.port")
version=$(kubectl version -o json | jq -r .serverVersion.gitVersion)
# samples/tenant.yaml as the walkthrough has it, aimed at this machine: its API
# server on 127.0.0.1:<free port>, the Kubernetes version of the binaries that run it.
echo "\$ kubectl apply -f samples/tenant.yaml  # networkProfile 127.0.0.1:$tenant_port, version $version"
kubectl create --dry-run=client -o json -f samples/tenant.yaml |
  jq --argjson port "$tenant_port" --arg version "$version" \
    '.spec.networkProfile.address = "127.0.0.1" | .spec.networkProfile.port = $port
     | .spec.kubernetes.version = $version' | kubectl apply -f -
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

step "the tenant's control plane, from the operator's Deployment and Secrets (logs: $demo/k8s-133/logs/)"
# The pods of the Deployment are kwok fakes; this runs their kube-apiserver,
# kube-controller-manager and kube-scheduler here, with the Deployment's exact
# flags and its Secret volumes laid out as mounted, on 127.0.0.1, restarting
# them whenever the Deployment rolls (what the integration tests start).
"$kamaji" dev control-plane k8s-133 -n default --bin-dir "$bin" --dir "$demo/k8s-133" \
  >"$demo/logs/control-plane.log" 2>&1 &
pids+=($!)
admin=$demo/admin.conf
(umask 077 && kubectl get secret k8s-133-admin-kubeconfig -o jsonpath='{.data.admin\.conf}' | base64 -d >"$admin")
# Serving, and running the Deployment's current generation.
tenant_serves() {
  [[ "$(cat "$demo/k8s-133/generation" 2>/dev/null)" == "$(kubectl get deployment k8s-133 -o jsonpath='{.metadata.generation}')" ]] &&
    kubectl --kubeconfig "$admin" get --raw /readyz
}
wait_for "the tenant API server (see $demo/k8s-133/logs/)" 120 tenant_serves
# The tenant-side controller connects to 127.0.0.1:<port> and sets the tenant up.
tenant_set_up() {
  [[ "$(kubectl get tcp k8s-133 -o jsonpath='{.status.conditions[?(@.type=="TenantClusterReady")].status}')" == True ]]
}
wait_for "TenantClusterReady (see $state/logs/kamaji.log)" 120 tenant_set_up
show kubectl get tcp k8s-133 -o jsonpath='{.status.conditions[?(@.type=="TenantClusterReady")].message}{"\n"}'
show kubectl --kubeconfig "$admin" cluster-info
show kubectl --kubeconfig "$admin" get configmap -n kube-public cluster-info
show kubectl --kubeconfig "$admin" get clusterrolebindings kubeadm:cluster-admins kubeadm:apiserver-kubelet-client

step "a node joins: kubeadm token create --print-join-command, then kubeadm join"
node="demo-node-0"
node_root=$demo/$node
# A re-run joins afresh: a new node directory, the old Node object gone.
kubectl --kubeconfig "$admin" delete node "$node" --ignore-not-found >/dev/null
rm -rf "$node_root"
mkdir -p "$node_root"
echo "\$ kubeadm token create --print-join-command --kubeconfig $admin"
read -r -a join < <("$node_bin/kubeadm" token create --print-join-command --kubeconfig "$admin")
printf '%s\n' "${join[*]}"
# tests/cluster/node-join.sh runs it in private mount and pid namespaces (its
# /etc/kubernetes and /var/lib/kubelet are $node_root's), with the kubelet's
# part played by kubelet-bootstrap: no container runtime, so the runtime and
# kubelet checks are ignored, and kubeadm does not wait for a kubelet /healthz.
ignored="CRI,ContainerRuntimeVersion,FileContent--proc-sys-net-ipv4-ip_forward,SystemVerification,KubeletVersion,FileExisting-kubelet"
node_join=(tests/cluster/node-join.sh "$node_root" "$node" "$node_bin/kubeadm" "bootstrap:$node_bin/kubelet-bootstrap" --
  "${join[@]:2}" --cri-socket=unix:///var/run/containerd/containerd.sock --skip-phases=kubelet-wait-bootstrap
  --ignore-preflight-errors="$ignored")
((EUID == 0)) || node_join=(sudo "${node_join[@]}")
"${node_join[@]}" || { cat "$node_root"/kubeadm-join.log "$node_root"/kubelet-bootstrap.log >&2; exit 1; }
grep -E 'This node has joined|Cluster info signature' "$node_root/kubeadm-join.log"
jq -c . "$node_root/kubelet-bootstrap.json"
# STATUS Unknown: the node registered, but no kubelet runs to post its status
# (kubelet-bootstrap stops once it bootstrapped and rotated its certificate).
show kubectl --kubeconfig "$admin" get nodes
show kubectl --kubeconfig "$admin" get csr

# The node's credential: kubelet.conf with the client certificate the kubelet
# rotated to (kubelet-client-current.pem links to a path inside the node's
# mount namespace: followed under $node_root).
node_kubectl() {
  local pem
  pem=$node_root/var-lib-kubelet/pki/$(basename "$(readlink "$node_root/var-lib-kubelet/pki/kubelet-client-current.pem")")
  kubectl --kubeconfig "$node_root/etc-kubernetes/kubelet.conf" --client-certificate="$pem" --client-key="$pem" "$@"
}
echo "\$ kubectl --kubeconfig $node_root/etc-kubernetes/kubelet.conf auth whoami  # the node's own credential"
node_kubectl auth whoami

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
tenant_ready() { [[ "$(kubectl get tcp k8s-133 -o jsonpath='{.status.kubernetesResources.version.status}')" == Ready ]]; }
wait_for "k8s-133 Ready again" 60 tenant_ready
show kubectl get replicasets -l kamaji.clastix.io/name=k8s-133
show kubectl get tcp

step "the tenant after the rotation: restarted on the rotated material, still answering"
wait_for "the tenant API server on the rotated material (see $demo/k8s-133/logs/)" 120 tenant_serves
echo "control plane running generation $(cat "$demo/k8s-133/generation") of deployment/k8s-133"
echo "\$ openssl s_client -connect 127.0.0.1:$tenant_port | openssl x509 -noout -serial  # the rotated apiserver.crt"
openssl s_client -connect "127.0.0.1:$tenant_port" </dev/null 2>/dev/null | openssl x509 -noout -serial
echo "stored: $(kubectl get secret k8s-133-api-server-certificate -o jsonpath='{.data.apiserver\.crt}' | base64 -d | openssl x509 -noout -serial)"
show kubectl --kubeconfig "$admin" get nodes
echo "\$ kubectl --kubeconfig $node_root/etc-kubernetes/kubelet.conf get node $node  # the node's credential"
node_kubectl get node "$node"

step "the operator's readiness and metrics"
endpoint() { grep -o "serving $1 on http://[0-9.:]*" "$state/logs/kamaji.log" | head -1 | sed 's|.*http://||'; }
probes=$(endpoint '/healthz and /readyz')
metrics=$(endpoint '/metrics')
show curl -s "http://$probes/readyz"
echo "\$ curl -s http://$metrics/metrics | grep -E '^kamaji_(certificate_expiration_timestamp_seconds|certificates_current|leader)'"
curl -s "http://$metrics/metrics" | grep -E '^kamaji_(certificate_expiration_timestamp_seconds|certificates_current|leader)' || true

step "done"
echo "The cluster keeps running: export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH"
echo "The tenant's etcd, control plane and the operator stop now; make demo starts them again."
echo "Stop the cluster with: make cluster-down"
