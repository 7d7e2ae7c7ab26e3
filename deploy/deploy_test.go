package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/connwatch/connwatch/config"
)

// root is the repository root, relative to this package's directory.
const root = ".."

// The capabilities the agent is given, in Docker's and Kubernetes'
// spelling (without CAP_).
var agentCaps = []string{"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_ADMIN"}

// hostMounts are the host paths the agent reads, by their path in the
// agent's container.
var hostMounts = map[string]string{
	"/host/proc":          "/proc",
	"/host/etc/passwd":    "/etc/passwd",
	"/sys/kernel/btf":     "/sys/kernel/btf",
	"/sys/kernel/tracing": "/sys/kernel/tracing",
	"/sys/fs/bpf":         "/sys/fs/bpf",
	"/sys/fs/cgroup":      "/sys/fs/cgroup",
}

// readOnlyMounts must be mounted read-only.
var readOnlyMounts = []string{"/host/proc", "/host/etc/passwd", "/sys/kernel/btf", "/sys/fs/cgroup"}

// ---------------------------------------------------------------------
// Generic access to decoded YAML.

type obj = map[string]any

// at walks nested maps by key; it returns nil when a key is missing or a
// value on the way is not a map.
func at(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any, keys ...string) string {
	switch x := at(v, keys...).(type) {
	case string:
		return x
	case int:
		return strconv.Itoa(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return ""
}

func list(v any, keys ...string) []any {
	l, _ := at(v, keys...).([]any)
	return l
}

func strs(v any, keys ...string) []string {
	var out []string
	for _, x := range list(v, keys...) {
		out = append(out, str(x))
	}
	return out
}

func mapOf(v any, keys ...string) obj {
	m, _ := at(v, keys...).(obj)
	return m
}

// decodeAll decodes every non-empty YAML document of data.
func decodeAll(data []byte) ([]obj, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []obj
	for {
		var d obj
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
}

func loadDocs(t *testing.T, rel string) []obj {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := decodeAll(data)
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return docs
}

func loadDoc(t *testing.T, rel string) obj {
	t.Helper()
	docs := loadDocs(t, rel)
	if len(docs) != 1 {
		t.Fatalf("%s: %d YAML documents, want 1", rel, len(docs))
	}
	return docs[0]
}

// problems collects what a check finds wrong.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func report(t *testing.T, what string, p problems) {
	t.Helper()
	for _, s := range p {
		t.Errorf("%s: %s", what, s)
	}
}

// normCap turns "CAP_BPF" or "bpf" into "BPF".
func normCap(c string) string {
	return strings.TrimPrefix(strings.ToUpper(strings.TrimSpace(c)), "CAP_")
}

func missingCaps(have []string) []string {
	set := map[string]bool{}
	for _, c := range have {
		set[normCap(c)] = true
	}
	var missing []string
	for _, c := range agentCaps {
		if !set[c] {
			missing = append(missing, c)
		}
	}
	return missing
}

// hostPort splits "host:port", "scheme://host:port[/...]" or ":port".
func hostPort(endpoint string) (host string, port int, err error) {
	hp := endpoint
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return "", 0, err
		}
		hp = u.Host
	}
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, fmt.Errorf("endpoint %q: %v", endpoint, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("endpoint %q: port %q", endpoint, p)
	}
	return h, n, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ---------------------------------------------------------------------
// OpenTelemetry Collector configurations.

// componentType is the type part of a component ID "type[/name]".
func componentType(id string) string {
	typ, _, _ := strings.Cut(id, "/")
	return typ
}

// checkCollector checks that a collector configuration is complete: it
// has pipelines, each with receivers and exporters, and every component a
// pipeline or the service names is defined in its section. It also
// requires memory_limiter to be the first processor of every pipeline and
// batch to come after it, as the collector's documentation recommends.
func checkCollector(cfg obj, wantPipelines ...string) problems {
	var p problems
	defined := func(section, id string) bool {
		_, ok := mapOf(cfg, section)[id]
		return ok
	}
	for _, ext := range strs(cfg, "service", "extensions") {
		if !defined("extensions", ext) {
			p.add("service.extensions: %q is not defined under extensions", ext)
		}
	}
	pipelines := mapOf(cfg, "service", "pipelines")
	if len(pipelines) == 0 {
		p.add("no service.pipelines")
	}
	for _, want := range wantPipelines {
		if _, ok := pipelines[want]; !ok {
			p.add("no %s pipeline", want)
		}
	}
	for name, pl := range pipelines {
		recv, procs, exps := strs(pl, "receivers"), strs(pl, "processors"), strs(pl, "exporters")
		if len(recv) == 0 || len(exps) == 0 {
			p.add("pipeline %s: needs receivers and exporters", name)
		}
		for _, r := range recv {
			if !defined("receivers", r) && !defined("connectors", r) {
				p.add("pipeline %s: receiver %q is not defined", name, r)
			}
		}
		for _, x := range procs {
			if !defined("processors", x) {
				p.add("pipeline %s: processor %q is not defined", name, x)
			}
		}
		for _, e := range exps {
			if !defined("exporters", e) && !defined("connectors", e) {
				p.add("pipeline %s: exporter %q is not defined", name, e)
			}
		}
		ml := slices.IndexFunc(procs, func(s string) bool { return componentType(s) == "memory_limiter" })
		b := slices.IndexFunc(procs, func(s string) bool { return componentType(s) == "batch" })
		switch {
		case ml != 0:
			p.add("pipeline %s: memory_limiter must be the first processor, processors are %v", name, procs)
		case b < 0:
			p.add("pipeline %s: no batch processor", name)
		case b < ml:
			p.add("pipeline %s: batch before memory_limiter", name)
		}
	}
	return p
}

// otlpGRPCPort is the port of the otlp receiver's gRPC protocol.
func otlpGRPCPort(cfg obj) (int, error) {
	ep := str(cfg, "receivers", "otlp", "protocols", "grpc", "endpoint")
	if ep == "" {
		return 0, errors.New("receivers.otlp.protocols.grpc.endpoint is not set")
	}
	_, port, err := hostPort(ep)
	return port, err
}

// otlpExporters returns the OTLP/gRPC exporters a pipeline sends to, with
// their endpoints ("otlp" and, from collector 0.165, "otlp_grpc").
func otlpExporters(cfg obj, pipeline string) map[string]string {
	out := map[string]string{}
	for _, e := range strs(cfg, "service", "pipelines", pipeline, "exporters") {
		if t := componentType(e); t == "otlp" || t == "otlp_grpc" {
			out[e] = str(cfg, "exporters", e, "endpoint")
		}
	}
	return out
}

// ---------------------------------------------------------------------
// Docker Compose.

type mount struct {
	source, target string
	readOnly       bool
}

// composeVolumes reads a service's volumes in short ("src:dst[:ro]") or
// long syntax, by target.
func composeVolumes(svc any) map[string]mount {
	out := map[string]mount{}
	for _, v := range list(svc, "volumes") {
		var m mount
		switch x := v.(type) {
		case string:
			parts := strings.Split(x, ":")
			if len(parts) < 2 {
				continue
			}
			m.source, m.target = parts[0], parts[1]
			if len(parts) > 2 {
				m.readOnly = slices.Contains(strings.Split(parts[2], ","), "ro")
			}
		case obj:
			m.source, m.target = str(x, "source"), str(x, "target")
			m.readOnly = str(x, "read_only") == "true"
		}
		out[m.target] = m
	}
	return out
}

// composeEnv reads a service's environment, in map or list syntax.
func composeEnv(svc any) map[string]string {
	out := map[string]string{}
	switch env := at(svc, "environment").(type) {
	case obj:
		for k, v := range env {
			out[k] = str(v)
		}
	case []any:
		for _, e := range env {
			k, v, _ := strings.Cut(str(e), "=")
			out[k] = v
		}
	}
	return out
}

// composePorts maps a service's container ports to the host ports they
// are published on.
func composePorts(svc any) map[int]int {
	out := map[int]int{}
	for _, p := range list(svc, "ports") {
		var published, target string
		switch x := p.(type) {
		case string:
			parts := strings.Split(x, ":")
			target = parts[len(parts)-1]
			if len(parts) > 1 {
				published = parts[len(parts)-2]
			}
		case obj:
			published, target = str(x, "published"), str(x, "target")
		}
		target, _, _ = strings.Cut(target, "/")
		c, err1 := strconv.Atoi(target)
		h, err2 := strconv.Atoi(published)
		if err1 == nil && err2 == nil {
			out[c] = h
		}
	}
	return out
}

// pinned reports whether an image reference names a tag other than latest.
func pinned(image string) bool {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	return image[i+1:] != "latest" && image[i+1:] != ""
}

type composeFiles struct {
	compose, collector obj
	agentConfig        []byte
}

func loadCompose(t *testing.T) composeFiles {
	t.Helper()
	return composeFiles{
		compose:     loadDoc(t, "docker-compose.yml"),
		collector:   loadDoc(t, "deploy/compose/otel-collector.yaml"),
		agentConfig: readFile(t, "deploy/compose/connwatch.yaml"),
	}
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// relSource resolves a compose bind-mount source relative to the
// repository root (the compose file's directory).
func relSource(src string) (string, bool) {
	if !strings.HasPrefix(src, "./") {
		return "", false
	}
	return path.Clean(strings.TrimPrefix(src, "./")), true
}

func checkCompose(f composeFiles) problems {
	var p problems
	services := mapOf(f.compose, "services")
	for _, name := range []string{"connwatch", "otel-collector", "jaeger"} {
		if services[name] == nil {
			p.add("no service %q", name)
		}
	}
	agent, collector, jaeger := services["connwatch"], services["otel-collector"], services["jaeger"]

	// The agent's container.
	if got := str(agent, "pid"); got != "host" {
		p.add("connwatch: pid is %q, want host", got)
	}
	if str(agent, "privileged") == "true" {
		p.add("connwatch: privileged; the capabilities are enough")
	}
	if m := missingCaps(strs(agent, "cap_add")); len(m) > 0 {
		p.add("connwatch: cap_add lacks %v", m)
	}
	for _, c := range strs(agent, "cap_drop") {
		if n := normCap(c); n == "ALL" || slices.Contains(agentCaps, n) {
			p.add("connwatch: cap_drop %s removes a capability the agent needs (cap_add wins only for named ones)", c)
		}
	}
	vols := composeVolumes(agent)
	for target, source := range hostMounts {
		m, ok := vols[target]
		switch {
		case !ok:
			p.add("connwatch: nothing mounted at %s (want host %s)", target, source)
		case m.source != source:
			p.add("connwatch: %s is mounted from %s, want %s", target, m.source, source)
		case slices.Contains(readOnlyMounts, target) && !m.readOnly:
			p.add("connwatch: %s should be read-only", target)
		}
	}

	// The agent's configuration file: mounted where the image's CMD reads
	// it, from the file in the repository, and valid.
	cmdConfig, err := dockerfileConfigPath()
	if err != nil {
		p.add("Dockerfile: %v", err)
	}
	cm, ok := vols[cmdConfig]
	if !ok {
		p.add("connwatch: no config file mounted at %s (the image's CMD reads it)", cmdConfig)
	} else if rel, ok := relSource(cm.source); !ok || rel != "deploy/compose/connwatch.yaml" {
		p.add("connwatch: %s is mounted from %s, want ./deploy/compose/connwatch.yaml", cmdConfig, cm.source)
	}
	cfg, err := config.Parse("deploy/compose/connwatch.yaml", f.agentConfig)
	if err != nil {
		p.add("deploy/compose/connwatch.yaml does not parse: %v", err)
		return p
	}
	if cfg.Enrich.ProcRoot != "/host/proc" {
		p.add("deploy/compose/connwatch.yaml: enrich.proc_root is %q, want /host/proc (the host's /proc mount)", cfg.Enrich.ProcRoot)
	}
	if cfg.Enrich.Passwd != "/host/etc/passwd" {
		p.add("deploy/compose/connwatch.yaml: enrich.passwd is %q, want /host/etc/passwd", cfg.Enrich.Passwd)
	}
	if h, _, err := hostPort(cfg.Telemetry.Listen); err != nil || isLoopback(h) {
		p.add("deploy/compose/connwatch.yaml: telemetry.listen %q is not reachable from outside the container", cfg.Telemetry.Listen)
	}
	for _, s := range checkRuntimeMounts(cfg, func(target string) (string, bool, bool) {
		m, ok := vols[target]
		return m.source, m.readOnly, ok
	}) {
		p.add("connwatch: %s", s)
	}

	// The agent exports to the collector service's OTLP/gRPC port, once
	// the environment is applied as the agent applies it.
	env := composeEnv(agent)
	if err := cfg.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		p.add("connwatch: environment rejected by the agent: %v", err)
	}
	collectorPort, err := otlpGRPCPort(f.collector)
	if err != nil {
		p.add("otel-collector.yaml: %v", err)
	}
	for signal, ep := range map[string]string{"traces": cfg.Export.OTLP.EffectiveTracesEndpoint(), "logs": cfg.Export.OTLP.EffectiveLogsEndpoint()} {
		host, port, err := hostPort(ep)
		switch {
		case err != nil:
			p.add("connwatch: %s endpoint %q (OTEL_EXPORTER_OTLP_ENDPOINT=%q): %v", signal, ep, env["OTEL_EXPORTER_OTLP_ENDPOINT"], err)
		case host != "otel-collector" || services[host] == nil:
			p.add("connwatch: %s go to %q, not to the otel-collector service", signal, ep)
		case port != collectorPort:
			p.add("connwatch: %s go to port %d, the collector's OTLP/gRPC receiver listens on %d", signal, port, collectorPort)
		}
	}
	if !strings.HasPrefix(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://") && !cfg.Export.OTLP.Insecure {
		p.add("connwatch: the collector speaks plaintext; use an http:// endpoint or insecure: true")
	}

	// The collector: its configuration file is the one in the repository,
	// complete, and sends traces to the jaeger service.
	colVols := composeVolumes(collector)
	var cfgFlag string
	for _, a := range strs(collector, "command") {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgFlag = v
		}
	}
	if m, ok := colVols[cfgFlag]; cfgFlag == "" || !ok {
		p.add("otel-collector: --config %q is not a mounted file", cfgFlag)
	} else if rel, _ := relSource(m.source); rel != "deploy/compose/otel-collector.yaml" {
		p.add("otel-collector: config mounted from %s, want ./deploy/compose/otel-collector.yaml", m.source)
	}
	if img := str(collector, "image"); !strings.HasPrefix(img, "otel/opentelemetry-collector-contrib:") || !pinned(img) {
		p.add("otel-collector: image %q is not a pinned opentelemetry-collector-contrib", img)
	}
	for _, s := range checkCollector(f.collector, "traces", "logs") {
		p.add("otel-collector.yaml: %s", s)
	}
	exps := otlpExporters(f.collector, "traces")
	if len(exps) == 0 {
		p.add("otel-collector.yaml: the traces pipeline has no OTLP exporter")
	}
	for id, ep := range exps {
		host, port, err := hostPort(ep)
		switch {
		case err != nil:
			p.add("otel-collector.yaml: exporter %s: %v", id, err)
		case host != "jaeger" || services[host] == nil:
			p.add("otel-collector.yaml: exporter %s sends to %q, not to the jaeger service", id, host)
		case port != 4317:
			p.add("otel-collector.yaml: exporter %s sends to port %d; Jaeger receives OTLP/gRPC on 4317", id, port)
		}
		if str(f.collector, "exporters", id, "tls", "insecure") != "true" {
			p.add("otel-collector.yaml: exporter %s needs tls.insecure: true (Jaeger's OTLP port is plaintext)", id)
		}
	}

	// Jaeger: pinned v2 image, UI published.
	if img := str(jaeger, "image"); !strings.HasPrefix(img, "jaegertracing/jaeger:2.") {
		p.add("jaeger: image %q is not a pinned Jaeger v2 (jaegertracing/jaeger:2.x)", img)
	}
	if h, ok := composePorts(jaeger)[16686]; !ok || h != 16686 {
		p.add("jaeger: UI port 16686 is not published on 16686")
	}
	return p
}

