//go:build linux

package test

// Real container runtimes: Debian's dockerd and containerd (with its CRI
// plugin), started by the tests with their state in temporary
// directories, no bridge and no CNI, containers on the host's network so
// that every connection stays on loopback.

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// A connection from `docker run --name web-frontend` on a real dockerd
// carries the container's name and image, its ID, and the pids of its
// processes, read from Docker's on-disk records (docker_root), and with
// those gone from the Engine API (docker_socket).
func TestDockerContainerNames(t *testing.T) {
	requireRoot(t)
	bins := lookPaths(t, "docker.io", "dockerd", "docker")
	if p, err := exec.LookPath("/usr/bin/docker"); err == nil {
		bins["docker"] = p // Debian's client, of the daemon's version
	}
	dir, err := os.MkdirTemp("", "cw-docker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	startDaemon(t, dir, "dockerd.log", bins["dockerd"], "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"-H", "unix://"+sock, "--pidfile", filepath.Join(dir, "dockerd.pid"))
	waitSocket(t, sock, "dockerd")
	env := []string{"DOCKER_HOST=unix://" + sock}
	for i := 0; ; i++ {
		if exec.Command(bins["docker"], "-H", "unix://"+sock, "info").Run() == nil {
			break
		}
		if i > 100 {
			t.Fatal("dockerd not ready")
		}
		time.Sleep(200 * time.Millisecond)
	}
	rootfs := filepath.Join(dir, "rootfs.tar")
	if err := os.WriteFile(rootfs, busyboxRootfs(t), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, env, bins["docker"], "import", rootfs, "demo/busybox:1")

	for _, src := range []struct{ name, config string }{
		{"config.v2.json", "enrich: {docker_root: " + filepath.Join(dir, "data") + ", docker_socket: \"\", containerd_state: \"\", cri_socket: \"\"}\n"},
		{"Engine API", "enrich: {docker_root: \"\", docker_socket: " + sock + ", containerd_state: \"\", cri_socket: \"\"}\n"},
	} {
		t.Run(src.name, func(t *testing.T) {
			r := otlptest.Start(t)
			startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c",
				writeTempConfig(t, "telemetry: {listen: \"\"}\n"+src.config))
			ln := acceptAll(t)
			port := int(portOf(t, ln.Addr()))
			name := "web-frontend"
			id := run(t, env, bins["docker"], "run", "-d", "--name", name, "--network", "host", "demo/busybox:1",
				"sh", "-c", fmt.Sprintf("while :; do echo hi | nc 127.0.0.1 %d; sleep 0.2; done", port))
			defer run(t, env, bins["docker"], "rm", "-f", name)
			initPID := run(t, env, bins["docker"], "inspect", "-f", "{{.State.Pid}}", id)

			s := waitContainerSpan(t, r, port, map[string]string{"container.name": name})
			res := s.ResourceAttrs()
			for k, v := range map[string]string{
				"container.id": id, "container.runtime.name": "docker", "container.image.name": "demo/busybox",
				"service.name":       name,
				"process.parent_pid": initPID, // nc's parent: the container's sh, its init
			} {
				if fmt.Sprint(res[k]) != v {
					t.Errorf("%s = %v, want %s", k, res[k], v)
				}
			}
			// busybox from /proc/PID/exe, or nc, the comm, when nc exited
			// before it could be read.
			if exe := res["process.executable.name"]; exe != "busybox" && exe != "nc" {
				t.Errorf("process.executable.name = %v, want busybox or nc", exe)
			}
			if tags, _ := res["container.image.tags"].([]any); len(tags) != 1 || tags[0] != "1" {
				t.Errorf("container.image.tags = %v, want [1]", res["container.image.tags"])
			}
			if c := fmt.Sprint(res["connwatch.cgroup"]); !strings.Contains(c, id) {
				t.Errorf("connwatch.cgroup %q does not name the container", c)
			}
			pid := fmt.Sprint(res["process.pid"])
			if b, err := os.ReadFile("/proc/" + pid + "/cgroup"); err == nil && !strings.Contains(string(b), id) {
				// nc may be gone already; when it is not, it is in the container.
				t.Errorf("process.pid %s is not in the container: %s", pid, b)
			}
			t.Logf("%s: pid %s (parent %s) → %s %s image %s:%v", src.name, pid, initPID, res["service.name"],
				res["container.id"], res["container.image.name"], res["container.image.tags"])
		})
	}
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

