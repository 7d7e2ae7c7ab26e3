// Package otel turns connwatch events into OpenTelemetry log records and
// spans and exports them over OTLP/gRPC, or to standard output as JSON
// lines when no collector endpoint is configured.
//
// # What an event becomes
//
// Every connect attempt (event IDs 400/402), accepted connection (401/403)
// and connect result (410/412) becomes one log record:
//
//   - EventName: event.Name of the ID ("connwatch.tcp.connect",
//     "connwatch.tcp.accept", "connwatch.tcp.connect.result").
//   - Timestamp: the event's wall-clock time; ObservedTimestamp: when Emit
//     ran.
//   - Severity: INFO for attempts, accepts and established connections,
//     WARN for failed ones (refused, timeout, reset, unreachable, closed;
//     any negative retval).
//   - Body: one line for humans, e.g. "curl connect 10.0.0.1:51000 ->
//     93.184.216.34:443 refused (ECONNREFUSED) after 1.2ms".
//
// A connect result also becomes a CLIENT span named "tcp connect" from the
// attempt (Event.Start) to the outcome (Event.Time); an accepted connection
// a SERVER span named "tcp accept" that starts and ends at the accept (the
// kernel reports no earlier time for it). Attempts have no span: their
// result brings it. Each span is the root of its own trace. A failed
// connection's span has status Error with the errno name as description
// ("ECONNREFUSED"); other spans keep status Unset. The log record of an
// event with a span carries that span's trace and span IDs.
//
// Spans and log records share these attributes (semantic conventions
// first, then the kernel event's own fields under connwatch.):
//
//	network.transport      "tcp"
//	network.type           "ipv4" | "ipv6" (of the addresses, v4-mapped ones unmapped)
//	network.peer.address   remote address        network.peer.port   remote port
//	network.local.address  local address         network.local.port  local port
//	server.address/.port   remote end for connects, local end for accepts
//	client.address/.port   remote end, accepts only
//	error.type             errno name, failures only
//	connwatch.event_id     400–403, 410, 412
//	connwatch.retval       0 or -errno
//	connwatch.protocol     "TCP" | "TCPv6" (the kernel's protocol name)
//	connwatch.direction    "outbound" | "inbound"
//	connwatch.outcome      established|refused|timeout|reset|unreachable|closed, results only
//	connwatch.duration_ns  attempt to outcome, results only
//	connwatch.error        errno name, failures only
//	connwatch.remote_family address family, only when it could not be decoded
//
// # Resources
//
// The resource of a record describes the observed workload, not connwatch:
//
//	service.name              executable name (see ServiceName)
//	host.name, host.id, os.type  the host (host.id from /etc/machine-id)
//	process.pid               pid in the host's pid namespace
//	process.parent_pid        parent's pid in the host's pid namespace
//	process.vpid              pid in the process's own pid namespace (not for host processes)
//	process.executable.name   Workload.ExeName, else the comm
//	process.executable.path   Workload.ExePath
//	process.command           argv[0]
//	process.command_args      argv (unless Options.OmitCommandArgs)
//	process.owner             user name of the uid
//	process.user.id           uid
//	process.creation.time     process start, RFC 3339
//	container.id              full container ID
//	container.runtime.name    docker, containerd, cri-o, podman, ...
//	k8s.pod.uid               pod UID
//	connwatch.pid_ns, connwatch.mnt_ns  namespace inums (0 for the host)
//	connwatch.cgroup          cgroup path
//
// service.name is the executable name for host processes and containers
// alike, so that a back end such as Jaeger groups the spans of all
// replicas and restarts of a workload under one service; container.id,
// k8s.pod.uid and process.pid tell the instances apart. OTEL_SERVICE_NAME
// names connwatch itself and is not used for workloads.
//
// OTEL_RESOURCE_ATTRIBUTES is added to every resource. Its attributes
// override the host's (host.name, host.id, os.type) but not the
// workload's: a service.name or process.pid there is ignored.
//
// Resources are encoded once and cached by a key of the event's
// identifying fields (host pid and ppid, namespace pid, uid, namespace
// inums, process start time, executable name and path, container ID),
// which costs no allocation to build and look up; a cached resource whose
// workload's other details (arguments, owner, cgroup, ...) differ from
// the event's is built again.
//
// # Standard output
//
// Without an endpoint, a signal is written as JSON lines (LogLine and
// SpanLine), written directly (jsonline.go) as the events come, a
// connection's log record before its span, and flushed every 200 ms, e.g.
//
//	{"type":"log","time":"...","observed_time":"...","event":"connwatch.tcp.connect","severity":"INFO","body":"curl connect ...","attributes":{...},"resource":{...}}
//	{"type":"span","time":"...","name":"tcp connect","kind":"client","start":"...","end":"...","duration_ns":1200000,"status":"error","status_message":"ECONNREFUSED","trace_id":"...","span_id":"...","attributes":{...},"resource":{...}}
package otel
