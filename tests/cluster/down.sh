#!/usr/bin/env bash
# Stops the local cluster started by up.sh from the same state directory
# (KAMAJI_CLUSTER_STATE, default ${XDG_RUNTIME_DIR:-/tmp}/kamaji-rs-cluster):
# SIGTERM to every process of it, SIGKILL after a grace period
# (KAMAJI_CLUSTER_STOP_GRACE seconds, default 10), then removes the state
# directory. Leaves no process behind; succeeds when nothing runs.
set -euo pipefail

# shellcheck source=lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

cluster_lock
cluster_stop
if [[ -e "$cluster_state" ]]; then
  rm -rf "$cluster_state"
  cluster_log "removed $cluster_state"
fi
