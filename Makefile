# connwatch — `make help` lists the targets.

GO        ?= go
BIN       := bin/connwatch
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
SUDO      := $(shell [ "$$(id -u)" = 0 ] || echo sudo -E)
ARGS      ?=
FUZZTIME  ?= 20s

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-18s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/connwatch (static, no clang needed: the BPF object is committed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/connwatch

.PHONY: run
run: ## build and run the agent (a table on a terminal, JSON lines when piped; needs root, uses sudo if not root); ARGS=... passes flags
	@$(MAKE) -s --no-print-directory build
	@$(SUDO) ./$(BIN) $(ARGS)

.PHONY: test
test: ## vet, unit tests, and, as root, the privileged tests (they skip with a reason otherwise)
	$(GO) vet ./...
	@# -p 1: the privileged tests count the machine's connections; other
	@# packages' tests must not make theirs at the same time.
	$(GO) test -p 1 -count=1 -race ./...

.PHONY: test-unit
test-unit: ## unit tests only (no root needed)
	$(GO) test -count=1 -race $$($(GO) list ./... | grep -v /test)

.PHONY: test-privileged
test-privileged: ## the privileged tests, failing instead of skipping when they cannot run
	$(SUDO) env "PATH=$$PATH" CONNWATCH_REQUIRE_PRIVILEGED=1 $(GO) test -count=1 -v ./test/

.PHONY: test-outage
test-outage: build ## the long privileged outage tests make test skips (collector down 5 min with a queue directory, slow collector at 2 000 connections/s; ~7 min)
	$(SUDO) env "PATH=$$PATH" CONNWATCH_BIN=$(CURDIR)/$(BIN) CONNWATCH_REQUIRE_PRIVILEGED=1 CONNWATCH_LONG_TESTS=1 $(GO) test -count=1 -v -timeout 30m -run '^TestOutage(DiskQueueFiveMinutes|SlowCollector)$$' ./test/

# Fuzzing instruments only this module's packages (test/fuzzcover.sh):
# with gRPC, protobuf and the OpenTelemetry SDK instrumented too, the
# engine's per-input scan of their coverage counters capped the otel
# targets at ~6 000 inputs/s.
FUZZ_TARGETS = event:FuzzDecode config:FuzzParse otel:FuzzEncode otel:FuzzEncodeWire otel:FuzzEventPath
FUZZ = $(GO) test -run '^$$' -toolexec $(CURDIR)/test/fuzzcover.sh

.PHONY: fuzz
fuzz: ## run each fuzz target (decoder, config parser, OTLP encoder, event path) for FUZZTIME (default 20s)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} (./$${t%%:*}/, $(FUZZTIME))"; \
		$(FUZZ) -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) ./$${t%%:*}/; \
	done

.PHONY: fuzz-long
fuzz-long: ## each fuzz target to 10^7 executions (about 70 minutes on 2 cores, most of it FuzzEncode; not in CI)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== $${t#*:} (./$${t%%:*}/, 10^7 executions) $$(date -u +%T)"; \
		$(FUZZ) -fuzz "^$${t#*:}\$$" -fuzztime 10000000x -timeout 0 ./$${t%%:*}/; \
	done; echo "== done $$(date -u +%T)"

SOAK_DURATION ?= 10m
SOAK_RATE     ?= 500

.PHONY: soak
soak: build ## run the agent SOAK_DURATION (10m) at SOAK_RATE connections/s against a local OTLP receiver; report RSS, goroutines, counters
	$(SUDO) $(GO) run ./test/soak -bin $(BIN) -duration $(SOAK_DURATION) -rate $(SOAK_RATE)

.PHONY: bench
bench: build ## measure BPF time, connection-rate overhead, loss, user-space throughput and RSS next to bpftrace, then the Go benchmarks (root; ~3 min; BENCH_FLAGS=...)
	$(SUDO) env "PATH=$$PATH" bench/run.sh

.PHONY: deps
deps: ## install the Debian packages that `make generate` (clang, llvm, libbpf-dev) and the privileged tests (nftables, docker.io, containerd, busybox-static) need
	command -v clang >/dev/null && [ -f /usr/include/bpf/bpf_helpers.h ] && command -v nft >/dev/null && \
	  command -v dockerd >/dev/null && command -v containerd >/dev/null && [ -x /bin/busybox ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang llvm libbpf-dev nftables docker.io containerd busybox-static; }

.PHONY: generate
generate: ## regenerate the committed BPF object and Go bindings (bpf2go; needs clang)
	$(GO) generate ./bpf/

.PHONY: check-generated
check-generated: generate ## fail if the committed BPF output differs from a fresh `make generate`
	@git diff --exit-code --stat -- bpf/ || { echo "bpf2go output is stale: run 'make generate' and commit"; exit 1; }

