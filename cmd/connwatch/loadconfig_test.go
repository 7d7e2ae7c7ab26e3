package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadConfig applies the environment before it checks the rules between
// settings: a client key from the environment completes the file's
// certificate. A per-signal variant of a shared setting is logged as
// ignored, and a bad -attach is refused naming the flag.
func TestLoadConfigSources(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("export:\n  otlp:\n    client_certificate: /c.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	_, err := loadConfig(path, "", log)
	if want := path + ":3:5: export.otlp: client_certificate and client_key must be given together (client_key is missing)"; err == nil || err.Error() != want {
		t.Errorf("certificate alone: %v, want %s", err, want)
	}

	t.Setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem")
	t.Setenv("OTEL_EXPORTER_OTLP_LOGS_HEADERS", "a=b")
	cfg, err := loadConfig(path, "kprobe", log)
	if err != nil {
		t.Fatal(err)
	}
	if o := cfg.Export.OTLP; o.ClientCertificate != "/c.pem" || o.ClientKey != "/k.pem" || cfg.Probe.Attach != "kprobe" {
		t.Errorf("pair %q, %q; attach %q", o.ClientCertificate, o.ClientKey, cfg.Probe.Attach)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"environment variable ignored") ||
		!strings.Contains(logs.String(), "variable=OTEL_EXPORTER_OTLP_LOGS_HEADERS") {
		t.Errorf("log %q does not name the ignored variable", logs.String())
	}

	if _, err := loadConfig(path, "uprobe", log); err == nil || !strings.HasPrefix(err.Error(), `-attach: unknown attach mode "uprobe"`) {
		t.Errorf("-attach uprobe: %v", err)
	}
}
