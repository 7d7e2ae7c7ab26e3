#!/usr/bin/env bash
# Run one static binary under test/vm/run.sh on several kernels (optionally
# times several values of one environment variable) and print a result table.
set -euo pipefail

PROG=${0##*/}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
	cat <<EOF
usage: $PROG [--kernels "5.10 6.1 6.12"] [--axis KEY=V1,V2,...] [-q] [RUN.SH OPTIONS] -- BINARY [ARGS...]

Boots each kernel (and, with --axis, each value of KEY, passed to the guest as
--env KEY=V) with test/vm/run.sh, then prints a table of the results.
Exits 0 only if every cell passed.

  --kernels LIST   kernels to run, space or comma separated (default: "5.10 6.1 6.12")
  --axis KEY=VALS  one extra dimension, e.g. CONNWATCH_ATTACH=kprobe,fentry,tracepoint
  --host VALS      also run BINARY directly on this machine's kernel, once per
                   value (of the --axis key), as rows "host"
  --host-env K=V   extra environment for the host rows only (wins over --env)
  -q, --quiet      do not stream guest consoles (they are still written to the logs)
  -j, --jobs N     run up to N rows at once (consoles then go to the logs only);
                   each guest takes one host CPU with --smp 1
  --log-dir DIR    where console logs go (default: a new temporary directory)

Any other option before -- (--env, --add, --modules, --timeout, --bpf-stats, ...)
is passed to run.sh unchanged.

example:
  CGO_ENABLED=0 go test -c -o /tmp/connwatch.test ./test/somepkg
  $PROG --axis CONNWATCH_ATTACH=kprobe,fentry -- /tmp/connwatch.test -test.v -test.run TestAttach
EOF
}

KERNELS="5.10 6.1 6.12"
AXIS_KEY=""
AXIS_VALS=("")
QUIET=0
JOBS=1
ARCH=amd64
LOG_DIR=""
PASS=()
HOST_VALS=()
ENVS=()
HOST_ENVS=()

while [[ $# -gt 0 ]]; do
	case $1 in
	--kernels) KERNELS=${2//,/ }; shift 2 ;;
	--axis)
		[[ $2 == *=* ]] || { echo "$PROG: --axis wants KEY=V1,V2" >&2; exit 2; }
		AXIS_KEY=${2%%=*}
		IFS=, read -r -a AXIS_VALS <<<"${2#*=}"
		shift 2
		;;
	--host) IFS=, read -r -a HOST_VALS <<<"$2"; shift 2 ;;
	--host-env) HOST_ENVS+=("$2"); shift 2 ;;
	--env) ENVS+=("$2"); PASS+=("$1" "$2"); shift 2 ;;
	-q | --quiet) QUIET=1; shift ;;
	-j | --jobs) JOBS=$2; shift 2 ;;
	--arch) ARCH=$2; PASS+=("$1" "$2"); shift 2 ;;
	--log-dir) LOG_DIR=$2; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	--) break ;;
	# run.sh flags without a value
	--bpf-stats | --verbose) PASS+=("$1"); shift ;;
	--*=*) PASS+=("$1"); shift ;;
	--*) PASS+=("$1" "$2"); shift 2 ;;
	*) usage >&2; exit 2 ;;
	esac
