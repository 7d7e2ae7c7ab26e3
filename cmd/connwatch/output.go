package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/connwatch/connwatch/config"
	"github.com/connwatch/connwatch/console"
	"github.com/connwatch/connwatch/metrics"
	"github.com/connwatch/connwatch/otel"
	"github.com/connwatch/connwatch/pipeline"
)

// output is where events go: the OpenTelemetry pipeline (OTLP, or its
// stdout JSON lines when no endpoint is set), or, with no endpoint, the
// table (-format table, or a terminal) or one flat JSON line per kernel
// event (-format events).
type output struct {
	sink     pipeline.Sink
	pipeline *otel.Exporter   // nil for the table, -format events and top
	metrics  *metrics.Store   // the pipeline's connection metrics; nil without the pipeline
	view     *console.TopView // connwatch top's view; nil otherwise
}

func otelOptions(cfg *config.Config, store *metrics.Store, stdout io.Writer, log *slog.Logger) otel.Options {
	o := cfg.Export.OTLP
	return otel.Options{
		Metrics:         store,
		SendMetrics:     cfg.Export.Metrics,
		MetricsEndpoint: o.MetricsEndpoint,
		MetricsInterval: cfg.Metrics.Interval,
		Sampled:         cfg.Export.Sampling.Ratio < 1,
		SampleRatio:     cfg.Export.Sampling.Ratio,
		Endpoint:        o.Endpoint,
		TracesEndpoint:  o.TracesEndpoint,
		LogsEndpoint:    o.LogsEndpoint,
		Insecure:        o.Insecure,
		Headers:         o.Headers,
		Compression:     o.Compression,
		Timeout:         o.Timeout,
		CACert:          o.Certificate,
		ClientCert:      o.ClientCertificate,
		ClientKey:       o.ClientKey,
		Traces:          cfg.Export.Traces,
		Logs:            cfg.Export.Logs,
		TraceKey:        cfg.Export.TraceKey,
		Stdout:          stdout,
		Getenv:          os.Getenv,
		Logger:          log,
		QueueBytes:      int64(cfg.Export.Queue.MemoryMiB) << 20,
		QueueDir:        cfg.Export.Queue.Directory,
		QueueDiskBytes:  int64(cfg.Export.Queue.DiskMiB) << 20,
	}
}

// stdoutFormat resolves -format auto: the table for a person at a
// terminal, JSON lines for a pipe or a file.
func stdoutFormat(format string, stdout io.Writer) (string, int, bool) {
	f, ok := stdout.(*os.File)
	tty := ok && console.IsTerminal(f.Fd())
	if format == "auto" {
		format = "otel"
		if tty {
			format = "table"
		}
	}
	width := 0
	if tty {
		width = console.Width(f.Fd())
	}
	return format, width, tty && console.ColorOK(os.Getenv)
}

func newOutput(format, mode string, cfg *config.Config, stdout io.Writer, log *slog.Logger) (*output, error) {
	o := cfg.Export.OTLP
	otlp := o.Endpoint != "" || o.TracesEndpoint != "" || o.LogsEndpoint != "" || (cfg.Export.Metrics && o.MetricsEndpoint != "")
	format, width, color := stdoutFormat(format, stdout)
	stdoutClosed := func(err error) {
		log.Error("stdout closed; events are no longer printed", "err", err)
	}
	switch {
	case format == formatTop:
		top := console.NewTop(nil)
		view := console.StartTopView(top, os.Stdin, stdout, console.TopOptions{Color: color})
		return &output{sink: top, view: view}, nil
	case otlp:
	case format == "events":
		log.Info("printing kernel events as JSON lines (-format events)")
		return &output{sink: pipeline.NewEventsSink(stdout, mode, stdoutClosed)}, nil
	case format == "table":
		log.Info("printing a row per connection outcome and per accept (-format otel for the OpenTelemetry JSON lines); make a connection in another terminal to see one")
		t := console.NewTable(console.TableOptions{Width: width, Color: color})
		return &output{sink: pipeline.NewLineSink(stdout, "table rows", t.Header(), t.Append, stdoutClosed)}, nil
	}
	store := metrics.New(metrics.Options{Peer: cfg.Metrics.Peer, MaxSeries: cfg.Metrics.MaxSeries, Expiry: cfg.Metrics.Expiry})
	p, err := otel.New(context.Background(), otelOptions(cfg, store, stdout, log))
	if err != nil {
		return nil, fmt.Errorf("setting up OpenTelemetry export: %w", err)
	}
	// The key is a secret when set: say which, never what.
	key := "public default"
	if cfg.Export.TraceKey != "" {
		key = "export.trace_key"
	}
	log.Info("trace IDs derived from each connection", "key", key)
	if otlp {
		// Headers may hold tokens: log where, never what.
		log.Info("exporting OTLP", "endpoint", o.Endpoint, "traces_endpoint", o.TracesEndpoint,
			"logs_endpoint", o.LogsEndpoint, "metrics_endpoint", o.MetricsEndpoint,
			"traces", cfg.Export.Traces, "logs", cfg.Export.Logs, "metrics", cfg.Export.Metrics, "metrics_interval", cfg.Metrics.Interval)
	} else {
		log.Info("no OTLP endpoint set: printing log records and spans as JSON lines on stdout")
	}
	if cfg.Export.Sampling.Ratio < 1 {
		log.Info("sampling successful connections; failed ones are always exported", "ratio", cfg.Export.Sampling.Ratio)
	}
	return &output{sink: p, pipeline: p, metrics: store}, nil
}

// close flushes what is queued and stops the exporters, within ctx.
func (o *output) close(ctx context.Context) error {
	var err error
	if o.view != nil {
		err = o.view.Stop() // the terminal back as it was, before anything is logged
	}
	return errors.Join(err, o.sink.Shutdown(ctx))
}
