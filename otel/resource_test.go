package otel

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/connwatch/connwatch/event"
)

func hostResourceWant() map[string]any {
	return map[string]any{
		"service.name":            "curl",
		"host.name":               "node-1",
		"host.id":                 "0123456789abcdef0123456789abcdef",
		"os.type":                 "linux",
		"process.pid":             int64(1000),
		"process.parent_pid":      int64(900),
		"process.executable.name": "curl",
		"process.executable.path": "/usr/bin/curl",
		"process.command":         "curl",
		"process.command_args":    []string{"curl", "-s", "https://example.com/"},
		"process.owner":           "alice",
		"process.user.id":         int64(1000),
		"process.creation.time":   "2026-11-25T17:00:00Z",
		"connwatch.pid_ns":        int64(0),
		"connwatch.mnt_ns":        int64(0),
		"connwatch.cgroup":        "/user.slice/user-1000.slice/session-3.scope",
	}
}

func containerResourceWant() map[string]any {
	return map[string]any{
		"service.name":            "nginx",
		"host.name":               "node-1",
		"host.id":                 "0123456789abcdef0123456789abcdef",
		"os.type":                 "linux",
		"process.pid":             int64(2001),
		"process.parent_pid":      int64(2000),
		"process.vpid":            int64(7),
		"process.executable.name": "nginx",
		"process.executable.path": "/usr/sbin/nginx",
		"process.command":         "nginx",
		"process.command_args":    []string{"nginx", "-g", "daemon off;"},
		"process.owner":           "root",
		"process.user.id":         int64(0),
		"process.creation.time":   "2026-11-25T17:01:00Z",
		"container.id":            containerID,
		"container.runtime.name":  "containerd",
		"k8s.pod.uid":             "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
		"connwatch.pid_ns":        int64(4026532500),
		"connwatch.mnt_ns":        int64(4026532501),
		"connwatch.cgroup":        "/kubepods.slice/kubepods-pod1b4e28ba.slice/cri-containerd-3f2a.scope",
	}
}

func buildResource(t *testing.T, o Options, ev *event.Event) map[string]any {
	t.Helper()
	base, err := baseAttributes(&o)
	if err != nil {
		t.Fatal(err)
	}
	attrs := appendWorkloadAttributes(base, ev, o.OmitCommandArgs)
	return resourceMapOf(resource.NewWithAttributes(semconv.SchemaURL, attrs...))
}

func TestResourceAttributes(t *testing.T) {
	o := testOptions()
	if got, want := buildResource(t, o, connectEvent()), hostResourceWant(); !equalMaps(got, want) {
		t.Errorf("host process:\n got %v\nwant %v", got, want)
	}
	if got, want := buildResource(t, o, acceptEvent()), containerResourceWant(); !equalMaps(got, want) {
		t.Errorf("container:\n got %v\nwant %v", got, want)
	}

	o.OmitCommandArgs = true
	want := hostResourceWant()
	delete(want, "process.command_args")
	if got := buildResource(t, o, connectEvent()); !equalMaps(got, want) {
		t.Errorf("OmitCommandArgs:\n got %v\nwant %v", got, want)
	}

	// Without enrichment: the comm names the workload.
	ev := connectEvent()
	ev.Workload = nil
	got := buildResource(t, testOptions(), ev)
	want = map[string]any{
		"service.name": "curl", "host.name": "node-1", "host.id": "0123456789abcdef0123456789abcdef",
		"os.type": "linux", "process.pid": int64(1000), "process.parent_pid": int64(900),
		"process.executable.name": "curl", "process.user.id": int64(1000),
		"connwatch.pid_ns": int64(0), "connwatch.mnt_ns": int64(0),
	}
	if !equalMaps(got, want) {
		t.Errorf("no workload:\n got %v\nwant %v", got, want)
	}

	ev.Comm = ""
	if got := buildResource(t, testOptions(), ev); got["service.name"] != UnknownService || got["process.executable.name"] != nil {
		t.Errorf("nameless: %v", got)
	}
}

