package deploy

// What the checks of the deployment files share: the agent's capabilities
// and host mounts, access to decoded YAML, the problems a check reports,
// endpoints, and the container runtimes' mounts both deployments need.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
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

// pinned reports whether an image reference names a tag other than latest.
func pinned(image string) bool {
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	return image[i+1:] != "latest" && image[i+1:] != ""
}

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return data
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
