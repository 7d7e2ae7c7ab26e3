#!/usr/bin/env bash
# `make bench`: build the agent and the bench, install bpftrace if it is
# missing, run every measurement (one table), then the Go micro-benchmarks
# of the hot paths. Needs root. Extra flags for bench/ (see
# `bin/connwatch-bench -h`) come from the arguments or BENCH_FLAGS, e.g.
# `make bench BENCH_FLAGS=-quick`.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
started=$(date +%s)

die() { echo "make bench: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (it loads BPF programs and sets kernel.bpf_stats_enabled); run it as root"
command -v "$GO" >/dev/null || die "$GO not found on PATH"
[ -w /proc/sys/kernel/bpf_stats_enabled ] || die "/proc/sys/kernel/bpf_stats_enabled is not writable (kernel without BPF stats, or a read-only /proc)"

# The peer measured side by side: bpftrace from Debian.
if ! command -v bpftrace >/dev/null; then
	echo "bench: installing bpftrace (apt-get)" >&2
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y -qq bpftrace >/dev/null 2>&1; then
		apt-get update -qq >/dev/null 2>&1 || true
		apt-get install -y -qq bpftrace >/dev/null 2>&1 ||
			echo "bench: could not install bpftrace; its column will say unavailable" >&2
	fi
fi

stats_old=$(cat /proc/sys/kernel/bpf_stats_enabled)
bench_pid=""
cleanup() {
	if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
		# The bench stops the agent, bpftrace and its receiver on SIGTERM;
		# they also die with it (PR_SET_PDEATHSIG).
		kill -TERM "$bench_pid" 2>/dev/null || true
		wait "$bench_pid" 2>/dev/null || true
	fi
	echo "$stats_old" >/proc/sys/kernel/bpf_stats_enabled 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

CGO_ENABLED=0 "$GO" build -trimpath -o bin/connwatch-bench ./bench || die "building bench/ failed"

rc=0
# shellcheck disable=SC2086 # BENCH_FLAGS is a list of flags
./bin/connwatch-bench ${BENCH_FLAGS:-} "$@" &
bench_pid=$!
wait "$bench_pid" || rc=$?
bench_pid=""

echo
echo "Go micro-benchmarks of the hot paths (go test -run '^\$' -bench . -benchmem):"
for pkg in ./event/ ./enrich/ ./otel/; do
	"$GO" test -run '^$' -bench . -benchmem -count 1 "$pkg" 2>&1 | grep -v '^\(goos\|goarch\|cpu\):' || {
		echo "make bench: go test -bench $pkg failed" >&2
		rc=1
	}
done

echo
echo "make bench took $(($(date +%s) - started)) s"
exit "$rc"
