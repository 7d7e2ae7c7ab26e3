package deploy

// The checks catch broken wiring: each case breaks one thing in a fresh
// copy of the real files and expects a complaint about it.

import (
	"slices"
	"strings"
	"testing"
)

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
		{"metrics not taken", "no metrics pipeline takes the otlp receiver", func(f *composeFiles) {
			mapOf(f.collector, "service", "pipelines", "metrics")["receivers"] = []any{"servicegraph"}
		}},
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
	// editConfigMap breaks file of ConfigMap cm by replacing the first old
	// in it with with.
	editConfigMap := func(cm, file, old, with string) func(k k8sObjects) {
		return func(k k8sObjects) {
			d := mapOf(k.find("ConfigMap", cm), "data")
			d[file] = strings.Replace(str(d, file), old, with, 1)
		}
	}
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
		{"endpoint port", "the Service sends to container port 4318", editConfigMap("connwatch-config", "connwatch.yaml", "svc:4317", "svc:4318")},
		{"endpoint service", "no Service otel-collector", editConfigMap("connwatch-config", "connwatch.yaml", "otel-gateway.connwatch", "otel-collector.connwatch")},
		{"loopback listen", "not reachable by the kubelet", editConfigMap("connwatch-config", "connwatch.yaml", "0.0.0.0:9464", "127.0.0.1:9464")},
		{"service port", "no port 4317", func(k k8sObjects) {
			for _, sp := range list(k.find("Service", "otel-gateway"), "spec", "ports") {
				if at(sp, "port") == 4317 {
					sp.(obj)["port"] = 14317
				}
			}
		}},
		{"gateway batch first", "memory_limiter must be the first", editConfigMap("otel-gateway-config", "config.yaml", "[memory_limiter, k8sattributes, batch]", "[batch, memory_limiter]")},
		{"k8sattributes by IP", "associate by the resource attribute k8s.pod.uid", editConfigMap("otel-gateway-config", "config.yaml", "name: k8s.pod.uid", "name: k8s.pod.ip")},
		{"routing by service", "want traceID", editConfigMap("otel-gateway-config", "config.yaml", "routing_key: traceID", "routing_key: service")},
		{"gateway takes no metrics", "no metrics pipeline takes the otlp receiver",
			editConfigMap("otel-gateway-config", "config.yaml", "metrics:\n      receivers: [otlp]", "metrics:\n      receivers: [nop]")},
		{"gateway not routing", "not through loadbalancing", editConfigMap("otel-gateway-config", "config.yaml", "exporters: [loadbalancing]", "exporters: [debug]")},
		{"routing to a ClusterIP", "needs it headless", editConfigMap("otel-gateway-config", "config.yaml", "otel-servicegraph-headless.connwatch", "otel-gateway.connwatch")},
		{"routing port", "no port 4318", editConfigMap("otel-gateway-config", "config.yaml", `port: "4317"`, `port: "4318"`)},
		{"no service graph", "does not feed the servicegraph connector", editConfigMap("otel-servicegraph-config", "config.yaml", "exporters: [servicegraph, otlp/backend]", "exporters: [otlp/backend]")},
		{"service graph to no backend", "no OTLP exporter to a backend", editConfigMap("otel-servicegraph-config", "config.yaml", "exporters: [servicegraph, otlp/backend]", "exporters: [servicegraph]")},
		{"gateway receiver port", "receiver listens on 4319", editConfigMap("otel-gateway-config", "config.yaml", "0.0.0.0:4317", "0.0.0.0:4319")},
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
