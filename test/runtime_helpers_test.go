//go:build linux

package test

// What the container runtime tests (runtime_test.go) run on: the
// runtimes' programs, a busybox root filesystem and images of it, the
// daemons started and stopped around a test, a listener for the
// containers, and the span of a container's connection.

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/connwatch/connwatch/otel/otlptest"
)

// lookPaths finds each program or skips (fails under
// CONNWATCH_REQUIRE_PRIVILEGED), naming the Debian package to install.
func lookPaths(t *testing.T, pkg string, names ...string) map[string]string {
	t.Helper()
	paths := map[string]string{}
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			skipOrFail(t, "%s is needed (Debian package %s): %v", n, pkg, err)
		}
		paths[n] = p
	}
	return paths
}

// busyboxRootfs writes a tar of a root filesystem holding a static busybox
// and the applets the tests run.
func busyboxRootfs(t *testing.T) []byte {
	t.Helper()
	bb := lookPaths(t, "busybox-static", "busybox")["busybox"]
	bin, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if f, err := elf.NewFile(bytes.NewReader(bin)); err != nil {
		t.Fatalf("%s: %v", bb, err)
	} else if slices.ContainsFunc(f.Progs, func(p *elf.Prog) bool { return p.Type == elf.PT_INTERP }) {
		skipOrFail(t, "%s is dynamically linked; the images need a static one (Debian package busybox-static)", bb)
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}))
	must(tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bin))}))
	_, err = tw.Write(bin)
	must(err)
	for _, a := range []string{"sh", "nc", "sleep"} {
		must(tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}))
	}
	for _, d := range []string{"proc/", "sys/", "dev/", "etc/", "tmp/"} {
		must(tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}))
	}
	must(tw.Close())
	return b.Bytes()
}

// run runs a command, failing the test with its output.
func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// startDaemon starts a runtime daemon and stops it at cleanup (SIGTERM,
// then SIGKILL after 10 s), then lazily unmounts what it left under dir.
func startDaemon(t *testing.T, dir, logName string, name string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, logName))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("%s log (last 3000 bytes):\n%s", name, b[max(0, len(b)-3000):])
			}
		}
		// Mounts the daemon left (overlays, shm, netns): lazily unmounted
		// so that the temporary directory can go.
		if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
					syscall.Unmount(f[4], syscall.MNT_DETACH)
				}
			}
		}
	})
}

// waitSocket waits until a unix socket accepts connections.
func waitSocket(t *testing.T, sock, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not listen on %s within 30 s", what, sock)
}

// acceptAll accepts and closes connections on a loopback listener for the
// containers to connect to.
func acceptAll(t *testing.T) *net.TCPListener {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ln := l.(*net.TCPListener)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return ln
}

// waitContainerSpan waits for a CLIENT span to port whose resource has
// want[k] for every k.
func waitContainerSpan(t *testing.T, r *otlptest.Receiver, port int, want map[string]string) otlptest.Span {
	t.Helper()
	var last map[string]any
	got, err := r.WaitSpans(30*time.Second, 1, func(s otlptest.Span) bool {
		if s.Attrs()["server.port"] != int64(port) || s.Attrs()["connwatch.direction"] != "outbound" {
			return false
		}
		last = s.ResourceAttrs()
		for k, v := range want {
			if fmt.Sprint(last[k]) != v {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("no span to port %d with resource %v: %v; last resource seen: %v", port, want, err, last)
	}
	return got[0]
}

// criImage writes a docker-archive tarball (as `docker save` does) of one
// layer, the busybox rootfs, with ref and cmd, for `ctr images import`.
func criImage(t *testing.T, path, ref string, cmd []string) {
	t.Helper()
	layer := busyboxRootfs(t)
	sum := sha256.Sum256(layer)
	diffID := "sha256:" + hex.EncodeToString(sum[:])
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": cmd},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{ref}, "Layers": []string{"layer.tar"}}})
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct {
		name string
		data []byte
	}{{"layer.tar", layer}, {cfgName, cfg}, {"manifest.json", manifest}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.data))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(f.data)
	}
	tw.Close()
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
