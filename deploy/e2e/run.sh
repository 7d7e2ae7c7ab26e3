#!/usr/bin/env bash
# make e2e: build (cached) and start a real Jaeger v2 and OpenTelemetry
# Collector on loopback, run the end-to-end test against them, stop them.
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

"$bin/otelcol-connwatch-e2e" --config deploy/e2e/collector-e2e.yaml >"$logdir/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/14317) 2>/dev/null && break; sleep 0.2; done

echo "e2e: jaeger and collector up (logs in $logdir, collector output in $CONNWATCH_E2E_OUT)"
go test -count=1 -tags e2e -run '^TestE2E' -v ./test/ || { echo "--- collector log"; tail -50 "$logdir/collector.log"; exit 1; }