VM_KERNELS ?= 5.10 6.1 6.12
VM_MODES   ?= fentry,kprobe,tracepoint
# Guests run two at a time, one vCPU each: the 2-core CI machine.
VM_JOBS    ?= 2
# arm64 guests (qemu-system-aarch64 -machine virt, TCG) on trixie's 6.12,
# with the same tests cross-compiled; "" leaves them out.
VM_KERNELS_ARM64 ?= 6.12
# Emulating arm64 is ~3x slower than x86-64: the two tests that fill the
# kernel's LRU maps with 10 000+ sockets (arch-independent map behaviour,
# covered by every x86-64 row) would take ~6 minutes each there.
VM_SKIP_ARM64 ?= $(VM_SKIP)|TestOpenConnectionsBounded|TestPendingAttemptsBounded
# User-space behaviour (export back-pressure, outages, queue files, TLS,
# capabilities) does not depend on the kernel or the attach mode: tested
# on the host only. So is the trace join through DNAT (netfilter and the
# ID derivation; the guests have no nft), whose kernel part, the ISN of
# both ends, TestTwoAgentsJoinOneTrace checks in every guest. And the
# tests against real dockerd and containerd, which the guests do not have
# (what they check is user space: runtimes' files and APIs). Sampling,
# the connection metrics and the /metrics names are user space too.
VM_SKIP    ?= TestAgent(SurvivesCollectorOutage|SlowCollector|CounterInvariant|ShutdownIsBounded|TLS|MTLS|ReducedCapabilities)$$|TestOutage(NothingLost|DiskQueue|SlowCollector|InvalidArgument|QueueDirLocked|CorruptQueueFile)|TestTraceJoinsThroughDNAT|TestDockerContainerNames|TestContainerdCRINames|TestSamplingAndMetrics|TestMetricsNames|TestMetricsSeriesCap

.PHONY: vmtest
vmtest: build ## run the privileged tests in QEMU on Debian 5.10, 6.1 and 6.12 (x86-64) and 6.12 (arm64) kernels in every attach mode (installs qemu, downloads kernels)
	CGO_ENABLED=0 $(GO) test -c -o bin/connwatch-privileged.test ./test/
	CGO_ENABLED=0 $(GO) test -c -o bin/connwatch-check.test ./check/
	test/vm/matrix.sh --kernels "$(VM_KERNELS)" --axis CONNWATCH_ATTACH=$(VM_MODES) --smp 1 --jobs $(VM_JOBS) \
	  --host tracepoint --host-env CONNWATCH_BIN=$(CURDIR)/$(BIN) \
	  --add $(BIN):/connwatch/connwatch --env CONNWATCH_BIN=/connwatch/connwatch \
	  --env CONNWATCH_REQUIRE_PRIVILEGED=1 -- bin/connwatch-privileged.test -test.v -test.count=1 -test.skip '$(VM_SKIP)'
	@# One vCPU here too: under software emulation a two-vCPU 6.12 guest
	@# panics now and then on an int3 left by kernel text patching.
	test/vm/matrix.sh --kernels "$(VM_KERNELS)" --smp 1 --jobs $(VM_JOBS) \
	  --env CONNWATCH_REQUIRE_PRIVILEGED=1 -- bin/connwatch-check.test -test.v -test.count=1
ifneq ($(strip $(VM_KERNELS_ARM64)),)
	CGO_ENABLED=0 GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/arm64/connwatch ./cmd/connwatch
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -c -o bin/arm64/connwatch-privileged.test ./test/
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -c -o bin/arm64/connwatch-check.test ./check/
	test/vm/matrix.sh --arch arm64 --kernels "$(VM_KERNELS_ARM64)" --axis CONNWATCH_ATTACH=$(VM_MODES) --smp 1 --jobs $(VM_JOBS) --timeout 900 \
	  --add bin/arm64/connwatch:/connwatch/connwatch --env CONNWATCH_BIN=/connwatch/connwatch \
	  --env CONNWATCH_REQUIRE_PRIVILEGED=1 -- bin/arm64/connwatch-privileged.test -test.v -test.count=1 -test.skip '$(VM_SKIP_ARM64)'
	test/vm/matrix.sh --arch arm64 --kernels "$(VM_KERNELS_ARM64)" --smp 1 \
	  --env CONNWATCH_REQUIRE_PRIVILEGED=1 -- bin/arm64/connwatch-check.test -test.v -test.count=1
endif

.PHONY: e2e
e2e: build ## build (cached) and start a real Jaeger v2 and OTel Collector, run the agent against them and check what arrives
	CONNWATCH_BIN=$(CURDIR)/$(BIN) deploy/e2e/run.sh

.PHONY: lint
lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

.PHONY: clean
clean: ## remove build output
	rm -rf bin
