//go:build linux

package test

// The export queue's directory as the outage tests (outage_test.go) find
// it: locked by the agent using it, and holding batch files that are not
// what the agent wrote.

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// A second agent on a queue directory that one already uses refuses to
// start, naming the directory and the other agent; the first runs on.
func TestOutageQueueDirLocked(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	r := otlptest.Start(t)
	a, port, _ := ogAgent(t, r, ogQueueDirConfig(dir))

	cfg2 := writeTempConfig(t, "telemetry:\n  listen: \"\"\n"+ogQueueDirConfig(dir))
	args := []string{"-c", cfg2}
	if m := os.Getenv("CONNWATCH_ATTACH"); m != "" {
		args = append(args, "-attach", m)
	}
	b := launchAgent(t, agentOpts{env: []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}}, args...)
	if code := b.wait(t, 30*time.Second); code != 1 {
		t.Errorf("second agent exited %d, want 1", code)
	}
	stderr := b.stderr.String()
	pid := strconv.Itoa(a.cmd.Process.Pid)
	if !strings.Contains(stderr, dir) || !strings.Contains(stderr, "in use") || !strings.Contains(stderr, pid) {
		t.Errorf("second agent's stderr does not name %s, \"in use\" and pid %s:\n%s", dir, pid, stderr)
	}
	t.Logf("second agent: %s", strings.TrimSpace(stderr[strings.LastIndex(strings.TrimSpace(stderr), "\n")+1:]))

	healthy(t, port)
	ln, lport := ogListener(t)
	tally := newOgTally(r, lport)
	tally.add(ogDial(ln.Addr().String(), 200, 1, 0, 20).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("first agent after the second was refused: %s", tally.summary())
	}
}

// ogBatchFile is a queue directory batch file: magic "CWQ1", u32
// records, i64 created, u32 body length, u32 CRC-32C, body.
func ogBatchFile(records uint32, bodyLen uint32, crc uint32, body []byte) []byte {
	h := make([]byte, 24)
	copy(h, "CWQ1")
	binary.LittleEndian.PutUint32(h[4:], records)
	binary.LittleEndian.PutUint64(h[8:], uint64(time.Now().UnixNano()))
	binary.LittleEndian.PutUint32(h[16:], bodyLen)
	binary.LittleEndian.PutUint32(h[20:], crc)
	return append(h, body...)
}

// Bad batch files left in the queue directory (truncated, garbage, a body
// that fails its checksum) are reported with their path and set aside as
// *.corrupt; the agent runs on and exports new connections.
func TestOutageCorruptQueueFile(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	for _, s := range []string{"traces", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, s), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	body := []byte("\x0a\x05hello")
	goodCRC := crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))
	truncated := filepath.Join(dir, "traces", "00000000000000000001.batch")
	garbage := filepath.Join(dir, "traces", "00000000000000000002.batch")
	badCRC := filepath.Join(dir, "logs", "00000000000000000001.batch")
	for path, content := range map[string][]byte{
		truncated: ogBatchFile(3, 1000, goodCRC, body),
		garbage:   []byte("this is not a batch file at all, just some garbage bytes \x00\xff\x13\x37"),
		badCRC:    ogBatchFile(3, uint32(len(body)), goodCRC^1, body),
	} {
		if err := os.WriteFile(path, content, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := otlptest.Start(t)
	ns := ogStartNS(t)
	a, port, _ := ogAgent(t, r, ns.visibility()+ogQueueDirConfig(dir))

	// The files whose header is wrong are set aside at start; the one
	// whose body fails its checksum when its turn to be sent comes.
	for _, path := range []string{truncated, garbage, badCRC} {
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, errOld := os.Stat(path)
			_, errNew := os.Stat(path + ".corrupt")
			if errors.Is(errOld, os.ErrNotExist) && errNew == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("%s: not renamed to .corrupt (stat: %v, .corrupt: %v)", path, errOld, errNew)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(a.stderr.String(), path) {
			t.Errorf("agent did not log %s:\n%s", path, a.stderr.String())
		}
	}
	tally := newOgTally(r, ns.lport)
	tally.add(ns.dial(t, 200, 1, 0, 50).conns)
	if !tally.wait(30 * time.Second) {
		t.Errorf("after the bad files: %s", tally.summary())
	}
	healthy(t, port)
	m := ogSettle(t, port, 30*time.Second)
	ogInvariants(t, m, ogRecovered(a.stderr.String()))
	for _, line := range strings.Split(a.stderr.String(), "\n") {
		if strings.Contains(line, "set aside") {
			t.Logf("agent: %s", line)
		}
	}
	t.Logf("%s; logs export_failed %v (the 3 records the bad-checksum file claimed)", tally.summary(),
		m[`connwatch_dropped_total{reason="export_failed",signal="logs",stage="export"}`])
}
