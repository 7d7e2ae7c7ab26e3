package deploy

// Docker Compose: docker-compose.yml with deploy/compose/, and the image's
// Dockerfile and .dockerignore it builds from.

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/config"
)

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
	for _, s := range append(checkCollector(f.collector, "traces", "logs"), checkTakesAgentSignals(f.collector)...) {
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
	for _, need := range []string{"go.mod", "go.sum", "cmd/connwatch/main.go", "bpf/connwatch_x86_bpfel.o", "bpf/connwatch_arm64_bpfel.o",
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