// dockerfileConfigPath returns the path after -c in the Dockerfile's
// CMD, after checking ENTRYPOINT and that the image ships that file.
func dockerfileConfigPath() (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return "", err
	}
	var entry, cmd []string
	var copied []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		instr, rest, _ := strings.Cut(line, " ")
		switch strings.ToUpper(instr) {
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &entry); err != nil {
				return "", fmt.Errorf("ENTRYPOINT is not in exec form: %v", err)
			}
		case "CMD":
			if err := json.Unmarshal([]byte(rest), &cmd); err != nil {
				return "", fmt.Errorf("CMD is not in exec form: %v", err)
			}
		case "COPY":
			if f := strings.Fields(rest); len(f) >= 2 && !strings.HasPrefix(f[0], "--from") {
				copied = append(copied, f[len(f)-1])
			}
		}
	}
	if !slices.Equal(entry, []string{"/connwatch"}) {
		return "", fmt.Errorf("ENTRYPOINT is %q, want [\"/connwatch\"]", entry)
	}
	i := slices.Index(cmd, "-c")
	if len(cmd) == 0 || cmd[0] != "run" || i < 0 || i+1 >= len(cmd) {
		return "", fmt.Errorf("CMD is %q, want [\"run\", \"-c\", FILE]", cmd)
	}
	if !slices.Contains(copied, cmd[i+1]) {
		return cmd[i+1], fmt.Errorf("the image does not contain %s, which CMD reads", cmd[i+1])
	}
	return cmd[i+1], nil
}

