// Command connwatch watches TCP connections in the kernel with eBPF and
// reports each one.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/connwatch/connwatch/check"
	"github.com/connwatch/connwatch/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `connwatch watches TCP connections in the kernel and reports each one.

Usage:
  connwatch [run] [flags]            load the probes and print/export events (needs root)
  connwatch top [flags]              a live view of the busiest workloads (needs root and a terminal)
  connwatch config validate -c FILE  check a config file without running (exit 1 on error)
  connwatch config default           print the default config as YAML
  connwatch check [--json]           report what this kernel supports and which attach mode auto picks
  connwatch version                  print the version

Flags of run:
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "connwatch %s\n", buildVersion())
		return 0
	case "run":
		return runAgent(args, stdout, stderr)
	case "top":
		return topCmd(args, stdout, stderr)
	case "config":
		return configCmd(args, stdout, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, usage)
		newRunFlags(new(runOptions), stdout).PrintDefaults()
		return 0
	}
	fmt.Fprintf(stderr, "connwatch: unknown command %q (try 'connwatch help')\n", cmd)
	return 2
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

type runOptions struct {
	configPath string
	attach     string
	logLevel   string
	format     string
}

func newRunFlags(o *runOptions, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.configPath, "c", "", "config `file` (YAML)")
	fs.StringVar(&o.configPath, "config", "", "config `file` (YAML), same as -c")
	fs.StringVar(&o.attach, "attach", "", "attach `mode`: auto, fentry, kprobe or tracepoint (overrides probe.attach)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&o.format, "format", "auto", "stdout `format` when no OTLP endpoint is set: table (a row per connection, for a person), otel (log records and spans as JSON lines), events (one flat JSON line per kernel event, every sys_context field and the attach mode), or auto (table when stdout is a terminal, otel otherwise)")
	return fs
}

// parseRunFlags parses the flags of run (and top); code is the exit code
// to return at once when ok is false.
func parseRunFlags(args []string, stderr io.Writer) (o runOptions, level slog.Level, code int, ok bool) {
	fs := newRunFlags(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return o, level, 0, false
		}
		return o, level, 2, false
	}
	switch o.format {
	case "auto", "table", "otel", "events":
	default:
		fmt.Fprintf(stderr, "connwatch: bad -format %q (expected table, otel, events or auto)\n", o.format)
		return o, level, 2, false
	}
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "connwatch: bad -log-level %q: %v\n", o.logLevel, err)
		return o, level, 2, false
	}
	return o, level, 0, true
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	o, level, code, ok := parseRunFlags(args, stderr)
	if !ok {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if err := agent(o, stdout, log); err != nil {
		fmt.Fprintf(stderr, "connwatch: %v\n", err)
		return 1
	}
	return 0
}

func configCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "connwatch config: expected 'validate -c FILE' or 'default'")
		return 2
	}
	switch args[0] {
	case "default":
		stdout.Write(config.Default().YAML())
		return 0
	case "validate":
		fs := flag.NewFlagSet("config validate", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var path string
		fs.StringVar(&path, "c", "", "config `file` (YAML)")
		fs.StringVar(&path, "config", "", "config `file` (YAML), same as -c")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if path == "" && fs.NArg() == 1 {
			path = fs.Arg(0)
		}
		if path == "" {
			fmt.Fprintln(stderr, "connwatch config validate: -c FILE is required")
			return 2
		}
		cfg, err := config.Load(path)
		if err == nil {
			err = cfg.Validate()
		}
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return 0
	}
	fmt.Fprintf(stderr, "connwatch config: unknown subcommand %q (expected validate or default)\n", args[0])
	return 2
}

func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	r := check.Run(context.Background(), check.Options{})
	if *asJSON {
		if err := r.WriteJSON(stdout); err != nil {
			fmt.Fprintln(stderr, "connwatch check:", err)
			return 1
		}
	} else {
		r.WriteText(stdout)
	}
	if !r.CanRun {
		return 1
	}
	return 0
}
