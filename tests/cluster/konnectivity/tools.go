//go:build tools

// Package tools pins konnectivity's server and agent (the published module
// sigs.k8s.io/apiserver-network-proxy), so `go mod tidy` keeps their
// dependencies in go.sum. A module of its own: apiserver-network-proxy's go.mod
// replaces konnectivity-client with a local directory, so `go install mod@version`
// refuses it, and its k8s.io/* v0.34 requirements must not move the cluster's.
package tools

import (
	_ "sigs.k8s.io/apiserver-network-proxy/cmd/agent"
	_ "sigs.k8s.io/apiserver-network-proxy/cmd/server"
)
