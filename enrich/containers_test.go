package enrich

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/connwatch/connwatch/event"
)

func TestSplitImageRef(t *testing.T) {
	for _, tt := range []struct {
		ref, name string
		tags      []string
	}{
		{"demo/busybox:1", "demo/busybox", []string{"1"}},
		{"nginx", "nginx", []string{"latest"}},
		{"docker.io/library/nginx:1.27", "docker.io/library/nginx", []string{"1.27"}},
		{"registry:5000/team/app", "registry:5000/team/app", []string{"latest"}},
		{"registry:5000/team/app:v2", "registry:5000/team/app", []string{"v2"}},
		{"app@sha256:0123", "app", nil},
		{"app:v3@sha256:0123", "app", []string{"v3"}},
		{"", "", nil},
	} {
		name, tags := splitImageRef(tt.ref)
		if name != tt.name || !reflect.DeepEqual(tags, tt.tags) {
			t.Errorf("splitImageRef(%q) = %q %q, want %q %q", tt.ref, name, tags, tt.name, tt.tags)
		}
	}
}

const configV2 = `{"ID":"%s","Name":"/web-frontend","Config":{"Image":"demo/busybox:1","Env":["SECRET=x"],
"Labels":{"com.docker.compose.service":"web","com.docker.compose.project":"shop"}},"Image":"sha256:abc"}`

// A Docker data root with one container record.
func dockerRoot(t *testing.T, id, record string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "containers", id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.v2.json"), []byte(record), 0o600); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestDockerFiles(t *testing.T) {
	root := dockerRoot(t, dockerWebID, fmt.Sprintf(configV2, dockerWebID))
	src := dockerFiles{root: root}
	m, err := src.lookup(context.Background(), dockerWebID)
	if err != nil {
		t.Fatal(err)
	}
	want := &event.ContainerMeta{Name: "web-frontend", ImageName: "demo/busybox", ImageTags: []string{"1"},
		Service: "web", ComposeProject: "shop", Source: "docker config.v2.json"}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
	if _, err := src.lookup(context.Background(), k8sAPIID); err != errNotHere {
		t.Errorf("another container: %v, want errNotHere", err)
	}
	if _, err := (dockerFiles{root: filepath.Join(root, "nope")}).lookup(context.Background(), dockerWebID); err == nil || err == errNotHere {
		t.Errorf("missing data root: %v, want an error that is not errNotHere", err)
	}
	bad := dockerRoot(t, dockerWebID, `{"Name": 7`)
	if _, err := (dockerFiles{root: bad}).lookup(context.Background(), dockerWebID); err == nil || err == errNotHere {
		t.Errorf("truncated record: %v, want an error", err)
	}
}

// serveUnix serves h on a unix socket in a temporary directory.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// The Engine API's answers, and the faults of a socket no real dockerd
// can be made to show: one that accepts and never answers, one that
// answers garbage.
func TestDockerAPI(t *testing.T) {
	sock := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/containers/" + dockerWebID + "/json":
			fmt.Fprintf(w, configV2, dockerWebID)
		case "/containers/" + k8sAPIID + "/json":
			w.Write([]byte("<html>not json"))
		default:
			http.Error(w, `{"message":"No such container"}`, http.StatusNotFound)
		}
	}))
	api := newDockerAPI(sock)
	m, err := api.lookup(context.Background(), dockerWebID)
	if err != nil || m.Name != "web-frontend" || m.ImageName != "demo/busybox" || m.Source != "docker API" {
		t.Errorf("lookup: %+v, %v", m, err)
	}
	if _, err := api.lookup(context.Background(), crioEnvoyID); err != errNotHere {
		t.Errorf("unknown container: %v, want errNotHere", err)
	}
	if _, err := api.lookup(context.Background(), k8sAPIID); err == nil || !strings.Contains(err.Error(), "not a container record") {
		t.Errorf("garbage: %v", err)
	}
	if _, err := newDockerAPI(filepath.Join(t.TempDir(), "none.sock")).lookup(context.Background(), dockerWebID); err == nil || err == errNotHere {
		t.Errorf("missing socket: %v", err)
	}

	// A socket that accepts and never answers: bounded by the context.
	hang := filepath.Join(t.TempDir(), "hang.sock")
	ln, err := net.Listen("unix", hang)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := newDockerAPI(hang).lookup(ctx, dockerWebID); err == nil {
		t.Errorf("hanging socket answered")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hanging socket held the lookup %v", d)
	}
}

