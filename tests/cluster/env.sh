#!/usr/bin/env bash
# Prints shell exports for the local cluster, starting it when needed:
#   eval "$(tests/cluster/env.sh)"
# sets KUBECONFIG to the cluster's admin kubeconfig and puts its binaries
# (kubectl, helm, ...) first on PATH. Same environment as up.sh.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
kubeconfig=$("$here/up.sh")
bin=$(cat "$(dirname "$kubeconfig")/bin")
# $PATH is for the shell that evaluates this line.
# shellcheck disable=SC2016
printf 'export KUBECONFIG=%q PATH=%q:"$PATH"\n' "$kubeconfig" "$bin"
