#!/usr/bin/env bash
# make e2e: build (cached) and start a real Jaeger v2, an OpenTelemetry
# Collector and the gateway tier (a trace-ID routing gateway and two
# service-graph collectors) on loopback, run the end-to-end tests against
# them, stop them.
set -euo pipefail
cd "$(dirname "$0")/../.."

cache=${CONNWATCH_E2E_CACHE:-$HOME/.cache/connwatch-e2e}
deploy/e2e/build-backends.sh all
bin=$cache/bin
export CONNWATCH_E2E_OUT=${CONNWATCH_E2E_OUT:-$(mktemp -d /tmp/connwatch-e2e.XXXXXX)}
logdir=$(mktemp -d /tmp/connwatch-e2e-logs.XXXXXX)

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT

"$bin/jaeger" --config deploy/e2e/jaeger.yaml >"$logdir/jaeger.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -fs http://127.0.0.1:13133/status >/dev/null && break; sleep 0.2; done
curl -fs http://127.0.0.1:13133/status >/dev/null || { echo "jaeger did not start:"; cat "$logdir/jaeger.log"; exit 1; }

# wait_port PORT LOG: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
	for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.2; done
	echo "nothing listens on 127.0.0.1:$1:"; tail -30 "$2"; exit 1
}

# The gateway tier: two service-graph collectors behind a gateway that
# routes spans to them by trace ID (as deploy/kubernetes runs them).
export CONNWATCH_E2E_SG_PROMETHEUS_ENDPOINTS=127.0.0.1:24891,127.0.0.1:24892
for i in 1 2; do
	CONNWATCH_E2E_SG_OTLP_GRPC=127.0.0.1:2431$((7 + i)) CONNWATCH_E2E_SG_PROMETHEUS=127.0.0.1:2489$i \
		"$bin/otelcol-connwatch-gateway" --config deploy/e2e/servicegraph-e2e.yaml >"$logdir/servicegraph$i.log" 2>&1 &
	pids+=($!)
done
"$bin/otelcol-connwatch-gateway" --config deploy/e2e/gateway-e2e.yaml >"$logdir/gateway.log" 2>&1 &
pids+=($!)
wait_port 24318 "$logdir/servicegraph1.log"
wait_port 24319 "$logdir/servicegraph2.log"
wait_port 24317 "$logdir/gateway.log"

"$bin/otelcol-connwatch-e2e" --config deploy/e2e/collector-e2e.yaml >"$logdir/collector.log" 2>&1 &
pids+=($!)
wait_port 14317 "$logdir/collector.log"

echo "e2e: jaeger, collector, gateway and two service-graph collectors up (logs in $logdir, collector output in $CONNWATCH_E2E_OUT)"
export CONNWATCH_E2E_GATEWAY_BIN=$bin/otelcol-connwatch-gateway
go test -count=1 -tags e2e -run '^TestE2E' -v ./test/ || {
	for l in collector gateway servicegraph1 servicegraph2; do echo "--- $l log"; tail -30 "$logdir/$l.log"; done
	exit 1
}
