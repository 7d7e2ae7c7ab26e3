// Command connwatch watches TCP connections in the kernel with eBPF and
// reports each one.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `connwatch watches TCP connections in the kernel and reports each one.

Usage:
  connwatch [run] [flags]     load the probes and print/export events (needs root)
  connwatch version           print the version

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
}

func newRunFlags(o *runOptions, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.configPath, "c", "", "config `file` (YAML)")
	fs.StringVar(&o.configPath, "config", "", "config `file` (YAML), same as -c")
	fs.StringVar(&o.attach, "attach", "", "attach `mode`: auto, kprobe or tracepoint (overrides probe.attach)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	return fs
}

func runAgent(args []string, stdout, stderr io.Writer) int {
	var o runOptions
	fs := newRunFlags(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "connwatch: bad -log-level %q: %v\n", o.logLevel, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if err := agent(o, stdout, log); err != nil {
		fmt.Fprintf(stderr, "connwatch: %v\n", err)
		return 1
	}
	return 0
}
