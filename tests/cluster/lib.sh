# shellcheck shell=bash
# Shared by up.sh, down.sh and env.sh: where the local cluster keeps its state,
# how to tell that it runs, and how to stop it. Sourced, not executed.

# shellcheck disable=SC2034 # used by the scripts that source this file
cluster_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cluster_state=${KAMAJI_CLUSTER_STATE:-${XDG_RUNTIME_DIR:-/tmp}/kamaji-rs-cluster}
# Beside the state directory, not inside it: down.sh removes the directory
# while later callers may already wait on the lock.
cluster_lock="$cluster_state.lock"
# Start order; stopped in reverse.
cluster_components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

cluster_log() { echo "cluster: $*" >&2; }

# A process that exists and is not a zombie (in a container, pid 1 may never
# reap what it inherits).
cluster_alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ "${stat:0:1}" != Z ]]
}

# Takes the state lock on file descriptor 9 (waits for another up.sh/down.sh).
cluster_lock() {
  mkdir -p "$(dirname "$cluster_lock")"
  exec 9>"$cluster_lock"
  if ! flock -n 9; then
    cluster_log "waiting for another caller holding $cluster_lock ..."
    flock 9
  fi
}

# The pid of a component when that process is alive and still runs the binary
# it was started from (a recycled pid does not count).
cluster_pid() {
  local name=$1 pid exe
  pid=$(cat "$cluster_state/pids/$name" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  # A binary rebuilt under a running process shows as "<path> (deleted)".
  exe=${exe% (deleted)}
  [[ "${exe##*/}" == "$name" ]] || return 1
  echo "$pid"
}

# Healthy: every component alive and the API server answers /readyz.
cluster_healthy() {
  local name port
  [[ -f "$cluster_state/kubeconfig" && -f "$cluster_state/ports/kube-apiserver" ]] || return 1
  for name in "${cluster_components[@]}"; do
    cluster_pid "$name" >/dev/null || return 1
  done
  port=$(cat "$cluster_state/ports/kube-apiserver")
  cluster_api_ready "$port"
}

cluster_api_ready() {
  local port=$1 pki="$cluster_state/pki"
  [[ "$(curl -sf --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$port/readyz" 2>/dev/null)" == ok ]]
}

# Processes of this cluster: those in the pid files, plus any process of one of
# our binaries whose command line names the state directory (a component whose
# pid file was lost). Nothing else is touched.
cluster_processes() {
  local name pid exe cmdline
  for name in "${cluster_components[@]}"; do
    cluster_pid "$name" || true
  done
  for pid in /proc/[0-9]*; do
    pid=${pid#/proc/}
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    exe=${exe% (deleted)}
    case "${exe##*/}" in
      etcd | kube-apiserver | kube-controller-manager | kube-scheduler | kwok) ;;
      *) continue ;;
    esac
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || continue
    [[ "$cmdline" == *"$cluster_state/"* ]] && echo "$pid"
  done
}

# stop_pids <pid...>: SIGTERM, SIGKILL after the grace period.
stop_pids() {
  local grace=${KAMAJI_CLUSTER_STOP_GRACE:-10} pid left i
  (($#)) || return 0
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < grace * 20; i++)); do
    left=()
    for pid in "$@"; do cluster_alive "$pid" && left+=("$pid"); done
    ((${#left[@]})) || return 0
    sleep 0.05
  done
  cluster_log "still running after ${grace}s, killing: ${left[*]}"
  for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    left=()
    for pid in "$@"; do cluster_alive "$pid" && left+=("$pid"); done
    ((${#left[@]})) || return 0
    sleep 0.05
  done
  cluster_log "could not stop: ${left[*]}"
  return 1
}

# Stops every process of the cluster, clients before the API server before
# etcd (an API server whose etcd is gone takes long to drain), then any
# stray. Returns once none is left, zombies included (pid 1 may take a second
# to reap what it inherited).
cluster_stop() {
  local group name pid pids all=() i
  for group in "kwok kube-scheduler kube-controller-manager" kube-apiserver etcd; do
    pids=()
    for name in $group; do
      pid=$(cluster_pid "$name") && pids+=("$pid")
    done
    ((${#pids[@]})) || continue
    cluster_log "stopping $group (${pids[*]})"
    stop_pids "${pids[@]}"
    all+=("${pids[@]}")
  done
  mapfile -t pids < <(cluster_processes | sort -u)
  if ((${#pids[@]})); then
    cluster_log "stopping strays of $cluster_state (${pids[*]})"
    stop_pids "${pids[@]}"
    all+=("${pids[@]}")
  fi
  for ((i = 0; i < 60; i++)); do
    pids=()
    for pid in "${all[@]}"; do [[ -e "/proc/$pid" ]] && pids+=("$pid"); done
    ((${#pids[@]})) || return 0
    sleep 0.05
  done
}
