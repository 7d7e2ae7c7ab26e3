package deploy

// Kubernetes: the manifests in deploy/kubernetes/, the agent's DaemonSet
// and the endpoint it exports to (the collector tiers behind it are
// followed in kubernetes_tiers_test.go).

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/connwatch/connwatch/config"
)

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

func TestKubernetes(t *testing.T) {
	k := loadKubernetes(t)
	report(t, "kubernetes", checkObjects(k))
	report(t, "kubernetes", checkAgent(k))
}