func TestOCIBundles(t *testing.T) {
	state := t.TempDir()
	write := func(ns, id, spec string) {
		dir := filepath.Join(state, containerdTaskDir, ns, id)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(spec), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("k8s.io", k8sAPIID, `{"ociVersion":"1.0.2","annotations":{
		"io.kubernetes.cri.container-type":"container","io.kubernetes.cri.container-name":"api",
		"io.kubernetes.cri.image-name":"docker.io/shop/api:2.1","io.kubernetes.cri.sandbox-name":"demo",
		"io.kubernetes.cri.sandbox-namespace":"shop","io.kubernetes.cri.sandbox-uid":"`+k8sAPIPodUID+`"}}`)
	write("default", crioEnvoyID, `{"ociVersion":"1.0.2","process":{"args":["sleep"]}}`)
	write("k8s.io", dockerWebID, `{"annotations": [1,2]}`)
	src := ociBundles{state: state}
	m, err := src.lookup(context.Background(), k8sAPIID)
	want := &event.ContainerMeta{Name: "api", K8sContainer: "api", ImageName: "docker.io/shop/api", ImageTags: []string{"2.1"},
		PodName: "demo", PodNamespace: "shop", PodUID: k8sAPIPodUID, Source: "OCI bundle"}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("CRI container: %+v, %v\nwant %+v", m, err, want)
	}
	if m, err := src.lookup(context.Background(), crioEnvoyID); err != nil || m.Name != "" || m.PodName != "" {
		t.Errorf("ctr container (no annotations): %+v, %v; want an empty answer", m, err)
	}
	if _, err := src.lookup(context.Background(), dockerWebID); err == nil || err == errNotHere {
		t.Errorf("garbage spec: %v, want an error", err)
	}
	if _, err := src.lookup(context.Background(), strings.Repeat("a", 64)); err != errNotHere {
		t.Errorf("unknown container: %v, want errNotHere", err)
	}
}

// fakeSource answers from a map and counts its calls; fail makes it fail.
type fakeSource struct {
	mu    sync.Mutex
	metas map[string]*event.ContainerMeta
	fail  error
	calls int
}

func (f *fakeSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeSource) name() string       { return "fake" }
func (f *fakeSource) serves(string) bool { return true }
func (f *fakeSource) lookup(_ context.Context, id string) (*event.ContainerMeta, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail != nil {
		return nil, f.fail
	}
	if m, ok := f.metas[id]; ok {
		return m, nil
	}
	return nil, errNotHere
}

