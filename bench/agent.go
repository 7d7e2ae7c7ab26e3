package main

// The agent under measurement as a separate process: its config, its
// output (OTLP to the bench's receiver, event lines or OTel JSON lines to
// /dev/null), its BPF programs and /metrics, and its log once stopped.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

type agentProc struct {
	*child
	progs       *progSet // the BPF programs the agent holds
	metricsAddr string   // host:port of its /metrics; "" if unknown
}

// agentConfig writes the agent's config file: defaults, except that the
// agent serves its /metrics on a port of its choosing on 127.0.0.1 (no
// clash with a running agent; the bench reads the port from its log). It
// returns "" when this build of the agent does not accept it.
func agentConfig(o options) (string, error) {
	path := filepath.Join(o.dir, "agent.yaml")
	if err := os.WriteFile(path, []byte("telemetry:\n  listen: \"127.0.0.1:0\"\n"), 0o644); err != nil {
		return "", err
	}
	out, err := exec.Command(o.agent, "config", "validate", "-c", path).CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "note: the agent does not accept %s (%s); running it with defaults\n", path, strings.TrimSpace(string(out)))
		return "", nil
	}
	return path, nil
}

// agentOutput is where the agent under test sends its records.
type agentOutput int

const (
	outOTLP   agentOutput = iota // OTLP/gRPC to the bench's receiver
	outEvents                    // -format events on stdout, to /dev/null (no OpenTelemetry)
	outStdout                    // no endpoint: OTel JSON lines on stdout, to /dev/null
)

// startAgent runs bin/connwatch with the given output and waits until its
// probes are attached (see warmUp for the export path). rcv is used with
// outOTLP only.
func startAgent(o options, rcv *receiver, out agentOutput, name string) (*agentProc, error) {
	var args []string
	if o.agentConfig != "" {
		args = append(args, "-c", o.agentConfig)
	}
	env := cleanEnv()
	switch out {
	case outOTLP:
		env = append(env, "OTEL_EXPORTER_OTLP_ENDPOINT="+rcv.endpoint())
	case outEvents:
		args = append(args, "-format", "events")
	}
	cmd := exec.Command(o.agent, args...)
	cmd.Env = env
	if out != outOTLP {
		devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
		if err != nil {
			return nil, err
		}
		defer devnull.Close() // the child has its own copy once started
		cmd.Stdout = devnull
	}
	c, err := startChild("agent", cmd, filepath.Join(o.dir, name+".log"))
	if err != nil {
		return nil, err
	}
	a := &agentProc{child: c}
	if _, err := c.out.waitLine("probes attached", 60*time.Second, c.alive); err != nil {
		c.stop(5 * time.Second)
		return nil, fmt.Errorf("agent: %w", err)
	}
	if o.agentConfig != "" {
		// The telemetry server starts after the probes are attached.
		if line, err := c.out.waitLine("serving /metrics", 5*time.Second, c.alive); err == nil {
			a.metricsAddr = slogFields(line)["addr"]
		}
	}
	ps, err := programsOf(c.pid())
	if err != nil {
		c.stop(5 * time.Second)
		return nil, fmt.Errorf("agent's BPF programs: %w", err)
	}
	if len(ps.progs) == 0 {
		c.stop(5 * time.Second)
		return nil, errors.New("the agent says its probes are attached but holds no BPF program")
	}
	a.progs = ps
	return a, nil
}

// drops scrapes the agent's /metrics and sums up what it dropped.
func (a *agentProc) drops() dropSummary {
	m, err := scrapeMetrics(a.metricsAddr)
	return summarizeDrops(m, err)
}

// warmUp makes a connection (sampled: connections) until a client span
// reaches the receiver: the export path is up.
func warmUp(rcv *receiver, srv *server, alive func() error, sampled bool) error {
	if err := rcv.watchPort(srv.port); err != nil {
		return err
	}
	base, err := rcv.counts()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; ; i++ {
		// sampled: the agent samples successful connections, so one
		// connection's span may never come; 20 more every 50 ms.
		for n := 0; n < 20 && (i == 0 || sampled); n++ {
			if err := srv.dialOnce(); err != nil {
				return fmt.Errorf("warm-up connection: %w", err)
			}
			if i == 0 {
				break
			}
		}
		c, err := rcv.counts()
		if err != nil {
			return err
		}
		if c.ClientSpans > base.ClientSpans {
			return nil
		}
		if err := alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errors.New("the warm-up connection's span did not reach the OTLP receiver within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAndParse stops the agent with SIGTERM (it flushes its exports) and
// parses its log.
func (a *agentProc) stopAndParse() (agentLog, error) {
	err := a.stop(30 * time.Second)
	a.progs.close()
	a.progs = nil
	l := parseAgentLog(a.out.snapshot())
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return l, err
	}
	if err != nil {
		return l, fmt.Errorf("agent exited with %v; its last lines:\n%s", err, indent(a.out.tail(15)))
	}
	return l, nil
}

// cleanEnv is the environment without OTEL_* variables, so that the
// agent runs with default export settings whatever the caller's shell has.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}