func TestCompose(t *testing.T) {
	report(t, "docker-compose", checkCompose(loadCompose(t)))
}

// TestDockerignoreKeepsBuildInputs checks that the build context keeps
// what the Dockerfile needs.
func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	var patterns []string
	for _, l := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, l)
		}
	}
	for _, need := range []string{"go.mod", "go.sum", "cmd/connwatch/main.go", "bpf/connwatch_x86_bpfel.o",
		"config/connwatch.yaml", "deploy/compose/connwatch.yaml"} {
		if _, err := os.Stat(filepath.Join(root, need)); err != nil {
			t.Errorf("%s: %v", need, err)
			continue
		}
		ignored := false
		for _, pat := range patterns {
			neg := strings.HasPrefix(pat, "!")
			pat = strings.TrimPrefix(strings.TrimPrefix(pat, "!"), "/")
			// A pattern excludes a path when it matches the path or one of
			// its parent directories.
			for p := need; p != "."; p = path.Dir(p) {
				if ok, _ := path.Match(pat, p); ok {
					ignored = !neg
					break
				}
			}
		}
		if ignored {
			t.Errorf(".dockerignore excludes %s, which the image build needs", need)
		}
	}
}

// checkRuntimeMounts checks that the container runtimes' records the
// agent is configured to read are mounted read-only at those paths from
// the host's, and that no runtime socket is mounted that the config does
// not use (it grants control of every container). mounted returns the
// host source of a mount target, whether it is read-only, and whether
// anything is mounted there.
func checkRuntimeMounts(cfg *config.Config, mounted func(target string) (source string, readOnly, ok bool)) problems {
	var p problems
	for key, dir := range map[string]string{
		"enrich.docker_root":      path.Join(cfg.Enrich.DockerRoot, "containers"),
		"enrich.containerd_state": path.Join(cfg.Enrich.ContainerdState, "io.containerd.runtime.v2.task"),
	} {
		if strings.HasSuffix(dir, "/") || !strings.HasPrefix(dir, "/") {
			continue // the source is off
		}
		switch src, ro, ok := mounted(dir); {
		case !ok:
			p.add("%s: nothing mounted at %s", key, dir)
		case src != dir:
			p.add("%s: %s is mounted from %s, want the host's %s", key, dir, src, dir)
		case !ro:
			p.add("%s: %s should be read-only", key, dir)
		}
	}
	for _, sock := range []string{"/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock", "/run/crio/crio.sock"} {
		if _, _, ok := mounted(sock); ok && sock != cfg.Enrich.DockerSocket && sock != cfg.Enrich.CRISocket {
			p.add("%s is mounted but the agent's config does not use it: it grants control of every container", sock)
		}
	}
	return p
}

