//go:build linux

package test

// Real container runtimes: Debian's dockerd and containerd (with its CRI
// plugin), started by the tests with their state in temporary
// directories, no bridge and no CNI, containers on the host's network so
// that every connection stays on loopback.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/connwatch/connwatch/otel/otlptest"
)

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
