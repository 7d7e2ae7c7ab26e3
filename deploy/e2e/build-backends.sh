#!/usr/bin/env bash
# Builds the two backends connwatch's end-to-end tests export to, from Go
# modules only (no container images, no prebuilt downloads):
#
#   $CACHE/bin/jaeger                  Jaeger v2 (all-in-one), JAEGER_MODULE_VERSION
#   $CACHE/bin/otelcol-connwatch-e2e   an OpenTelemetry Collector made of the
#                                      components in deploy/e2e/collector (its own
#                                      Go module, pinned to one collector release)
#   $CACHE/bin/otelcol-connwatch-gateway  the gateway tier's collector
#                                      (loadbalancing, servicegraph, k8sattributes,
#                                      prometheus; deploy/e2e/gateway, collector
#                                      v0.141.0)
#
# CACHE is ${CONNWATCH_E2E_CACHE:-$HOME/.cache/connwatch-e2e}. A binary is
# rebuilt only when it is missing or its stamp file (same name + .stamp)
# no longer matches the pinned versions, the Go version and, for the
# collector, the content of deploy/e2e/collector. The first Jaeger build
# takes several minutes on 2 cores; later runs return at once.
#
# Usage: deploy/e2e/build-backends.sh [jaeger|otelcol|gateway|all]   (default all)
# Prints the binaries' paths when done.

set -euo pipefail

# Jaeger's Go module is tagged v1.x; v1.76.0 is the same commit as the
# v2.13.0 release (jaegertracing/jaeger image 2.13.0).
JAEGER_MODULE_VERSION=v1.76.0

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
collector_src=$here/collector
gateway_src=$here/gateway
cache=${CONNWATCH_E2E_CACHE:-$HOME/.cache/connwatch-e2e}
bin=$cache/bin
what=${1:-all}

case $what in
jaeger | otelcol | gateway | all) ;;
*)
	echo "usage: $0 [jaeger|otelcol|gateway|all]" >&2
	exit 2
	;;
esac

command -v go >/dev/null || {
	echo "$0: go is not on the PATH" >&2
	exit 1
}
mkdir -p "$bin"
goversion=$(go env GOVERSION)

# up_to_date BINARY STAMP: the binary exists and was built for STAMP.
up_to_date() {
	[[ -x $1 && -f $1.stamp && "$(cat "$1.stamp")" == "$2" ]]
}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }

build_jaeger() {
	local out=$bin/jaeger
	local stamp="jaeger $JAEGER_MODULE_VERSION $goversion"
	if up_to_date "$out" "$stamp"; then
		log "jaeger is up to date ($JAEGER_MODULE_VERSION)"
		return
	fi
	# A throwaway tools module in the cache, so that Jaeger's dependencies
	# never touch the repository's go.mod.
	local mod=$cache/jaeger-tools
	rm -rf "$mod"
	mkdir -p "$mod"
	log "building jaeger $JAEGER_MODULE_VERSION in $mod (first build: several minutes)"
	local start=$SECONDS
	(
		cd "$mod"
		go mod init e2etools >/dev/null 2>&1
		go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_MODULE_VERSION"
		CGO_ENABLED=0 go build -trimpath -o "$out.tmp" github.com/jaegertracing/jaeger/cmd/jaeger
	)
	mv "$out.tmp" "$out"
	printf '%s\n' "$stamp" >"$out.stamp"
	log "jaeger built in $((SECONDS - start))s"
}

# build_module NAME SRC: builds the collector of the Go module in SRC
# into $bin/NAME unless its stamp (a hash of go.mod, go.sum and main.go,
# and the Go version) matches.
build_module() {
	local name=$1 src=$2
	local out=$bin/$name
	local sum
	sum=$(cd "$src" && cat go.mod go.sum main.go | sha256sum | cut -c1-16)
	local stamp="$name $sum $goversion"
	if up_to_date "$out" "$stamp"; then
		log "$name is up to date ($sum)"
		return
	fi
	log "building $name from $src"
	local start=$SECONDS
	(
		cd "$src"
		# The cache's Go module download is shared; -mod=readonly keeps
		# the committed go.mod/go.sum authoritative (and, every module
		# being in go.sum, the checksum database is not asked).
		CGO_ENABLED=0 go build -mod=readonly -trimpath -o "$out.tmp" .
	)
	mv "$out.tmp" "$out"
	printf '%s\n' "$stamp" >"$out.stamp"
	log "$name built in $((SECONDS - start))s"
}

build_otelcol() { build_module otelcol-connwatch-e2e "$collector_src"; }
build_gateway() { build_module otelcol-connwatch-gateway "$gateway_src"; }

case $what in
jaeger) build_jaeger ;;
otelcol) build_otelcol ;;
gateway) build_gateway ;;
all)
	build_otelcol
	build_gateway
	build_jaeger
	;;
esac

[[ $what != jaeger && $what != all ]] || echo "$bin/jaeger"
[[ $what != otelcol && $what != all ]] || echo "$bin/otelcol-connwatch-e2e"
[[ $what != gateway && $what != all ]] || echo "$bin/otelcol-connwatch-gateway"
