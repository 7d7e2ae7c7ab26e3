#!/bin/sh
# fuzzcover.sh: a go test -toolexec wrapper that keeps the fuzzing
# coverage instrumentation (-d=libfuzzer) for this module's packages
# only.
#
# go test -fuzz instruments every package linked into the test binary.
# The worker scans all of their counters after each input: with gRPC,
# protobuf and the OpenTelemetry SDK linked into the otel tests that is
# ~100 KB of counters, ~140 us per input before the target runs (a
# target that does nothing ran at 6 000 inputs/s in ./otel, 44 000/s
# with this wrapper). It also points the fuzzer at protobuf's and gRPC's
# branches instead of ours.
#
# A release compiler's -V=full line is its ID in the build cache, so the
# marker appended to it keeps these objects apart from normal builds.
set -eu
tool=$1
shift
case ${tool##*/} in
compile) ;;
*) exec "$tool" "$@" ;;
esac
if [ "${1-}" = -V=full ]; then
	printf '%s fuzzcover-own-module\n' "$("$tool" "$@")"
	exit 0
fi
pkg=
prev=
for a in "$@"; do
	[ "$prev" = -p ] && pkg=$a
	prev=$a
done
case $pkg in
github.com/connwatch/connwatch | github.com/connwatch/connwatch/*)
	exec "$tool" "$@"
	;;
esac
for a in "$@"; do
	shift
	[ "$a" = -d=libfuzzer ] || set -- "$@" "$a"
done
exec "$tool" "$@"
