package deploy

// OpenTelemetry Collector configurations: what every collector of the
// deployment files needs, and how its OTLP receiver and exporters are
// found.

import (
	"errors"
	"slices"
	"strings"
)

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

// checkTakesAgentSignals checks that a collector the agent sends to feeds
// its OTLP receiver into a pipeline of each of the agent's signals
// (traces, logs, metrics): without one, the receiver answers that signal's
// exports with Unimplemented.
func checkTakesAgentSignals(cfg obj) problems {
	var p problems
	for _, signal := range []string{"traces", "logs", "metrics"} {
		fed := false
		for name, pl := range mapOf(cfg, "service", "pipelines") {
			if (name == signal || strings.HasPrefix(name, signal+"/")) && slices.Contains(strs(pl, "receivers"), "otlp") {
				fed = true
			}
		}
		if !fed {
			p.add("no %s pipeline takes the otlp receiver: the agent's %s would be refused (Unimplemented)", signal, signal)
		}
	}
	return p
}