done
[[ ${1:-} == -- && $# -ge 2 ]] || { usage >&2; exit 2; }

[[ -n $LOG_DIR ]] || LOG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/connwatch-vm-matrix.XXXXXX")
mkdir -p "$LOG_DIR"
RESULTS=$LOG_DIR/results.tsv
: >"$RESULTS"

rows=()
fail=0

# Each row runs run.sh with its own result file; with --jobs N up to N rows
# run at once, their consoles going only to their logs (the table names
# them), and the rows are reported in order whatever order they end in.
specs=()
for k in $KERNELS; do
	for v in "${AXIS_VALS[@]}"; do
		specs+=("$k|$v")
	done
done

run_row() { # index kernel value
	local i=$1 k=$2 v=$3 extra=()
	shift 3
	[[ -z $AXIS_KEY ]] || extra=(--env "$AXIS_KEY=$v")
	if [[ $QUIET -eq 1 || $JOBS -gt 1 ]]; then
		"$SCRIPT_DIR/run.sh" --kernel "$k" --log-dir "$LOG_DIR" --result-file "$LOG_DIR/row-$i.tsv" \
			"${PASS[@]+"${PASS[@]}"}" "${extra[@]+"${extra[@]}"}" "$@" >/dev/null 2>"$LOG_DIR/row-$i.err"
	else
		"$SCRIPT_DIR/run.sh" --kernel "$k" --log-dir "$LOG_DIR" --result-file "$LOG_DIR/row-$i.tsv" \
			"${PASS[@]+"${PASS[@]}"}" "${extra[@]+"${extra[@]}"}" "$@"
	fi
	echo $? >"$LOG_DIR/row-$i.rc"
}

running=0
for i in "${!specs[@]}"; do
	k=${specs[i]%%|*} v=${specs[i]#*|}
	echo "=== $PROG: kernel $k${AXIS_KEY:+, $AXIS_KEY=$v} (row $((i + 1)) of ${#specs[@]})" >&2
	if [[ $JOBS -gt 1 ]]; then
		run_row "$i" "$k" "$v" "$@" &
		running=$((running + 1))
		if [[ $running -ge $JOBS ]]; then
			wait -n || true
			running=$((running - 1))
		fi
	else
		run_row "$i" "$k" "$v" "$@" || true
	fi
done
wait || true

for i in "${!specs[@]}"; do
	k=${specs[i]%%|*} v=${specs[i]#*|}
	rc=$(cat "$LOG_DIR/row-$i.rc" 2>/dev/null || echo 125)
	if [[ -s $LOG_DIR/row-$i.tsv ]]; then
		IFS=$'\t' read -r _ pkg ver code secs logf arch < <(tail -n 1 "$LOG_DIR/row-$i.tsv")
		cat "$LOG_DIR/row-$i.tsv" >>"$RESULTS"
	else
		pkg=- ver=- code=$rc secs=- logf=$LOG_DIR/row-$i.err arch=$ARCH
	fi
	case $code in
	0) res=PASS ;;
	125) res="ERROR(125)"; fail=1 ;;
	*) res="FAIL($code)"; fail=1 ;;
	esac
	[[ $secs == - ]] || secs=${secs}s
	rows+=("$k|$arch|${AXIS_KEY:+$v}|$pkg|$ver|$res|$secs|$logf")
	if [[ $res != PASS && $JOBS -gt 1 && -f $logf ]]; then
		# Its console was not streamed: show how it failed.
		echo "=== $PROG: kernel $k${AXIS_KEY:+, $AXIS_KEY=$v}: $res; failures and the end of $logf:" >&2
		grep -a -E -- '^--- FAIL|_test\.go:[0-9]+:' "$logf" | tail -n 40 >&2 || true
		tail -n 15 "$logf" >&2
	fi
done

shift # the --
for v in "${HOST_VALS[@]+"${HOST_VALS[@]}"}"; do
	echo "=== $PROG: host kernel $(uname -r)${AXIS_KEY:+, $AXIS_KEY=$v}" >&2
	logf=$LOG_DIR/host-$v.log
	start=$(date +%s)
	set +e
	if [[ $QUIET -eq 1 ]]; then
		env "${ENVS[@]+"${ENVS[@]}"}" ${AXIS_KEY:+"$AXIS_KEY=$v"} "${HOST_ENVS[@]+"${HOST_ENVS[@]}"}" "$@" >"$logf" 2>&1
	else
		env "${ENVS[@]+"${ENVS[@]}"}" ${AXIS_KEY:+"$AXIS_KEY=$v"} "${HOST_ENVS[@]+"${HOST_ENVS[@]}"}" "$@" 2>&1 | tee "$logf"
		(exit "${PIPESTATUS[0]}")
	fi
	code=$?
	set -e
	case $code in
	0) res=PASS ;;
	*) res="FAIL($code)"; fail=1 ;;
	esac
	rows+=("host|$(uname -m)|${AXIS_KEY:+$v}|$(uname -r)|-|$res|$(($(date +%s) - start))s|$logf")
done

{
	echo
	hdr="KERNEL|ARCH|${AXIS_KEY:-}|PACKAGE|VERSION|RESULT|TIME|LOG"
	printf '%s\n' "$hdr" "${rows[@]}" | if [[ -z $AXIS_KEY ]]; then cut -d'|' -f1,2,4-; else cat; fi |
		awk -F'|' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) }; if (NF > n) n = NF }
			END { for (r = 1; r <= NR; r++) { l = ""; for (i = 1; i <= n; i++) l = l sprintf(i < n ? "%-" w[i] "s  " : "%s", c[r, i]); print l } }'
}
exit "$fail"
