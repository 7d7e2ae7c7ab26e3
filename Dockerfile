# syntax=docker/dockerfile:1
#
# connwatch agent image.
#
#   docker build -t connwatch:dev --build-arg VERSION=$(git describe --tags --always) .
#   docker buildx build --platform linux/amd64,linux/arm64 -t connwatch:dev .
#
# The compiled BPF objects are committed (bpf/connwatch_{x86,arm64}_bpfel.o),
# so the build needs no clang, and Go cross-compiles: the build stage runs on
# the builder's own platform and writes the binary for TARGETARCH (amd64 or
# arm64).
#
# The final image is distroless/static, whose default user is root (uid 0):
# loading BPF programs needs uid 0 or the capabilities listed in
# docker-compose.yml / deploy/kubernetes/daemonset.yaml, and reading other
# processes' /proc entries needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
# The :nonroot variant does not work without file capabilities on the binary.
# Run it as docker-compose.yml does: host pid namespace, host /proc at
# /host/proc, /sys/kernel/{btf,tracing} and /sys/fs/{bpf,cgroup} mounted.

FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
RUN case "${TARGETARCH:-amd64}" in \
      amd64|arm64) ;; \
      *) echo "connwatch's BPF objects are built for amd64 and arm64 only, not ${TARGETARCH}" >&2; exit 1 ;; \
    esac
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux GOARCH=${TARGETARCH:-amd64} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /connwatch ./cmd/connwatch

FROM gcr.io/distroless/static-debian12
# The default configuration for a container: host /proc at /host/proc, the
# host's passwd at /host/etc/passwd, metrics and health on 0.0.0.0:9464, the
# OTLP endpoint from OTEL_EXPORTER_OTLP_ENDPOINT (stdout JSON without it).
# Mount another file over it to change it.
COPY deploy/compose/connwatch.yaml /etc/connwatch/connwatch.yaml
COPY --from=build /connwatch /connwatch
USER 0:0
EXPOSE 9464
ENTRYPOINT ["/connwatch"]
CMD ["run", "-c", "/etc/connwatch/connwatch.yaml"]
