package main

// The report's table and what its cells are made of: numbers grouped and
// in their units, verdicts, short errors, and the targets each
// measurement is shown next to.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// table is a Markdown table whose columns are padded to align in a
// terminal too.
type table struct {
	header []string
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w io.Writer) {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	line := func(r []string) {
		var b strings.Builder
		b.WriteString("|")
		for i := range t.header {
			c := ""
			if i < len(r) {
				c = r[i]
			}
			b.WriteString(" " + c + strings.Repeat(" ", width[i]-utf8.RuneCountInString(c)) + " |")
		}
		fmt.Fprintln(w, b.String())
	}
	line(t.header)
	sep := make([]string, len(t.header))
	for i := range sep {
		sep[i] = strings.Repeat("-", width[i])
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}

// group formats n with thousands separators.
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func us(ns float64) string { return fmt.Sprintf("%.2f µs", ns/1000) }

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func rate(r float64) string { return group(uint64(r+0.5)) + "/s" }

func verdict(met bool) string {
	if met {
		return "met"
	}
	return "**MISSED**"
}

func short(err error, n int) string {
	s := err.Error()
	if i := strings.Index(s, " (verifier log"); i > 0 {
		s = s[:i]
	}
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "…"
	}
	return s
}

func cores(c float64) string {
	if c < 0 {
		return "?"
	}
	return fmt.Sprintf("%.2f cores", c)
}

func kernelRelease() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return "?"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// Targets of the issue, shown next to each measurement.
const (
	targetBPFNs       = 3000    // BPF time per connection, tracepoint mode
	targetCloseNs     = 300     // BPF time close records add per connection
	targetRateRatio   = 0.90    // connection rate with the agent exporting OTLP, of without
	targetE2ERate     = 250_000 // user space end to end, events/s on one core
	targetE2EAllocs   = 2.0     // user space end to end, allocations per event
	targetStdoutCores = 0.30    // agent printing OTel JSON lines to /dev/null at full speed
	targetRSSFull     = 60 << 20
	targetRSSIdle     = 40 << 20
)

var (
	targetBPFCell   = fmt.Sprintf("≤ %s", us(targetBPFNs))
	targetCloseCell = fmt.Sprintf("≤ +%s", us(targetCloseNs))
	targetE2ECell   = fmt.Sprintf("≥ %s events/s, ≤ %.0f allocs / event", group(targetE2ERate), targetE2EAllocs)
	targetRateCell  = fmt.Sprintf("≥ %.0f %% of without", 100*targetRateRatio)
)

// kernelCell formats the BPF time per connection.
func kernelCell(k kernelCost) string {
	return fmt.Sprintf("%s (%.1f runs × %.0f ns)", us(k.NsPerConn()), k.RunsPerConn(), k.NsPerRun())
}

// deliveredCell is "P % (got / expected, n dropped)".
func deliveredCell(got, exp uint64) string {
	drops := uint64(0)
	if exp > got {
		drops = exp - got
	}
	pct := 0.0
	if exp > 0 {
		pct = 100 * float64(got) / float64(exp)
	}
	return fmt.Sprintf("%.2f %% (%s / %s, %s missing)", pct, group(got), group(exp), group(drops))
}

// perKind is each record kind's delivered share, e.g. "client spans
// 100.00 %, …".
func perKind(got, exp counts) (string, bool) {
	kinds := []struct {
		name     string
		got, exp uint64
	}{
		{"client spans", got.ClientSpans, exp.ClientSpans},
		{"server spans", got.ServerSpans, exp.ServerSpans},
		{"connect logs", got.ConnectLogs, exp.ConnectLogs},
		{"result logs", got.ResultLogs, exp.ResultLogs},
		{"accept logs", got.AcceptLogs, exp.AcceptLogs},
		{"close logs", got.CloseLogs, exp.CloseLogs},
	}
	var parts []string
	all := true
	for _, k := range kinds {
		if k.exp == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f %%", k.name, 100*float64(k.got)/float64(k.exp)))
		if k.got != k.exp {
			all = false
		}
	}
	return strings.Join(parts, ", "), all && len(parts) > 0
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return short(err, 60)
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}
