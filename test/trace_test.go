//go:build linux

package test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// Two agents that share nothing but export.trace_key, one that sees only
// host processes and one that sees only containers, each exporting to a
// receiver of its own: a client in a container (pid and mount namespaces,
// a docker-like cgroup, the host's network) connects to a server on the
// host. The containers' agent exports the CLIENT span, the host's agent
// the SERVER span, and the two join: one trace ID, the SERVER span's
// parent the CLIENT span. A second connection between the same two
// processes is another trace.
func TestTwoAgentsJoinOneTrace(t *testing.T) {
	requireRoot(t)
	const key = "connwatch test cluster key, 32 B"
	hostRecv, ctrRecv := otlptest.Start(t), otlptest.Start(t)
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + hostRecv.Endpoint()}, "-c", writeTempConfig(t,
		"telemetry: {listen: \"\"}\nexport: {trace_key: \""+key+"\"}\nvisibility: {host: [network], default: []}\n"))
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + ctrRecv.Endpoint(), "CONNWATCH_TRACE_KEY=" + key}, "-c", writeTempConfig(t,
		"telemetry: {listen: \"\"}\nmonitor: containers\n"))

	id := randomContainerID(t)
	client := startHostNetChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })
	ln := listen(t, "tcp4", "127.0.0.1:0")

	// span waits for the span of kind on r whose client port is port.
	span := func(r *otlptest.Receiver, who string, kind tracepb.Span_SpanKind, port int) otlptest.Span {
		t.Helper()
		portKey := "network.local.port"
		if kind == tracepb.Span_SPAN_KIND_SERVER {
			portKey = "client.port"
		}
		got, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
			return s.Kind == kind && s.Attrs()[portKey] == int64(port)
		})
		if err != nil {
			t.Fatalf("%s agent, %v span of client port %d: %v", who, kind, port, err)
		}
		return got[0]
	}
	traces := map[string]bool{}
	for i := range 2 {
		client.dial(t, ln.Addr().String())
		if client.Remote != int(portOf(t, ln.Addr())) {
			t.Fatalf("client connected to port %d, want %s", client.Remote, ln.Addr())
		}
		cs := span(ctrRecv, "containers'", tracepb.Span_SPAN_KIND_CLIENT, client.Local)
		ss := span(hostRecv, "host's", tracepb.Span_SPAN_KIND_SERVER, client.Local)
		t.Logf("connection %d from port %d: CLIENT %x/%x, SERVER %x/%x under %x", i+1, client.Local,
			cs.TraceId, cs.SpanId, ss.TraceId, ss.SpanId, ss.ParentSpanId)

		// Each end under its own workload, as the agent that saw it
		// names it.
		if got := cs.ResourceAttrs()["container.id"]; got != id {
			t.Errorf("CLIENT span's container.id %v, want %s", got, id)
		}
		if got := cs.ResourceAttrs()["process.pid"]; got != int64(client.ConnPID) {
			t.Errorf("CLIENT span's process.pid %v, want %d", got, client.ConnPID)
		}
		if got := ss.ResourceAttrs()["process.pid"]; got != int64(os.Getpid()) {
			t.Errorf("SERVER span's process.pid %v, want the server's %d", got, os.Getpid())
		}
		if got := ss.ResourceAttrs()["container.id"]; got != nil {
			t.Errorf("SERVER span's container.id %v, want none (a host process)", got)
		}

		if !bytes.Equal(cs.TraceId, ss.TraceId) {
			t.Errorf("connection %d: CLIENT trace %x, SERVER trace %x: not joined", i+1, cs.TraceId, ss.TraceId)
		}
		if !bytes.Equal(ss.ParentSpanId, cs.SpanId) || len(cs.ParentSpanId) != 0 {
			t.Errorf("connection %d: SERVER span's parent %x, CLIENT span %x (its parent %x)", i+1, ss.ParentSpanId, cs.SpanId, cs.ParentSpanId)
		}
		traces[fmt.Sprintf("%x", cs.TraceId)] = true
	}
	if len(traces) != 2 {
		t.Errorf("two connections between the same processes, %d trace(s): %v", len(traces), traces)
	}

	// Neither agent exported the other's end.
	for _, s := range hostRecv.Spans() {
		if s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Attrs()["server.port"] == int64(portOf(t, ln.Addr())) {
			t.Errorf("the host's agent exported the container's CLIENT span (pid %v)", s.ResourceAttrs()["process.pid"])
		}
	}
	for _, s := range ctrRecv.Spans() {
		if s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs()["server.port"] == int64(portOf(t, ln.Addr())) {
			t.Errorf("the containers' agent exported the host's SERVER span (pid %v)", s.ResourceAttrs()["process.pid"])
		}
	}
}

