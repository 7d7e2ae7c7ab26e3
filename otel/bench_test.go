package otel

import (
	"context"
	"testing"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

type discardLogExporter struct{}

func (discardLogExporter) Export(context.Context, []sdklog.Record) error { return nil }
func (discardLogExporter) Shutdown(context.Context) error                { return nil }
func (discardLogExporter) ForceFlush(context.Context) error              { return nil }

// BenchmarkEmit measures the event path: resource lookup, attribute
// mapping, span and log record creation and hand-off to the batch
// processors (whose exporters discard).
func BenchmarkEmit(b *testing.B) {
	cases := []struct {
		name string
		ev   func(i int) *event.Event
	}{
		{"connect", func(i int) *event.Event { ev := workloadEvent(i); ev.EventID = event.TCPConnect; return ev }},
		{"result", func(i int) *event.Event { return workloadEvent(i) }},
		{"refused", func(i int) *event.Event {
			ev := workloadEvent(i)
			ev.Retval = -int64(unix.ECONNREFUSED)
			return ev
		}},
		{"accept", func(i int) *event.Event {
			ev := acceptEvent()
			ev.HostPID += uint32(i)
			return ev
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			// 64 workloads cycling, all cached.
			events := make([]*event.Event, 64)
			for i := range events {
				events[i] = c.ev(i)
			}
			p, err := NewWithExporters(tracetest.NewNoopExporter(), discardLogExporter{}, testOptions())
			if err != nil {
				b.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Emit(events[i&63])
				i++
			}
		})
	}

	// Every event a new workload beyond the cache: provider creation.
	b.Run("new-workload", func(b *testing.B) {
		o := testOptions()
		o.MaxProviders = 64
		p, err := NewWithExporters(tracetest.NewNoopExporter(), discardLogExporter{}, o)
		if err != nil {
			b.Fatal(err)
		}
		defer p.Shutdown(context.Background())
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.Emit(workloadEvent(i))
			i++
		}
	})
}
