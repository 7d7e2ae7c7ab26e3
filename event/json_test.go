package event

import (
	"encoding/json"
	"golang.org/x/sys/unix"
	"net/netip"
	"testing"
	"time"
)

func jsonValid(b []byte) bool { return json.Valid(b) }

func TestAppendJSON(t *testing.T) {
	ev := Event{
		Time:     time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC),
		PidNS:    4026532000,
		MntNS:    4026532001,
		HostPPID: 10, HostPID: 20, PPID: 0, PID: 1, UID: 1000,
		EventID: TCPConnectV6, Retval: 0,
		Comm:     "we\"ird\x01\xff",
		Protocol: "TCPv6",
		Remote:   netip.MustParseAddrPort("[2001:db8::1]:443"),
		Local:    netip.MustParseAddrPort("[2001:db8::2]:5000"),
	}
	line := AppendJSON(nil, &ev, "tracepoint")
	var got map[string]any
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, line)
	}
	want := map[string]any{
		"time":        "2026-11-25T10:00:00.123456789Z",
		"event":       "connwatch.tcp.connect",
		"event_id":    402.0,
		"host_pid":    20.0,
		"host_ppid":   10.0,
		"pid":         1.0,
		"ppid":        0.0,
		"uid":         1000.0,
		"comm":        "we\"ird\x01\ufffd",
		"pid_ns":      4026532000.0,
		"mnt_ns":      4026532001.0,
		"protocol":    "TCPv6",
		"remote_addr": "2001:db8::1",
		"remote_port": 443.0,
		"local_addr":  "2001:db8::2",
		"local_port":  5000.0,
		"retval":      0.0,
		"direction":   "outbound",
		"mode":        "tracepoint",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d fields, want %d: %s", len(got), len(want), line)
	}
}

func TestClockWall(t *testing.T) {
	c := NewClock()
	now := time.Now()
	c2 := &Clock{}
	c2.SetOffset(now.UnixNano() - 5_000_000_000)
	if got := c2.Wall(5_000_000_000); !got.Equal(time.Unix(0, now.UnixNano())) {
		t.Errorf("Wall = %v, want %v", got, now)
	}
	ev := Event{EventID: TCPConnectResult, KernelTime: 7_000_000_000, StartKernelTime: 6_000_000_000}
	c2.Stamp(&ev)
	if ev.Time.Sub(ev.Start) != time.Second || !ev.Start.Equal(c2.Wall(6_000_000_000)) {
		t.Errorf("Stamp: time %v start %v, want a second apart", ev.Time, ev.Start)
	}
	attempt := Event{KernelTime: 7_000_000_000}
	c2.Stamp(&attempt)
	if !attempt.Start.IsZero() {
		t.Errorf("Stamp set Start %v on an event without an attempt time", attempt.Start)
	}
	// The synced clock maps monotonic "now" to within a second of wall now.
	mono := monotonicNow(t)
	if diff := c.Wall(mono).Sub(time.Now()); diff > time.Second || diff < -time.Second {
		t.Errorf("synced clock is off by %v", diff)
	}
}

func monotonicNow(t *testing.T) uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano())
}

func TestAppendJSONWorkload(t *testing.T) {
	ev := Event{EventID: TCPConnect, Comm: "curl", Workload: &Workload{
		ExePath: "/usr/bin/curl", ExeName: "curl", Args: []string{"curl", "-s", "http://x"},
		Owner: "root", StartTime: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		ContainerID: "3f2a", Runtime: "docker", PodUID: "1234-5678", Cgroup: "/system.slice/docker-3f2a.scope",
	}}
	var got struct {
		Process struct {
			ExecutableName string   `json:"executable_name"`
			ExecutablePath string   `json:"executable_path"`
			Args           []string `json:"args"`
			Owner          string   `json:"owner"`
			StartTime      string   `json:"start_time"`
			Cgroup         string   `json:"cgroup"`
		} `json:"process"`
		Container struct{ ID, Runtime string } `json:"container"`
		K8s       struct {
			PodUID string `json:"pod_uid"`
		} `json:"k8s"`
	}
	line := AppendJSON(nil, &ev, "kprobe")
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	p := got.Process
	if p.ExecutableName != "curl" || p.ExecutablePath != "/usr/bin/curl" || len(p.Args) != 3 || p.Args[2] != "http://x" ||
		p.Owner != "root" || p.StartTime != "2026-01-02T03:04:05Z" || p.Cgroup != "/system.slice/docker-3f2a.scope" {
		t.Errorf("process %+v", p)
	}
	if got.Container.ID != "3f2a" || got.Container.Runtime != "docker" || got.K8s.PodUID != "1234-5678" {
		t.Errorf("container %+v k8s %+v", got.Container, got.K8s)
	}
}

// The runtime's names, once known, under "container" and "k8s".
func TestAppendJSONContainerMeta(t *testing.T) {
	ev := Event{EventID: TCPConnect, Comm: "nc", Workload: &Workload{ExeName: "nc", ContainerID: "3f2a", Runtime: "containerd",
		Container: &ContainerMeta{Name: "client", ImageName: "docker.io/demo/busybox", ImageTags: []string{"1"},
			PodName: "demo", PodNamespace: "shop", PodUID: "u-1", K8sContainer: "client"}}}
	var got struct {
		Container struct {
			ID, Name, Image string
			Tags            []string `json:"image_tags"`
		} `json:"container"`
		K8s struct {
			PodUID        string `json:"pod_uid"`
			PodName       string `json:"pod_name"`
			Namespace     string `json:"namespace"`
			ContainerName string `json:"container_name"`
		} `json:"k8s"`
	}
	line := AppendJSON(nil, &ev, "tracepoint")
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	c, k := got.Container, got.K8s
	if c.ID != "3f2a" || c.Name != "client" || c.Image != "docker.io/demo/busybox" || len(c.Tags) != 1 || c.Tags[0] != "1" {
		t.Errorf("container %+v in %s", c, line)
	}
	// The pod UID from the cgroup is empty here: the one the runtime gave
	// is the Workload's once known (enrich sets both).
	if k.PodName != "demo" || k.Namespace != "shop" || k.ContainerName != "client" {
		t.Errorf("k8s %+v in %s", k, line)
	}
}