// A real containerd with its CRI plugin: a pod sandbox "demo" in namespace
// "shop" on the host's network, with its cgroup parent set as the kubelet
// sets it, runs a container whose connections carry the pod's and the
// container's names (from the OCI bundle's annotations, and from the CRI
// API), its pod UID and container ID. A pod without a cgroup parent puts
// its container in /k8s.io/<id>, which is recognised too.
func TestContainerdCRINames(t *testing.T) {
	requireRoot(t)
	if runtime.GOARCH != "amd64" {
		skipOrFail(t, "the test image is built for amd64")
	}
	bins := lookPaths(t, "containerd", "containerd", "ctr", "containerd-shim-runc-v2", "runc")
	dir, err := os.MkdirTemp("", "cw-ctrd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	state := filepath.Join(dir, "state")
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "demo/pause:1"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
`, filepath.Join(dir, "root"), state, sock, filepath.Join(dir, "cni-bin"), filepath.Join(dir, "cni-conf"))), 0o644); err != nil {
		t.Fatal(err)
	}
	startDaemon(t, dir, "containerd.log", bins["containerd"], "--config", conf)
	waitSocket(t, sock, "containerd")
	ctr := func(args ...string) string {
		return run(t, nil, bins["ctr"], append([]string{"--address", sock, "-n", "k8s.io"}, args...)...)
	}
	for ref, cmd := range map[string][]string{"demo/pause:1": {"/bin/sleep", "1000000"}, "demo/busybox:1": {"/bin/sh"}} {
		tarball := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(ref)+".tar")
		criImage(t, tarball, ref, cmd)
		ctr("images", "import", "--snapshotter", "native", tarball)
	}

	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	// Closed after the pods' cleanups (registered later, run earlier),
	// which stop and remove the sandboxes through it; a shim left running
	// would outlive containerd with its container.
	t.Cleanup(func() { conn.Close() })
	cri := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	ln := acceptAll(t)
	port := int(portOf(t, ln.Addr()))
	hostNet := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE}

	// startPod runs a pod sandbox and a container in it that connects to
	// port every 200 ms; it returns the container's ID.
	startPod := func(name, uid, cgroupParent string, labels map[string]string) string {
		t.Helper()
		sb := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "shop", Uid: uid},
			Labels:   labels,
			Linux: &runtimeapi.LinuxPodSandboxConfig{
				CgroupParent:    cgroupParent,
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: hostNet},
			},
		}
		pod, err := cri.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
		if err != nil {
			t.Fatalf("RunPodSandbox %s: %v", name, err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := cri.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
				t.Errorf("StopPodSandbox %s: %v", name, err)
			}
			if _, err := cri.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
				t.Errorf("RemovePodSandbox %s: %v", name, err)
			}
		})
		c, err := cri.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId,
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "client"},
				Image:    &runtimeapi.ImageSpec{Image: "demo/busybox:1"},
				Command:  []string{"/bin/sh", "-c", fmt.Sprintf("while :; do echo hi | nc 127.0.0.1 %d; sleep 0.2; done", port)},
				Labels:   map[string]string{"io.kubernetes.container.name": "client"},
				Linux: &runtimeapi.LinuxContainerConfig{
					SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: hostNet},
				},
			},
			SandboxConfig: sb,
		})
		if err != nil {
			t.Fatalf("CreateContainer in %s: %v", name, err)
		}
		if _, err := cri.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatalf("StartContainer in %s: %v", name, err)
		}
		return c.ContainerId
	}

	uid := "4f1d7c2e-9a3b-4c5d-8e6f-0a1b2c3d4e5f"
	id := startPod("demo", uid, "/kubepods/besteffort/pod"+uid, map[string]string{"app.kubernetes.io/name": "checkout"})
	id2 := startPod("loose", "5a2e8d3f-0b4c-4d6e-9f70-1b2c3d4e5f60", "", nil)

	for _, src := range []struct {
		name, criSocket string
		service         string
	}{
		// Least privilege: the OCI bundles, read-only, name pod,
		// namespace, container and image, not the pod's labels.
		{"OCI bundle", `""`, "client"},
		// With the CRI socket too, the pod's app.kubernetes.io/name.
		{"OCI bundle and CRI API", sock, "checkout"},
	} {
		t.Run(src.name, func(t *testing.T) {
			r := otlptest.Start(t)
			startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t,
				"telemetry: {listen: \"\"}\nenrich: {docker_root: \"\", docker_socket: \"\", containerd_state: "+state+", cri_socket: "+src.criSocket+"}\n"))
			s := waitContainerSpan(t, r, port, map[string]string{"k8s.pod.name": "demo"})
			res := s.ResourceAttrs()
			for k, v := range map[string]string{
				"k8s.pod.name": "demo", "k8s.namespace.name": "shop", "k8s.container.name": "client",
				"k8s.pod.uid": uid, "container.id": id, "container.name": "client",
				"container.image.name": "docker.io/demo/busybox", "service.name": src.service,
			} {
				if fmt.Sprint(res[k]) != v {
					t.Errorf("%s = %v, want %s", k, res[k], v)
				}
			}
			t.Logf("pod demo: %v", res)

			// No cgroup parent: /k8s.io/<id>.
			s = waitContainerSpan(t, r, port, map[string]string{"container.id": id2, "k8s.pod.name": "loose"})
			res = s.ResourceAttrs()
			if res["container.runtime.name"] != "containerd" {
				t.Errorf("container without a cgroup parent: runtime %v, want containerd", res["container.runtime.name"])
			}
			if c := fmt.Sprint(res["connwatch.cgroup"]); c != "/k8s.io/"+id2 {
				t.Errorf("connwatch.cgroup %q, want /k8s.io/%s", c, id2)
			}
		})
	}
}

// Metadata sources that cannot answer never hold events back: with Docker's
// data root missing and a Docker socket that accepts connections and never
// answers, a container's connections are reported at once, with its
// container.id, and the agent warns once per source.
func TestBrokenRuntimeSources(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	hang := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", hang)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	r := otlptest.Start(t)
	agent := startAgentEnv(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + r.Endpoint()}, "-c", writeTempConfig(t,
		"telemetry: {listen: \"\"}\nenrich: {docker_root: "+filepath.Join(dir, "no-docker")+", docker_socket: "+hang+
			", containerd_state: \"\", cri_socket: \"\"}\n"))
	id := randomContainerID(t)
	child := startNamespacedChild(t, func(pid int) { intoContainerCgroup(t, id, pid) })
	for i := range 4 {
		start := time.Now()
		child.connect(t, false)
		got, err := r.WaitSpans(exportTimeout, 1, func(s otlptest.Span) bool {
			return s.Attrs()["network.local.port"] == int64(child.Local) && s.ResourceAttrs()["container.id"] == id
		})
		if err != nil {
			t.Fatalf("connection %d of the container: %v", i+1, err)
		}
		t.Logf("connection %d reported after %v, container.name %v", i+1, time.Since(start).Round(time.Millisecond), got[0].ResourceAttrs()["container.name"])
		time.Sleep(time.Second)
	}
	stderr := agent.stderr.String()
	for _, src := range []string{"docker files " + filepath.Join(dir, "no-docker", "containers"), "docker API " + hang} {
		n := 0
		for _, line := range strings.Split(stderr, "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, `msg="container metadata source unavailable`) &&
				strings.Contains(line, `source="`+src+`"`) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d warnings for %s, want 1:\n%s", n, src, stderr)
		}
	}
}