// ---------------------------------------------------------------------
// Kubernetes.

type k8sObjects struct {
	objs []obj
	file map[int]string // index in objs -> file name
}

func loadKubernetes(t *testing.T) k8sObjects {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy/kubernetes/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no deploy/kubernetes/*.yaml")
	}
	k := k8sObjects{file: map[int]string{}}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for _, d := range loadDocs(t, rel) {
			k.file[len(k.objs)] = rel
			k.objs = append(k.objs, d)
		}
	}
	return k
}

func (k k8sObjects) find(kind, name string) obj {
	for _, o := range k.objs {
		if str(o, "kind") == kind && str(o, "metadata", "name") == name {
			return o
		}
	}
	return nil
}

const namespace = "connwatch"

// clusterScoped are the kinds without a namespace used here.
var clusterScoped = []string{"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}

func checkObjects(k k8sObjects) problems {
	var p problems
	seen := map[string]bool{}
	for i, o := range k.objs {
		kind, name := str(o, "kind"), str(o, "metadata", "name")
		where := fmt.Sprintf("%s: %s/%s", k.file[i], kind, name)
		if str(o, "apiVersion") == "" || kind == "" || name == "" {
			p.add("%s: needs apiVersion, kind and metadata.name", where)
		}
		if seen[kind+"/"+name] {
			p.add("%s: defined twice", where)
		}
		seen[kind+"/"+name] = true
		ns := str(o, "metadata", "namespace")
		if slices.Contains(clusterScoped, kind) {
			if ns != "" {
				p.add("%s: cluster-scoped but has a namespace", where)
			}
		} else if ns != namespace {
			p.add("%s: namespace %q, want %s", where, ns, namespace)
		}
		// Workloads: the selector selects the pod template, the service
		// account exists.
		if kind == "DaemonSet" || kind == "Deployment" {
			labels := mapOf(o, "spec", "template", "metadata", "labels")
			sel := mapOf(o, "spec", "selector", "matchLabels")
			if len(sel) == 0 {
				p.add("%s: no spec.selector.matchLabels", where)
			}
			for key, v := range sel {
				if str(labels, key) != str(v) {
					p.add("%s: selector %s=%v does not match the pod template", where, key, v)
				}
			}
			if sa := str(o, "spec", "template", "spec", "serviceAccountName"); sa != "" && k.find("ServiceAccount", sa) == nil {
				p.add("%s: service account %q is not defined", where, sa)
			}
			for _, c := range list(o, "spec", "template", "spec", "containers") {
				if img := str(c, "image"); img == "" || (!pinned(img) && !strings.HasPrefix(img, "connwatch:")) {
					p.add("%s: container %s: image %q is not pinned", where, str(c, "name"), img)
				}
			}
		}
	}
	if k.find("Namespace", namespace) == nil {
		p.add("no Namespace %s", namespace)
	}
	return p
}

// container returns the first container of a workload.
func container(o obj) obj {
	l := list(o, "spec", "template", "spec", "containers")
	if len(l) == 0 {
		return nil
	}
	c, _ := l[0].(obj)
	return c
}

// containerPort resolves a probe or Service port (number or name).
func containerPort(c obj, port any) int {
	if n, ok := port.(int); ok {
		return n
	}
	for _, cp := range list(c, "ports") {
		if str(cp, "name") == str(port) {
			n, _ := at(cp, "containerPort").(int)
			return n
		}
	}
	return 0
}

// configMapFile returns the ConfigMap file a container reads at path,
// from the configMap volume mounted on path's directory.
func configMapFile(k k8sObjects, workload obj, file string) (data string, cm string, err error) {
	c := container(workload)
	for _, vm := range list(c, "volumeMounts") {
		if str(vm, "subPath") != "" || path.Dir(file) != path.Clean(str(vm, "mountPath")) {
			continue
		}
		for _, v := range list(workload, "spec", "template", "spec", "volumes") {
			if str(v, "name") != str(vm, "name") {
				continue
			}
			cm = str(v, "configMap", "name")
			if cm == "" {
				return "", "", fmt.Errorf("%s is not a configMap volume", path.Dir(file))
			}
			o := k.find("ConfigMap", cm)
			if o == nil {
				return "", cm, fmt.Errorf("ConfigMap %s is not defined", cm)
			}
			d, ok := at(o, "data", path.Base(file)).(string)
			if !ok {
				return "", cm, fmt.Errorf("ConfigMap %s has no key %s", cm, path.Base(file))
			}
			return d, cm, nil
		}
	}
	return "", "", fmt.Errorf("nothing mounted at %s", path.Dir(file))
}

func checkAgent(k k8sObjects) problems {
	var p problems
	ds := k.find("DaemonSet", "connwatch")
	if ds == nil {
		p.add("no DaemonSet connwatch")
		return p
	}
	pod := at(ds, "spec", "template", "spec")
	if at(pod, "hostPID") != true {
		p.add("DaemonSet: hostPID is not true")
	}
	if at(pod, "hostNetwork") == true {
		p.add("DaemonSet: hostNetwork is not needed (BPF sees every namespace)")
	}
	if !slices.ContainsFunc(list(pod, "tolerations"), func(t any) bool { return str(t, "operator") == "Exists" && str(t, "key") == "" }) {
		p.add("DaemonSet: no toleration of every taint (operator: Exists); tainted nodes go unwatched")
	}
	c := container(ds)
	sc := mapOf(c, "securityContext")
	if m := missingCaps(strs(sc, "capabilities", "add")); len(m) > 0 {
		p.add("DaemonSet: capabilities.add lacks %v", m)
	}
	if !slices.Contains(strs(sc, "capabilities", "drop"), "ALL") {
		p.add("DaemonSet: capabilities.drop should be [ALL]")
	}
	if at(sc, "runAsUser") != 0 {
		p.add("DaemonSet: runAsUser is %v, want 0", at(sc, "runAsUser"))
	}
	if at(sc, "readOnlyRootFilesystem") != true {
		p.add("DaemonSet: readOnlyRootFilesystem is not true")
	}
	if at(sc, "privileged") == true {
		p.add("DaemonSet: privileged; the capabilities are enough")
	}
	if at(sc, "allowPrivilegeEscalation") == false && slices.ContainsFunc(strs(sc, "capabilities", "add"), func(s string) bool { return normCap(s) == "SYS_ADMIN" }) {
		p.add("DaemonSet: the API server rejects allowPrivilegeEscalation: false with SYS_ADMIN")
	}

	// Host paths.
	volumes := map[string]obj{}
	for _, v := range list(pod, "volumes") {
		volumes[str(v, "name")] = v.(obj)
	}
	mounted := map[string]string{}
	ro := map[string]bool{}
	for _, vm := range list(c, "volumeMounts") {
		mp := str(vm, "mountPath")
		mounted[mp] = str(volumes[str(vm, "name")], "hostPath", "path")
		ro[mp] = at(vm, "readOnly") == true
	}
	for target, source := range hostMounts {
		switch {
		case mounted[target] == "":
			p.add("DaemonSet: no hostPath mounted at %s (want %s)", target, source)
		case mounted[target] != source:
			p.add("DaemonSet: %s is host path %s, want %s", target, mounted[target], source)
		case slices.Contains(readOnlyMounts, target) && !ro[target]:
			p.add("DaemonSet: %s should be read-only", target)
		}
	}

	// Environment: the node name, and the resource attribute built from
	// it (a $(VAR) reference only expands to variables defined before it).
	env := list(c, "env")
	node := slices.IndexFunc(env, func(e any) bool { return str(e, "name") == "K8S_NODE_NAME" })
	if node < 0 || str(env[node], "valueFrom", "fieldRef", "fieldPath") != "spec.nodeName" {
		p.add("DaemonSet: K8S_NODE_NAME is not set from fieldRef spec.nodeName")
	}
	ra := slices.IndexFunc(env, func(e any) bool { return str(e, "name") == "OTEL_RESOURCE_ATTRIBUTES" })
	switch {
	case ra < 0:
		p.add("DaemonSet: no OTEL_RESOURCE_ATTRIBUTES")
	case !strings.Contains(str(env[ra], "value"), "k8s.node.name=$(K8S_NODE_NAME)"):
		p.add("DaemonSet: OTEL_RESOURCE_ATTRIBUTES %q does not set k8s.node.name from K8S_NODE_NAME", str(env[ra], "value"))
	case node > ra:
		p.add("DaemonSet: K8S_NODE_NAME must come before OTEL_RESOURCE_ATTRIBUTES for $(K8S_NODE_NAME) to expand")
	}
	if at(c, "resources", "requests", "memory") == nil || at(c, "resources", "limits", "memory") == nil ||
		at(c, "resources", "requests", "cpu") == nil || at(c, "resources", "limits", "cpu") == nil {
		p.add("DaemonSet: resources need cpu and memory requests and limits")
	}

	// The configuration: the file the args name, from the ConfigMap, valid
	// for the agent and consistent with the mounts and probes.
	args := strs(c, "args")
	i := slices.Index(args, "-c")
	if len(args) == 0 || args[0] != "run" || i < 0 || i+1 >= len(args) {
		p.add("DaemonSet: args %q do not run the agent with -c FILE", args)
		return p
	}
	data, cmName, err := configMapFile(k, ds, args[i+1])
	if err != nil {
		p.add("DaemonSet: config %s: %v", args[i+1], err)
		return p
	}
	cfg, err := config.Parse("ConfigMap "+cmName+" connwatch.yaml", []byte(data))
	if err != nil {
		p.add("agent config: %v", err)
		return p
	}
	if mounted[cfg.Enrich.ProcRoot] != "/proc" {
		p.add("agent config: enrich.proc_root %q is not the host's /proc mount", cfg.Enrich.ProcRoot)
	}
	for _, s := range checkRuntimeMounts(cfg, func(target string) (string, bool, bool) {
		src, ok := mounted[target]
		return src, ro[target], ok
	}) {
		p.add("DaemonSet: %s", s)
	}
	if mounted[cfg.Enrich.Passwd] != "/etc/passwd" {
		p.add("agent config: enrich.passwd %q is not the host's /etc/passwd mount", cfg.Enrich.Passwd)
	}
	lhost, lport, err := hostPort(cfg.Telemetry.Listen)
	if err != nil || isLoopback(lhost) {
		p.add("agent config: telemetry.listen %q is not reachable by the kubelet's probes", cfg.Telemetry.Listen)
	}
	for _, probe := range []struct{ field, path string }{{"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		get := at(c, probe.field, "httpGet")
		if get == nil {
			p.add("DaemonSet: no %s httpGet", probe.field)
			continue
		}
		if got := str(get, "path"); got != probe.path {
			p.add("DaemonSet: %s path %q, want %s", probe.field, got, probe.path)
		}
		if port := containerPort(c, at(get, "port")); port != lport {
			p.add("DaemonSet: %s port %d, the agent listens on %d", probe.field, port, lport)
		}
	}

	// The export endpoint is the gateway Service's OTLP/gRPC port, which
	// leads to the gateway collector's OTLP/gRPC receiver.
	for _, s := range checkEndpoint(k, cfg) {
		p.add("%s", s)
	}
	return p
}

// checkEndpoint follows the agent's endpoint to the gateway: Service,
// its target port, the Deployment's container and its receiver.
func checkEndpoint(k k8sObjects, cfg *config.Config) problems {
	var p problems
	ep := cfg.Export.OTLP.EffectiveTracesEndpoint()
	if logs := cfg.Export.OTLP.EffectiveLogsEndpoint(); logs != ep {
		p.add("agent config: traces (%q) and logs (%q) go to different endpoints", ep, logs)
	}
	host, port, err := hostPort(ep)
	if err != nil {
		p.add("agent config: endpoint: %v", err)
		return p
	}
	if !strings.HasPrefix(ep, "http://") && !cfg.Export.OTLP.Insecure {
		p.add("agent config: the gateway speaks plaintext; set insecure: true or use http://")
	}
	gw, pp := follow(k, "agent config: endpoint", host, port)
	p = append(p, pp...)
	if gw == nil {
		return p
	}
	if svc := k.find("Service", gw.service); str(svc, "spec", "clusterIP") == "None" {
		p.add("Service %s is headless: the agents' gRPC connections would not be spread over the gateway's replicas", gw.service)
	}
	for _, s := range checkGateway(gw.config, gw.container) {
		p.add("ConfigMap %s: %s", gw.configMap, s)
	}
	sg, pp := followRouting(k, gw)
	p = append(p, pp...)
	if sg != nil {
		for _, s := range checkServiceGraph(sg.config, sg.container) {
			p.add("ConfigMap %s: %s", sg.configMap, s)
		}
	}
	return p
}

// collectorTier is a collector Deployment reached through a Service.
type collectorTier struct {
	service, deployment string
	container           obj
	config              obj // the collector's config.yaml
	configMap           string
}

// follow resolves host:port, a Service name <service>.<namespace>[.svc...]
// and port, to the Deployment the Service selects, its container and the
// collector configuration it reads, and checks that the port leads to
// that collector's OTLP gRPC receiver. what names the endpoint's source.
func follow(k k8sObjects, what, host string, port int) (*collectorTier, problems) {
	var p problems
	labels := strings.Split(host, ".")
	if len(labels) < 2 || (len(labels) > 2 && labels[2] != "svc") {
		p.add("%s: host %q is not a Service name <service>.<namespace>[.svc...]", what, host)
		return nil, p
	}
	svcName, svcNS := labels[0], labels[1]
	svc := k.find("Service", svcName)
	if svc == nil || str(svc, "metadata", "namespace") != svcNS {
		p.add("%s %s:%d: no Service %s in namespace %s", what, host, port, svcName, svcNS)
		return nil, p
	}
	var target any
	for _, sp := range list(svc, "spec", "ports") {
		if at(sp, "port") == port {
			target = at(sp, "targetPort")
			if target == nil {
				target = port
			}
		}
	}
	if target == nil {
		p.add("Service %s: no port %d (the port of %s)", svcName, port, what)
		return nil, p
	}
	// The Deployment the Service selects.
	sel := mapOf(svc, "spec", "selector")
	var dep obj
	for _, o := range k.objs {
		if str(o, "kind") != "Deployment" {
			continue
		}
		labels := mapOf(o, "spec", "template", "metadata", "labels")
		match := len(sel) > 0
		for key, v := range sel {
			if str(labels, key) != str(v) {
				match = false
			}
		}
		if match {
			dep = o
		}
	}
	if dep == nil {
		p.add("Service %s selects no Deployment", svcName)
		return nil, p
	}
	dname := str(dep, "metadata", "name")
	if n, _ := at(dep, "spec", "replicas").(int); n < 2 {
		p.add("Deployment %s: %d replicas, want at least 2", dname, n)
	}
	c := container(dep)
	cport := containerPort(c, target)
	if cport == 0 {
		p.add("Service %s: target port %v is not a port of Deployment %s", svcName, target, dname)
	}
	var cfgFile string
	for _, a := range strs(c, "args") {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgFile = v
		}
	}
	data, cmName, err := configMapFile(k, dep, cfgFile)
	if err != nil {
		p.add("Deployment %s: --config %q: %v", dname, cfgFile, err)
		return nil, p
	}
	col, err := decodeAll([]byte(data))
	if err != nil || len(col) != 1 {
		p.add("ConfigMap %s: collector config is not one YAML document: %v", cmName, err)
		return nil, p
	}
	if rport, err := otlpGRPCPort(col[0]); err != nil || rport != cport {
		p.add("ConfigMap %s: the otlp gRPC receiver listens on %d (%v), the Service sends to container port %d", cmName, rport, err, cport)
	}
	return &collectorTier{service: svcName, deployment: dname, container: c, config: col[0], configMap: cmName}, p
}

// checkGateway checks the gateway collector's configuration.
func checkGateway(cfg obj, c obj) problems {
	p := checkTier(cfg, c, "traces", "logs")
	if got := strs(cfg, "service", "pipelines", "traces", "exporters"); !slices.Contains(got, "loadbalancing") {
		p.add("the traces pipeline exports to %v, not through loadbalancing: the two ends of a connection would reach different service-graph collectors", got)
	}
	byUID := false
	for _, a := range list(cfg, "processors", "k8sattributes", "pod_association") {
		for _, src := range list(a, "sources") {
			byUID = byUID || (str(src, "from") == "resource_attribute" && str(src, "name") == "k8s.pod.uid")
		}
	}
	if !byUID {
		p.add("k8sattributes must associate by the resource attribute k8s.pod.uid (the only pod identity the agent has)")
	}
	if rk := str(cfg, "exporters", "loadbalancing", "routing_key"); rk != "traceID" {
		p.add("loadbalancing.routing_key is %q, want traceID (both ends of a connection share only the trace ID)", rk)
	}
	return p
}

// followRouting follows the gateway's loadbalancing exporter (its DNS
// resolver) to the service-graph tier, which must be a headless Service:
// a ClusterIP would resolve to one address and spread nothing.
func followRouting(k k8sObjects, gw *collectorTier) (*collectorTier, problems) {
	var p problems
	dns := mapOf(gw.config, "exporters", "loadbalancing", "resolver", "dns")
	if dns == nil {
		p.add("ConfigMap %s: loadbalancing has no dns resolver to find the service-graph collectors", gw.configMap)
		return nil, p
	}
	port := 4317
	if s := str(dns, "port"); s != "" {
		if n, err := strconv.Atoi(s); err == nil {
			port = n
		} else {
			p.add("ConfigMap %s: loadbalancing resolver port %q is not a number", gw.configMap, s)
		}
	}
	sg, pp := follow(k, "ConfigMap "+gw.configMap+": loadbalancing resolver", str(dns, "hostname"), port)
	p = append(p, pp...)
	if sg == nil {
		return nil, p
	}
	if svc := k.find("Service", sg.service); str(svc, "spec", "clusterIP") != "None" {
		p.add("Service %s: the loadbalancing resolver needs it headless (clusterIP: None) to see every replica", sg.service)
	}
	return sg, p
}

// checkServiceGraph checks the service-graph tier's configuration: spans
// reach the servicegraph connector and a backend, its metrics an
// exporter.
func checkServiceGraph(cfg obj, c obj) problems {
	p := checkTier(cfg, c, "traces", "metrics")
	if _, ok := mapOf(cfg, "connectors")["servicegraph"]; !ok {
		p.add("no servicegraph connector")
	}
	if !slices.Contains(strs(cfg, "service", "pipelines", "traces", "exporters"), "servicegraph") {
		p.add("the traces pipeline does not feed the servicegraph connector")
	}
	if !slices.Contains(strs(cfg, "service", "pipelines", "metrics", "receivers"), "servicegraph") {
		p.add("no metrics pipeline receives from the servicegraph connector")
	}
	if len(otlpExporters(cfg, "traces")) == 0 {
		p.add("the traces pipeline has no OTLP exporter to a backend")
	}
	return p
}

// checkTier checks what every collector tier needs: complete pipelines,
// memory_limiter first with percentages of a memory limit, probes on the
// health_check extension.
func checkTier(cfg obj, c obj, pipelines ...string) problems {
	p := checkCollector(cfg, pipelines...)
	ml := mapOf(cfg, "processors", "memory_limiter")
	for key, want := range map[string]string{"check_interval": "1s", "limit_percentage": "80", "spike_limit_percentage": "20"} {
		if got := str(ml, key); got != want {
			p.add("memory_limiter.%s is %q, want %s", key, got, want)
		}
	}
	if at(c, "resources", "limits", "memory") == nil {
		p.add("memory_limiter's percentages need a memory limit on the container")
	}
	// Probes reach the health_check extension.
	if _, ok := mapOf(cfg, "extensions")["health_check"]; ok {
		_, hport, err := hostPort(str(cfg, "extensions", "health_check", "endpoint"))
		for _, probe := range []string{"livenessProbe", "readinessProbe"} {
			if pp := containerPort(c, at(c, probe, "httpGet", "port")); err != nil || pp != hport {
				p.add("%s port %d is not the health_check port %d", probe, pp, hport)
			}
		}
	}
	return p
}

func TestKubernetes(t *testing.T) {
	k := loadKubernetes(t)
	report(t, "kubernetes", checkObjects(k))
	report(t, "kubernetes", checkAgent(k))
}

// ---------------------------------------------------------------------
// The checks catch broken wiring: each case breaks one thing in a fresh
// copy of the real files and expects a complaint about it.

func TestChecksCatchBrokenWiring(t *testing.T) {
	services := func(f composeFiles, name string) obj { return mapOf(f.compose, "services", name) }
	composeCases := []struct {
		name, want string
		breakIt    func(f *composeFiles)
	}{
		{"no host pid", "pid is", func(f *composeFiles) { delete(services(*f, "connwatch"), "pid") }},
		{"docker socket unused", "grants control of every container", func(f *composeFiles) {
			s := services(*f, "connwatch")
			s["volumes"] = append(list(s, "volumes"), "/var/run/docker.sock:/var/run/docker.sock:ro")
		}},
		{"docker records not mounted", "enrich.docker_root: nothing mounted at /var/lib/docker/containers", func(f *composeFiles) {
			s := services(*f, "connwatch")
			s["volumes"] = slices.DeleteFunc(list(s, "volumes"), func(v any) bool { return strings.HasPrefix(str(v), "/var/lib/docker/") })
		}},
		{"capability missing", "cap_add lacks [PERFMON]", func(f *composeFiles) {
			s := services(*f, "connwatch")
			s["cap_add"] = slices.DeleteFunc(list(s, "cap_add"), func(v any) bool { return str(v) == "PERFMON" })
		}},
		{"proc not mounted", "nothing mounted at /host/proc", func(f *composeFiles) {
			s := services(*f, "connwatch")
			s["volumes"] = slices.DeleteFunc(list(s, "volumes"), func(v any) bool { return strings.HasPrefix(str(v), "/proc:") })
		}},
		{"endpoint port", "port 4318", func(f *composeFiles) {
			services(*f, "connwatch")["environment"] = obj{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector:4318"}
		}},
		{"endpoint host", "not to the otel-collector service", func(f *composeFiles) {
			services(*f, "connwatch")["environment"] = obj{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}
		}},
		{"endpoint unset", `traces endpoint ""`, func(f *composeFiles) {
			delete(services(*f, "connwatch"), "environment")
		}},
		{"agent config invalid", "does not parse", func(f *composeFiles) {
			f.agentConfig = append(f.agentConfig, []byte("\nprobe:\n  atach: auto\n")...)
		}},
		{"proc_root", "enrich.proc_root", func(f *composeFiles) {
			f.agentConfig = []byte("enrich:\n  proc_root: /proc\n  passwd: /host/etc/passwd\ntelemetry:\n  listen: 0.0.0.0:9464\n")
		}},
		{"undefined exporter", `exporter "otlp/missing" is not defined`, func(f *composeFiles) {
			pl := mapOf(f.collector, "service", "pipelines", "traces")
			pl["exporters"] = append(list(pl, "exporters"), "otlp/missing")
		}},
		{"jaeger host", "not to the jaeger service", func(f *composeFiles) {
			mapOf(f.collector, "exporters", "otlp/jaeger")["endpoint"] = "tempo:4317"
		}},
		{"batch first", "memory_limiter must be the first", func(f *composeFiles) {
			mapOf(f.collector, "service", "pipelines", "logs")["processors"] = []any{"batch", "memory_limiter"}
		}},
		{"no UI port", "16686", func(f *composeFiles) { delete(services(*f, "jaeger"), "ports") }},
		{"no jaeger", `no service "jaeger"`, func(f *composeFiles) { delete(mapOf(f.compose, "services"), "jaeger") }},
	}
	for _, tc := range composeCases {
		t.Run("compose/"+tc.name, func(t *testing.T) {
			f := loadCompose(t)
			tc.breakIt(&f)
			expectProblem(t, checkCompose(f), tc.want)
		})
	}

	daemonSet := func(k k8sObjects) obj { return k.find("DaemonSet", "connwatch") }
	agentContainer := func(k k8sObjects) obj { return container(daemonSet(k)) }
	agentConfigMap := func(k k8sObjects) obj { return mapOf(k.find("ConfigMap", "connwatch-config"), "data") }
	k8sCases := []struct {
		name, want string
		breakIt    func(k k8sObjects)
	}{
		{"no hostPID", "hostPID", func(k k8sObjects) { delete(mapOf(daemonSet(k), "spec", "template", "spec"), "hostPID") }},
		{"runtime records writable", "io.containerd.runtime.v2.task should be read-only", func(k k8sObjects) {
			for _, vm := range list(agentContainer(k), "volumeMounts") {
				if str(vm, "name") == "containerd-tasks" {
					delete(vm.(obj), "readOnly")
				}
			}
		}},
		{"capability missing", "lacks [SYS_PTRACE]", func(k k8sObjects) {
			caps := mapOf(agentContainer(k), "securityContext", "capabilities")
			caps["add"] = slices.DeleteFunc(list(caps, "add"), func(v any) bool { return str(v) == "SYS_PTRACE" })
		}},
		{"proc mount", "/host/proc", func(k k8sObjects) {
			c := agentContainer(k)
			c["volumeMounts"] = slices.DeleteFunc(list(c, "volumeMounts"), func(v any) bool { return str(v, "mountPath") == "/host/proc" })
		}},
		{"node name", "spec.nodeName", func(k k8sObjects) {
			for _, e := range list(agentContainer(k), "env") {
				if str(e, "name") == "K8S_NODE_NAME" {
					e.(obj)["valueFrom"] = obj{"fieldRef": obj{"fieldPath": "metadata.name"}}
				}
			}
		}},
		{"env order", "must come before", func(k k8sObjects) {
			c := agentContainer(k)
			env := list(c, "env")
			slices.Reverse(env)
		}},
		{"invalid agent config", "agent config", func(k k8sObjects) {
			agentConfigMap(k)["connwatch.yaml"] = "monitor: hosts\n"
		}},
		{"endpoint port", "the Service sends to container port 4318", func(k k8sObjects) {
			d := agentConfigMap(k)
			d["connwatch.yaml"] = strings.Replace(str(d, "connwatch.yaml"), "svc:4317", "svc:4318", 1)
		}},
		{"endpoint service", "no Service otel-collector", func(k k8sObjects) {
			d := agentConfigMap(k)
			d["connwatch.yaml"] = strings.Replace(str(d, "connwatch.yaml"), "otel-gateway.connwatch", "otel-collector.connwatch", 1)
		}},
		{"loopback listen", "not reachable by the kubelet", func(k k8sObjects) {
			d := agentConfigMap(k)
			d["connwatch.yaml"] = strings.Replace(str(d, "connwatch.yaml"), "0.0.0.0:9464", "127.0.0.1:9464", 1)
		}},
		{"service port", "no port 4317", func(k k8sObjects) {
			for _, sp := range list(k.find("Service", "otel-gateway"), "spec", "ports") {
				if at(sp, "port") == 4317 {
					sp.(obj)["port"] = 14317
				}
			}
		}},
		{"gateway batch first", "memory_limiter must be the first", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "[memory_limiter, k8sattributes, batch]", "[batch, memory_limiter]", 1)
		}},
		{"k8sattributes by IP", "associate by the resource attribute k8s.pod.uid", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "name: k8s.pod.uid", "name: k8s.pod.ip", 1)
		}},
		{"routing by service", "want traceID", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "routing_key: traceID", "routing_key: service", 1)
		}},
		{"gateway not routing", "not through loadbalancing", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "exporters: [loadbalancing]", "exporters: [debug]", 1)
		}},
		{"routing to a ClusterIP", "needs it headless", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "otel-servicegraph-headless.connwatch", "otel-gateway.connwatch", 1)
		}},
		{"routing port", "no port 4318", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), `port: "4317"`, `port: "4318"`, 1)
		}},
		{"no service graph", "does not feed the servicegraph connector", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-servicegraph-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "exporters: [servicegraph, otlp/backend]", "exporters: [otlp/backend]", 1)
		}},
		{"service graph to no backend", "no OTLP exporter to a backend", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-servicegraph-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "exporters: [servicegraph, otlp/backend]", "exporters: [servicegraph]", 1)
		}},
		{"gateway receiver port", "receiver listens on 4319", func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", "otel-gateway-config"), "data")
			d["config.yaml"] = strings.Replace(str(d, "config.yaml"), "0.0.0.0:4317", "0.0.0.0:4319", 1)
		}},
	}
	for _, tc := range k8sCases {
		t.Run("kubernetes/"+tc.name, func(t *testing.T) {
			k := loadKubernetes(t)
			tc.breakIt(k)
			expectProblem(t, append(checkObjects(k), checkAgent(k)...), tc.want)
		})
	}
}

func expectProblem(t *testing.T, p problems, want string) {
	t.Helper()
	for _, s := range p {
		if strings.Contains(s, want) {
			return
		}
	}
	t.Errorf("no problem reported containing %q; got %q", want, p)
}
