package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/connwatch/connwatch/config"
	"github.com/connwatch/connwatch/otel"
	"github.com/connwatch/connwatch/pipeline"
)

// output is where events go: the OpenTelemetry pipeline (OTLP, or its
// stdout JSON lines when no endpoint is set), or, with -format events and
// no endpoint, one flat JSON line per kernel event.
type output struct {
	sink     pipeline.Sink
	pipeline *otel.Exporter // nil for -format events
}

func otelOptions(cfg *config.Config, stdout io.Writer, log *slog.Logger) otel.Options {
	o := cfg.Export.OTLP
	return otel.Options{
		Endpoint:       o.Endpoint,
		TracesEndpoint: o.TracesEndpoint,
		LogsEndpoint:   o.LogsEndpoint,
		Insecure:       o.Insecure,
		Headers:        o.Headers,
		Compression:    o.Compression,
		Timeout:        o.Timeout,
		CACert:         o.Certificate,
		ClientCert:     o.ClientCertificate,
		ClientKey:      o.ClientKey,
		Traces:         cfg.Export.Traces,
		Logs:           cfg.Export.Logs,
		Stdout:         stdout,
		Getenv:         os.Getenv,
		Logger:         log,
		QueueBytes:     int64(cfg.Export.Queue.MemoryMiB) << 20,
		QueueDir:       cfg.Export.Queue.Directory,
		QueueDiskBytes: int64(cfg.Export.Queue.DiskMiB) << 20,
	}
}

func newOutput(format, mode string, cfg *config.Config, stdout io.Writer, log *slog.Logger) (*output, error) {
	o := cfg.Export.OTLP
	otlp := o.Endpoint != "" || o.TracesEndpoint != "" || o.LogsEndpoint != ""
	if format == "events" && !otlp {
		log.Info("printing kernel events as JSON lines (-format events)")
		return &output{sink: pipeline.NewEventsSink(stdout, mode, func(err error) {
			log.Error("stdout closed; events are no longer printed", "err", err)
		})}, nil
	}
	p, err := otel.New(context.Background(), otelOptions(cfg, stdout, log))
	if err != nil {
		return nil, fmt.Errorf("setting up OpenTelemetry export: %w", err)
	}
	if otlp {
		// Headers may hold tokens: log where, never what.
		log.Info("exporting OTLP", "endpoint", o.Endpoint, "traces_endpoint", o.TracesEndpoint,
			"logs_endpoint", o.LogsEndpoint, "traces", cfg.Export.Traces, "logs", cfg.Export.Logs)
	} else {
		log.Info("no OTLP endpoint set: printing log records and spans as JSON lines on stdout")
	}
	return &output{sink: p, pipeline: p}, nil
}

// close flushes what is queued and stops the exporters, within ctx.
func (o *output) close(ctx context.Context) error {
	return o.sink.Shutdown(ctx)
}
