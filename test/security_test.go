//go:build linux

package test

// The agent's security: killed with SIGKILL it leaves no BPF object
// behind (this file); it exports over TLS and mutual TLS without leaking
// its headers (security_tls_test.go); it runs as nobody with a few
// capabilities (security_caps_test.go).

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// noTelemetry is a config without the metrics listener, so that agents of
// concurrent tests do not compete for its port.
const noTelemetry = "telemetry:\n  listen: \"\"\n"

// bpfIDs lists the BPF programs, links and maps a process holds file
// descriptors for, from the prog_id, link_id and map_id lines of
// /proc/<pid>/fdinfo/*. (A link's fdinfo names its program too.)
func bpfIDs(t *testing.T, pid int) (progs []ebpf.ProgramID, links []link.ID, maps []ebpf.MapID) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok || (k != "prog_id" && k != "link_id" && k != "map_id") {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil || seen[k+v] {
				continue
			}
			seen[k+v] = true
			switch k {
			case "prog_id":
				progs = append(progs, ebpf.ProgramID(n))
			case "link_id":
				links = append(links, link.ID(n))
			case "map_id":
				maps = append(maps, ebpf.MapID(n))
			}
		}
	}
	return progs, links, maps
}

// bpfAlive returns the objects of the lists that the kernel still has,
// each as "program 12" and so on. An object is gone when looking it up by
// ID fails with ENOENT.
func bpfAlive(t *testing.T, progs []ebpf.ProgramID, links []link.ID, maps []ebpf.MapID) []string {
	t.Helper()
	var alive []string
	check := func(what string, id uint32, err error, c interface{ Close() error }) {
		switch {
		case err == nil:
			c.Close()
			alive = append(alive, fmt.Sprintf("%s %d", what, id))
		case !errors.Is(err, os.ErrNotExist):
			t.Fatalf("looking up %s %d: %v", what, id, err)
		}
	}
	for _, id := range progs {
		p, err := ebpf.NewProgramFromID(id)
		check("program", uint32(id), err, p)
	}
	for _, id := range links {
		l, err := link.NewFromID(id)
		check("link", uint32(id), err, l)
	}
	for _, id := range maps {
		m, err := ebpf.NewMapFromID(id)
		check("map", uint32(id), err, m)
	}
	return alive
}

// An agent killed with SIGKILL runs no cleanup at all, so whatever it
// loaded must be owned by its file descriptors alone: once it is gone, the
// kernel frees every program, link and map it held, and nothing stays
// pinned in the BPF filesystem.
func TestAgentSIGKILLLeavesNothing(t *testing.T) {
	requireRoot(t)
	a := launchAgent(t, agentOpts{},
		"-format", "events", "-attach", string(attachMode(t)), "-c", writeTempConfig(t, noTelemetry))
	a.waitLog(t, "visibility map updated")

	progs, links, maps := bpfIDs(t, a.cmd.Process.Pid)
	if len(progs) == 0 || len(links) == 0 {
		t.Fatalf("the running agent holds programs %v and links %v; want some of each", progs, links)
	}
	if alive := bpfAlive(t, progs, links, maps); len(alive) != len(progs)+len(links)+len(maps) {
		t.Fatalf("before the kill, only %v of programs %v, links %v, maps %v exist", alive, progs, links, maps)
	}
	t.Logf("agent holds programs %v, links %v, maps %v", progs, links, maps)

	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.wait(t, 5*time.Second)
	if ws, ok := a.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("agent ended with %v, want killed by SIGKILL", a.cmd.ProcessState)
	}

	// The kernel frees them after an RCU grace period or from a work
	// queue: give it a few seconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		alive := bpfAlive(t, progs, links, maps)
		if len(alive) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("5s after SIGKILL the kernel still has %v", alive)
		}
		time.Sleep(50 * time.Millisecond)
	}

	err := filepath.WalkDir("/sys/fs/bpf", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // not mounted, or unreadable: nothing of ours there
		}
		if strings.Contains(strings.ToLower(d.Name()), "connwatch") {
			t.Errorf("pinned after SIGKILL: %s", path)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