// syncLog is a log buffer safe for the resolver's goroutine.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// waitMeta polls r until it knows id.
func waitMeta(t *testing.T, r *metaResolver, id string) *event.ContainerMeta {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m := r.lookup(id, ""); m != nil {
			return m
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("metadata of %.12s never known", id)
	return nil
}

// The resolver never blocks the caller, asks each source once per
// container, falls through a source that does not know the container to
// the next, and warns once for a failing source, which it then skips
// until its backoff passes.
func TestMetaResolver(t *testing.T) {
	web := &event.ContainerMeta{Name: "web-frontend"}
	down := &fakeSource{fail: fmt.Errorf("dial unix /run/docker.sock: connect: connection refused")}
	empty := &fakeSource{metas: map[string]*event.ContainerMeta{dockerWebID: {Source: "empty"}}}
	named := &fakeSource{metas: map[string]*event.ContainerMeta{dockerWebID: web}}
	log := &syncLog{}
	r := newMetaResolver([]metaSource{down, empty, named}, slog.New(slog.NewTextHandler(log, nil)))
	defer r.close()

	if m := r.lookup(dockerWebID, "docker"); m != nil {
		t.Fatalf("first lookup answered %+v at once; it must only queue", m)
	}
	if m := waitMeta(t, r, dockerWebID); m != web {
		t.Errorf("got %+v, want the named source's answer over the empty one", m)
	}
	for range 100 {
		r.lookup(dockerWebID, "docker")
	}
	if n := named.count(); n != 1 {
		t.Errorf("named source asked %d times, want once", n)
	}

	// Another container: the failed source is skipped during its backoff.
	named.mu.Lock()
	named.metas[k8sAPIID] = &event.ContainerMeta{Name: "api"}
	named.mu.Unlock()
	waitMeta(t, r, k8sAPIID)
	if n := down.count(); n != 1 {
		t.Errorf("failing source asked %d times within its backoff, want 1", n)
	}
	if n := strings.Count(log.String(), "container metadata source unavailable"); n != 1 {
		t.Errorf("%d warnings for the failing source, want 1:\n%s", n, log)
	}

	// A container no source knows: not asked again before its retry.
	r.lookup(crioEnvoyID, "")
	deadline := time.Now().Add(5 * time.Second)
	for r.notFound.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	calls := named.count()
	for range 100 {
		if m := r.lookup(crioEnvoyID, ""); m != nil {
			t.Fatalf("unknown container answered %+v", m)
		}
	}
	time.Sleep(20 * time.Millisecond)
	if n := named.count(); n != calls {
		t.Errorf("unknown container asked %d more times within its retry delay", n-calls)
	}
}

// Through the Enricher: an event of a container whose metadata is not
// known yet is attributed at once without it; a later event of the same
// process carries it.
func TestEnrichContainerMeta(t *testing.T) {
	root := copyTree(t, "testdata/proc")
	docker := dockerRoot(t, dockerWebID, fmt.Sprintf(configV2, dockerWebID))
	e := newTestEnricher(t, root, func(o *Options) { o.DockerRoot = docker })
	defer e.Close()
	ev := event.Event{HostPID: 4242, Comm: "python3", UID: 0, PidNS: 4026532601, MntNS: 4026532600}
	e.Enrich(&ev)
	if ev.Workload == nil || ev.Workload.ContainerID != dockerWebID {
		t.Fatalf("first event: %+v", ev.Workload)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		next := event.Event{HostPID: 4242, Comm: "python3", UID: 0, PidNS: 4026532601, MntNS: 4026532600}
		e.Enrich(&next)
		if c := next.Workload.Container; c != nil {
			if c.Name != "web-frontend" || c.Service != "web" || next.Workload.ContainerID != dockerWebID {
				t.Errorf("container metadata %+v on %+v", c, next.Workload)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's metadata never reached its events")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := e.Stats(); st.ContainersNamed != 1 {
		t.Errorf("ContainersNamed %d, want 1", st.ContainersNamed)
	}
}

// A zombie's /proc entry says cgroup "/" and has no exe: those are not
// facts about its container. Its parent, alive in the same namespaces,
// names the container.
func TestZombieTakesParentsContainer(t *testing.T) {
	root := newFakeProc(t)
	cg := "0::/system.slice/docker-" + dockerWebID + ".scope\n"
	writeProc(t, root, fakeProc{pid: 700, ppid: 1, comm: "sh", exe: "/bin/busybox", startTicks: 50,
		pidNS: 4026532601, mntNS: 4026532600, cgroup: cg})
	writeProc(t, root, fakeProc{pid: 701, ppid: 700, comm: "nc", startTicks: 60,
		pidNS: 4026532601, mntNS: 4026532600, cgroup: "0::/\n"})
	stat := filepath.Join(root, "701", "stat")
	b, _ := os.ReadFile(stat)
	if err := os.WriteFile(stat, bytes.Replace(b, []byte(") S "), []byte(") Z "), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	e := newTestEnricher(t, root)
	ev := event.Event{HostPID: 701, HostPPID: 700, Comm: "nc", PidNS: 4026532601, MntNS: 4026532600}
	e.Enrich(&ev)
	w := ev.Workload
	if w == nil || w.ContainerID != dockerWebID || w.Runtime != RuntimeDocker || w.Cgroup == "/" || w.ExeName != "nc" {
		t.Fatalf("zombie: %+v, want container %.12s from its parent, never cgroup /", w, dockerWebID)
	}
	if st := e.Stats(); st.ParentFallbacks != 1 {
		t.Errorf("ParentFallbacks %d, want 1", st.ParentFallbacks)
	}
	// Not cached: a zombie has no more events, and its pid's next process
	// must be read afresh.
	if st := e.Stats(); st.CachedProcs != 0 {
		t.Errorf("%d processes cached, want the zombie left out", st.CachedProcs)
	}
}
