//go:build linux

package test

// The agent's export over TLS and mutual TLS to an otlptest receiver with
// certificates of a fresh CA, and the secrecy of the headers it sends.

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// handshakes counts the TLS handshakes an otlptest receiver sees: those
// begun (a ClientHello arrived) and those whose certificates verified.
// Receiver.Rejected counts only requests failed by SetFailure; a handshake
// the server refuses never becomes a request, so it is counted here, as
// begun minus verified.
type handshakes struct{ begun, verified atomic.Int64 }

func (h *handshakes) rejected() int64 { return h.begun.Load() - h.verified.Load() }

// tlsReceiver starts an OTLP receiver serving TLS with a certificate from
// a fresh CA, requiring a client certificate signed by it with mtls.
func tlsReceiver(t *testing.T, mtls bool) (*otlptest.Receiver, *otlptest.Certs, *handshakes) {
	t.Helper()
	certs, err := otlptest.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hs := &handshakes{}
	cfg := certs.ServerTLS(mtls)
	cfg.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		hs.begun.Add(1)
		return nil, nil // carry on with cfg
	}
	cfg.VerifyConnection = func(tls.ConnectionState) error {
		hs.verified.Add(1)
		return nil
	}
	return otlptest.Start(t, otlptest.WithTLS(cfg)), certs, hs
}

// otlpAgent runs the agent exporting to r with env and extra args.
func otlpAgent(t *testing.T, r *otlptest.Receiver, env []string, args ...string) *agentProc {
	t.Helper()
	requireRoot(t)
	env = append([]string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, env...)
	args = append([]string{"-attach", string(attachMode(t)), "-c", writeTempConfig(t, noTelemetry)}, args...)
	a := launchAgent(t, agentOpts{env: env}, args...)
	a.waitLog(t, "visibility map updated")
	return a
}

// hostSpan connects to a fresh listener and waits for the span of that
// connection (server.port is the listener's port).
func hostSpan(t *testing.T, r *otlptest.Receiver) otlptest.Span {
	t.Helper()
	ln := listen(t, "tcp4", "127.0.0.1:0")
	port := ln.Addr().(*net.TCPAddr).Port
	lport := hostConnect(t, ln)
	spans, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
		return s.Attrs()["server.port"] == int64(port) && s.Attrs()["network.local.port"] == int64(lport)
	})
	if err != nil {
		t.Fatalf("span of a host connection to port %d: %v", port, err)
	}
	return spans[0]
}

// Over TLS, with only the CA to trust: the agent verifies the collector's
// certificate and delivers spans; a bearer token from
// OTEL_EXPORTER_OTLP_HEADERS reaches the collector percent-decoded and
// never appears in the agent's logs, even at debug level.
func TestAgentTLS(t *testing.T) {
	requireRoot(t)
	r, certs, hs := tlsReceiver(t, false)
	a := otlpAgent(t, r, []string{
		"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile,
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20s3cr3t-token",
	}, "-log-level", "debug")

	s := hostSpan(t, r)
	if s.Name != "tcp connect" || s.ResourceAttrs()["process.pid"] != int64(os.Getpid()) {
		t.Errorf("span %q with resource %v, want \"tcp connect\" of pid %d", s.Name, s.ResourceAttrs(), os.Getpid())
	}
	if hs.verified.Load() == 0 {
		t.Errorf("spans arrived but no TLS handshake was seen")
	}
	for i, md := range r.Headers() {
		if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer s3cr3t-token" {
			t.Errorf("request %d: authorization %q, want [\"Bearer s3cr3t-token\"]", i, got)
		}
	}

	a.stop(t)
	if strings.Contains(a.stderr.String(), "s3cr3t") {
		t.Errorf("the agent logged the token:\n%s", a.stderr.String())
	}
}

// Mutual TLS: with a client certificate and key the agent's spans arrive;
// without them the collector refuses the handshake and receives nothing.
func TestAgentMTLS(t *testing.T) {
	requireRoot(t)
	t.Run("client certificate", func(t *testing.T) {
		r, certs, _ := tlsReceiver(t, true)
		a := otlpAgent(t, r, []string{
			"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile,
			"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=" + certs.ClientCertFile,
			"OTEL_EXPORTER_OTLP_CLIENT_KEY=" + certs.ClientKeyFile,
		})
		hostSpan(t, r)
		a.stop(t)
	})
	t.Run("no client certificate", func(t *testing.T) {
		r, certs, hs := tlsReceiver(t, true)
		a := otlpAgent(t, r, []string{"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.CAFile})
		ln := listen(t, "tcp4", "127.0.0.1:0")
		hostConnect(t, ln)
		// The exporter connects on its first export: wait for a
		// handshake, then give it a few seconds to (not) deliver.
		deadline := time.Now().Add(exportTimeout)
		for hs.begun.Load() == 0 {
			if time.Now().After(deadline) {
				t.Fatalf("the agent never tried to connect to the collector within %v", exportTimeout)
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(3 * time.Second)
		if n, m := len(r.TraceRequests()), len(r.LogRequests()); n != 0 || m != 0 {
			t.Errorf("the collector received %d trace and %d log requests from a client without a certificate", n, m)
		}
		if hs.verified.Load() != 0 || hs.rejected() == 0 {
			t.Errorf("handshakes: %d begun, %d verified; want every one rejected", hs.begun.Load(), hs.verified.Load())
		}
		t.Logf("%d handshakes rejected", hs.rejected())
		a.stop(t)
	})
}
