package main

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// selfMetrics is the agent's own counters as a Prometheus collector: each
// scrape reads them (telemetry.collect) into constant metrics. It is
// unchecked (Describe sends nothing): which label values exist (CPUs, BPF
// programs, signals) is known only at collection, and
// connwatch_dropped_total has samples with and without a signal label.
type selfMetrics struct {
	t *telemetry

	mu    sync.Mutex
	descs map[string]*prometheus.Desc // by name and label names
}

func (s *selfMetrics) Describe(chan<- *prometheus.Desc) {}

func (s *selfMetrics) Collect(ch chan<- prometheus.Metric) {
	s.t.collect(&emitter{ch: ch, s: s})
}

// desc returns the description of the metric name with the given label
// names, made once.
func (s *selfMetrics) desc(name, help string, labelNames []string) *prometheus.Desc {
	key := name + "\x00" + strings.Join(labelNames, "\x00")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.descs == nil {
		s.descs = map[string]*prometheus.Desc{}
	}
	d, ok := s.descs[key]
	if !ok {
		d = prometheus.NewDesc(name, help, labelNames, nil)
		s.descs[key] = d
	}
	return d
}

// emitter sends one scrape's samples; labels are name, value pairs.
type emitter struct {
	ch chan<- prometheus.Metric
	s  *selfMetrics
}

func (e *emitter) sample(name string, typ prometheus.ValueType, help string, v float64, labels ...string) {
	names := make([]string, 0, len(labels)/2)
	values := make([]string, 0, len(labels)/2)
	for i := 0; i+1 < len(labels); i += 2 {
		names = append(names, labels[i])
		values = append(values, labels[i+1])
	}
	m, err := prometheus.NewConstMetric(e.s.desc(name, help, names), typ, v, values...)
	if err != nil {
		m = prometheus.NewInvalidMetric(e.s.desc(name, help, names), err)
	}
	e.ch <- m
}

func (e *emitter) counter(name, help string, v uint64, labels ...string) {
	e.sample(name, prometheus.CounterValue, help, float64(v), labels...)
}

func (e *emitter) gauge(name, help string, v float64, labels ...string) {
	e.sample(name, prometheus.GaugeValue, help, v, labels...)
}
