# kamaji-rs targets. `make demo` and `make test` are the README's quick start.
SHELL := /bin/bash
.DEFAULT_GOAL := help
CLUSTER := tests/cluster

.PHONY: help
help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the kamaji binary
	cargo build --release --bin kamaji

.PHONY: cluster-build
cluster-build: ## Build what the tests use: cluster, kubeadm, kubelet, helm (cached; cold: many minutes)
	$(CLUSTER)/build.sh test >/dev/null

.PHONY: cluster-up
cluster-up: ## Start (or reuse) the local cluster (builds only what it runs); prints its kubeconfig
	$(CLUSTER)/up.sh

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, leaving no process behind
	$(CLUSTER)/down.sh

.PHONY: demo
demo: ## Quick start: a working tenant on the local cluster (builds the cluster, kubeadm, kubelet-bootstrap)
	scripts/demo.sh

.PHONY: crds
crds: ## Regenerate crds/ (and the chart's copy) from the Rust types
	cargo run --quiet --bin kamaji -- crd > crds/kamaji.clastix.io.yaml
	cp crds/kamaji.clastix.io.yaml deploy/helm/kamaji-rs/crds/kamaji.clastix.io.yaml

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

# The whole suite: unit tests, PKI checks with openssl, and the integration
# tests on the real local cluster (started if needed, stopped afterwards unless
# KEEP_CLUSTER=1). The reliability suite's table (its output is captured by
# libtest) is printed at the end, passed or failed.
.PHONY: test
test: cluster-build ## Run every test (the local cluster is started and stopped)
	@set -e; \
	if [[ -z "$$KEEP_CLUSTER" ]]; then trap '$(CLUSTER)/down.sh' EXIT; fi; \
	$(CLUSTER)/up.sh >/dev/null; \
	report=$$(mktemp); status=0; \
	KAMAJI_FAULT_REPORT=$$report KAMAJI_FAULT_ITERATIONS=$${KAMAJI_FAULT_ITERATIONS:-2} cargo test || status=$$?; \
	if [[ -s $$report ]]; then echo; echo "reliability suite:"; cat $$report; fi; \
	rm -f $$report; exit $$status

# The fault-injection suite (tests/reliability/): the operator SIGKILLed in each
# flow, the management kube-apiserver and etcd restarted mid-rotation; prints the
# table. `make test` runs every scenario with 2 iterations. KAMAJI_FAULT_SEED
# replays a run, KAMAJI_FAULT_SCENARIOS narrows it (names in faults.rs).
.PHONY: reliability
reliability: cluster-build ## Fault injection, 30 iterations a scenario (KAMAJI_FAULT_ITERATIONS); prints the table
	@set -e; \
	if [[ -z "$$KEEP_CLUSTER" ]]; then trap '$(CLUSTER)/down.sh' EXIT; fi; \
	$(CLUSTER)/up.sh >/dev/null; \
	KAMAJI_FAULT_ITERATIONS=$${KAMAJI_FAULT_ITERATIONS:-30} cargo test --test reliability -- --nocapture

# Fuzzing: every parser of external input (fuzz/README.md). Stable toolchain,
# cargo-fuzz installed from crates.io if missing, build cached outside the tree.
.PHONY: fuzz
fuzz: ## Fuzz every parser for 300 s each (FUZZ_SECONDS=N to change) and print a table
	fuzz/run.sh $${FUZZ_SECONDS:-300}

.PHONY: fuzz-smoke
fuzz-smoke: ## CI's short fuzz run: regressions replayed, then 15 s per target
	fuzz/run.sh 15

.PHONY: bench
bench: ## Benchmarks (criterion)
	cargo bench