func TestServiceName(t *testing.T) {
	ev := acceptEvent()
	if got := ServiceName(ev); got != "nginx" {
		t.Errorf("got %q", got)
	}
	ev.Workload = &event.Workload{ExeName: "", ContainerID: containerID}
	if got := ServiceName(ev); got != "nginx" { // the comm
		t.Errorf("got %q", got)
	}
}

// Names from the container runtime: service.name is the workload's own
// name (pod app label, compose service), else the container's name, else
// the executable; the names are resource attributes.
func TestContainerMetaAttributes(t *testing.T) {
	ev := acceptEvent()
	meta := &event.ContainerMeta{Name: "web-frontend", ImageName: "demo/busybox", ImageTags: []string{"1"}}
	ev.Workload = &event.Workload{ExeName: "nc", ContainerID: containerID, Runtime: "docker", Container: meta}
	if got := ServiceName(ev); got != "web-frontend" {
		t.Errorf("service.name %q, want the container name", got)
	}
	got := attrMapOf(appendWorkloadAttributes(nil, ev, false))
	for k, v := range map[string]string{"service.name": "web-frontend", "container.name": "web-frontend",
		"container.image.name": "demo/busybox", "container.id": containerID} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if tags, _ := got["container.image.tags"].([]string); len(tags) != 1 || tags[0] != "1" {
		t.Errorf("container.image.tags = %v", got["container.image.tags"])
	}
	if got["process.executable.name"] != "nc" {
		t.Errorf("process.executable.name = %v, want the executable, nc", got["process.executable.name"])
	}

	meta2 := *meta
	meta2.Service, meta2.ComposeProject = "web", "shop"
	ev.Workload.Container = &meta2
	if got := ServiceName(ev); got != "web" {
		t.Errorf("service.name %q, want the compose service label", got)
	}
	if got := attrMapOf(appendWorkloadAttributes(nil, ev, false)); got["service.namespace"] != "shop" {
		t.Errorf("service.namespace %v, want the compose project", got["service.namespace"])
	}

	k8s := &event.ContainerMeta{Name: "api", K8sContainer: "api", PodName: "demo", PodNamespace: "shop", PodUID: "u-1", Service: "checkout"}
	ev.Workload = &event.Workload{ExeName: "server", ContainerID: containerID, PodUID: "u-1", Container: k8s}
	got = attrMapOf(appendWorkloadAttributes(nil, ev, false))
	for k, v := range map[string]string{"service.name": "checkout", "k8s.pod.name": "demo", "k8s.namespace.name": "shop",
		"k8s.container.name": "api", "k8s.pod.uid": "u-1", "service.namespace": "shop", "container.name": "api"} {
		if got[k] != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
}

func TestHostAttributes(t *testing.T) {
	dir := t.TempDir()
	idFile := filepath.Join(dir, "machine-id")
	if err := os.WriteFile(idFile, []byte("feedfacefeedfacefeedfacefeedface\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got := attrMapOf(hostAttributes(&Options{HostName: "h", MachineIDFile: idFile}))
	want := map[string]any{"os.type": "linux", "host.name": "h", "host.id": "feedfacefeedfacefeedfacefeedface"}
	if !equalMaps(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}

	got = attrMapOf(hostAttributes(&Options{HostName: "h", MachineIDFile: filepath.Join(dir, "missing")}))
	if _, ok := got["host.id"]; ok {
		t.Errorf("host.id from a missing file: %v", got)
	}

	hn, _ := os.Hostname()
	got = attrMapOf(hostAttributes(&Options{MachineIDFile: filepath.Join(dir, "missing")}))
	if hn != "" && got["host.name"] != hn {
		t.Errorf("host.name %v, want %q", got["host.name"], hn)
	}
}

func TestParseResourceAttributes(t *testing.T) {
	got, err := ParseResourceAttributes(" deployment.environment.name = prod ,team=net%20ops,, k8s.cluster.name=c%2C1,empty=,")
	if err != nil {
		t.Fatal(err)
	}
	want := []attribute.KeyValue{
		attribute.String("deployment.environment.name", "prod"),
		attribute.String("team", "net ops"),
		attribute.String("k8s.cluster.name", "c,1"),
		attribute.String("empty", ""),
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("%d: got %v, want %v", i, got[i], want[i])
		}
	}

	if got, err := ParseResourceAttributes(""); err != nil || len(got) != 0 {
		t.Errorf("empty: %v, %v", got, err)
	}
	if got, err := ParseResourceAttributes("a=1+2"); err != nil || got[0].Value.AsString() != "1+2" {
		t.Errorf("plus sign: %v, %v", got, err)
	}

	for _, bad := range []string{"novalue", "=v", "a=1,b", "k=%zz", "k=%4"} {
		if got, err := ParseResourceAttributes(bad); err == nil {
			t.Errorf("%q: no error, got %v", bad, got)
		}
	}
	_, err = ParseResourceAttributes("a,b=%x,c=1")
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b=%x"`) {
		t.Errorf("error does not name both bad members: %v", err)
	}
}

func TestResourceAttributesFromEnv(t *testing.T) {
	o := testOptions()
	o.Getenv = func(name string) string {
		if name == EnvResourceAttributes {
			return "deployment.environment.name=prod,host.name=override,service.name=ignored,process.pid=1,team=a%20b"
		}
		return ""
	}
	got := buildResource(t, o, connectEvent())
	want := hostResourceWant()
	want["deployment.environment.name"] = "prod"
	want["team"] = "a b"
	want["host.name"] = "override" // environment over host detection
	if !equalMaps(got, want) {
		t.Errorf("\n got %v\nwant %v", got, want)
	}

	// Through an exporter: the exported resources are the same.
	p, tt, lt := newTestExporter(t, o)
	p.Emit(resultEvent(0))
	flush(t, p)
	if got := tt.Spans()[0].ResourceAttrs(); !equalOTLP(got, want) {
		t.Errorf("exported span resource:\n got %v\nwant %v", got, want)
	}
	if got := lt.Logs()[0].ResourceAttrs(); !equalOTLP(got, want) {
		t.Errorf("exported log resource:\n got %v\nwant %v", got, want)
	}

	o.Getenv = func(name string) string {
		if name == EnvResourceAttributes {
			return "a=b,broken"
		}
		return ""
	}
	if _, err := newExporter(o, discardTransport{}, discardTransport{}); err == nil || !strings.Contains(err.Error(), EnvResourceAttributes) {
		t.Errorf("invalid OTEL_RESOURCE_ATTRIBUTES: err = %v", err)
	}
}

func TestResourceKey(t *testing.T) {
	a, b := connectEvent(), resultEvent(0)
	if keyOf(a) != keyOf(b) {
		t.Error("two events of one process have different keys")
	}
	// A fresh Workload with the same content (a re-read) keeps the key.
	b.Workload = hostWorkload()
	if keyOf(a) != keyOf(b) {
		t.Error("an equal Workload changes the key")
	}
	// A thread with its own comm keeps the key when the exe is known.
	b.Comm = "curl-worker"
	if keyOf(a) != keyOf(b) {
		t.Error("a thread name changes the key")
	}
	for name, mod := range map[string]func(*event.Event){
		"pid":       func(e *event.Event) { e.HostPID++ },
		"ppid":      func(e *event.Event) { e.HostPPID++ },
		"uid":       func(e *event.Event) { e.UID++ },
		"pid ns":    func(e *event.Event) { e.PidNS++ },
		"start":     func(e *event.Event) { w := *e.Workload; w.StartTime = w.StartTime.Add(time.Second); e.Workload = &w },
		"exe":       func(e *event.Event) { w := *e.Workload; w.ExePath = "/bin/other"; e.Workload = &w },
		"container": func(e *event.Event) { w := *e.Workload; w.ContainerID = containerID; e.Workload = &w },
		"container names known": func(e *event.Event) {
			w := *e.Workload
			w.Container = &event.ContainerMeta{Name: "web"}
			e.Workload = &w
		},
	} {
		ev := connectEvent()
		mod(ev)
		if keyOf(ev) == keyOf(a) {
			t.Errorf("%s: same key", name)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = keyOf(a) }); n != 0 {
		t.Errorf("keyOf allocates %v times", n)
	}
}