// childNAT is childEnv's value for natChild.
const childNAT = "nat"

// The address natChild's client connects to and the rule that sends it
// to the listener, as kube-proxy sends a Service's ClusterIP to a pod.
const (
	natVIP      = "127.0.0.2"
	natVIPPort  = 80
	natRuleTmpl = "table ip connwatch_test { chain out { type nat hook output priority -100; ip daddr %s tcp dport %d dnat to 127.0.0.1:%d; }; }\n"
)

// natChild runs in a network namespace of its own: it brings lo up,
// listens on 127.0.0.1, has nft translate natVIP:natVIPPort to that
// listener, connects to natVIP:natVIPPort, accepts, and reports
// "connected <client port> <listener port> <host pid>". It keeps the
// connection until stdin closes.
func natChild() int {
	ln, ok := loListener("nat child")
	if !ok {
		return 1
	}
	port := ln.Addr().(*net.TCPAddr).Port
	nft := exec.Command("nft", "-f", "-")
	nft.Stdin = strings.NewReader(fmt.Sprintf(natRuleTmpl, natVIP, natVIPPort, port))
	if out, err := nft.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "nat child: nft: %v %s\n", err, out)
		return 1
	}
	c, err := net.Dial("tcp4", net.JoinHostPort(natVIP, strconv.Itoa(natVIPPort)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "nat child: dial:", err)
		return 1
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		fmt.Fprintln(os.Stderr, "nat child: accept:", err)
		return 1
	}
	defer s.Close()
	fmt.Printf("connected %d %d %d\n", c.LocalAddr().(*net.TCPAddr).Port, port, hostPID(os.Getpid()))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// Destination NAT between the ends, as kube-proxy applies to a Service's
// ClusterIP: the client connects to 127.0.0.2:80, netfilter sends the
// connection to a listener on 127.0.0.1, so the client's socket names one
// server and the accepted socket another. The CLIENT span (server
// 127.0.0.2:80) and the SERVER span (server 127.0.0.1:<listener>) still
// join, because the IDs hash only the client's end and its ISN, which the
// translation leaves alone.
func TestTraceJoinsThroughDNAT(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		skipOrFail(t, "nft (Debian package nftables) is needed to set up the DNAT rule: %v", err)
	}
	r := otlptest.Start(t)
	startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()})
	child := startChild(t, syscall.CLONE_NEWNET, childNAT, nil)
	if !child.out.Scan() {
		t.Fatalf("nat child exited before connecting: %v", child.out.Err())
	}
	var ok string
	var clientPort, listenPort, pid int
	if _, err := fmt.Sscan(child.out.Text(), &ok, &clientPort, &listenPort, &pid); err != nil || ok != "connected" {
		t.Fatalf("nat child said %q", child.out.Text())
	}

	wait := func(what string, match func(otlptest.Span) bool) otlptest.Span {
		t.Helper()
		got, err := r.WaitSpans(exportTimeout, 1, match)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return got[0]
	}
	cs := wait("the CLIENT span", func(s otlptest.Span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_CLIENT && s.Attrs()["network.local.port"] == int64(clientPort) &&
			s.ResourceAttrs()["process.pid"] == int64(pid)
	})
	ss := wait("the SERVER span", func(s otlptest.Span) bool {
		return s.Kind == tracepb.Span_SPAN_KIND_SERVER && s.Attrs()["client.port"] == int64(clientPort) &&
			s.ResourceAttrs()["process.pid"] == int64(pid)
	})
	if got := cs.Attrs(); got["server.address"] != natVIP || got["server.port"] != int64(natVIPPort) {
		t.Errorf("CLIENT span's server %v:%v, want the address it connected to, %s:%d", got["server.address"], got["server.port"], natVIP, natVIPPort)
	}
	if got := ss.Attrs(); got["server.address"] != "127.0.0.1" || got["server.port"] != int64(listenPort) {
		t.Errorf("SERVER span's server %v:%v, want the translated 127.0.0.1:%d", got["server.address"], got["server.port"], listenPort)
	}
	t.Logf("client :%d → %s:%d, translated to 127.0.0.1:%d: CLIENT %x/%x, SERVER %x/%x under %x", clientPort, natVIP, natVIPPort,
		listenPort, cs.TraceId, cs.SpanId, ss.TraceId, ss.SpanId, ss.ParentSpanId)
	if !bytes.Equal(cs.TraceId, ss.TraceId) || !bytes.Equal(ss.ParentSpanId, cs.SpanId) {
		t.Errorf("through DNAT: CLIENT %x/%x, SERVER %x under %x: not joined", cs.TraceId, cs.SpanId, ss.TraceId, ss.ParentSpanId)
	}
}
