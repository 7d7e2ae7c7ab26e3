package main

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"github.com/connwatch/connwatch/console"
)

// topCmd is `connwatch top`: the agent with a live per-workload view on
// the terminal instead of an output. Its log is held while the view is
// up (it would scribble over it) and printed when the view ends.
func topCmd(args []string, stdout, stderr io.Writer) int {
	o, level, code, ok := parseRunFlags(args, stderr)
	if !ok {
		return code
	}
	out, isFile := stdout.(*os.File)
	if !isFile || !console.IsTerminal(out.Fd()) || !console.IsTerminal(os.Stdin.Fd()) {
		fmt.Fprintln(stderr, "connwatch top: needs a terminal on stdin and stdout (connwatch run prints JSON lines for pipes)")
		return 2
	}
	held := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(held, &slog.HandlerOptions{Level: level}))
	o.format = formatTop
	err := agent(o, stdout, log)
	held.WriteTo(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "connwatch: %v\n", err)
		return 1
	}
	return 0
}

// formatTop is the output of connwatch top (not a -format value).
const formatTop = "top"

// lockedBuffer holds log lines from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) WriteTo(w io.Writer) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.WriteTo(w)
}
