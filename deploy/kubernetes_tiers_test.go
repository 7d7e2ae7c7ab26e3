package deploy

// The collector tiers of the Kubernetes manifests: the gateway the agents
// export to, and the service-graph tier it routes spans to by trace ID.

import (
	"slices"
	"strconv"
	"strings"
)

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
	p = append(p, checkTakesAgentSignals(cfg)...)
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
