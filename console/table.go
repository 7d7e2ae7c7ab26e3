package console

import (
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/connwatch/connwatch/event"
)

// DefaultWidth is the table's width when the terminal's is not known.
const DefaultWidth = 120

// TableOptions shape a Table.
type TableOptions struct {
	// Width is the terminal's width in columns; 0 means DefaultWidth.
	// Columns that do not fit are left out, least useful first.
	Width int
	// Color highlights failed connections (ANSI SGR codes).
	Color bool
	// Location is the time zone of the TIME column; nil means local.
	Location *time.Location
}

// Table formats events as the rows of a table for a person: one row per
// connection outcome (connect results) and per accepted connection.
// Connection attempts have no row of their own: their outcome's row
// follows with the handshake's latency. A Table is not safe for
// concurrent use (LineSink serialises its calls).
type Table struct {
	cols  []column
	addrW int
	color bool
	loc   *time.Location
	cell  []byte
}

type columnID uint8

const (
	colTime columnID = iota
	colPID
	colComm
	colDir
	colLocal
	colRemote
	colOutcome
	colLatency
	colContainer
)

type column struct {
	id    columnID
	title string
	width int // 0: an address column, sized by the table
	right bool
	drop  int // order in which narrow terminals lose it; 0 never
}

// allColumns in display order; drop ranks which go first when the
// terminal is narrow (an 80-column terminal keeps TIME and loses LOCAL
// and DIR, which the OUTCOME "accepted" repeats).
var allColumns = []column{
	{colTime, "TIME", 12, false, 4},
	{colPID, "PID", 7, true, 0},
	{colComm, "COMM", 15, false, 0},
	{colDir, "DIR", 3, false, 3},
	{colLocal, "LOCAL", 0, false, 2},
	{colRemote, "REMOTE", 0, false, 0},
	{colOutcome, "OUTCOME", 11, false, 0},
	{colLatency, "LATENCY", 8, true, 5},
	{colContainer, "CONTAINER", 12, false, 1},
}

const (
	minAddr = len("255.255.255.255:65535")
	maxAddr = len("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535")
)

// NewTable returns a table laid out for o.Width.
func NewTable(o TableOptions) *Table {
	width := o.Width
	if width <= 0 {
		width = DefaultWidth
	}
	t := &Table{color: o.Color, loc: o.Location}
	if t.loc == nil {
		t.loc = time.Local
	}
	cols := append([]column(nil), allColumns...)
	for {
		fixed, addrs := 0, 0
		for _, c := range cols {
			fixed += c.width + 1 // one space between columns
			if c.width == 0 {
				addrs++
			}
		}
		fixed--
		t.addrW = maxAddr
		if addrs > 0 {
			t.addrW = min((width-fixed)/addrs, maxAddr)
		}
		if t.addrW >= minAddr {
			break
		}
		// Drop the column with the lowest rank still present.
		drop := -1
		for i, c := range cols {
			if c.drop != 0 && (drop < 0 || c.drop < cols[drop].drop) {
				drop = i
			}
		}
		if drop < 0 {
			t.addrW = minAddr // as narrow as it gets: the lines wrap
			break
		}
		cols = append(cols[:drop], cols[drop+1:]...)
	}
	t.cols = cols
	return t
}

// Header returns the table's header line.
func (t *Table) Header() []byte {
	var b []byte
	if t.color {
		b = append(b, "\x1b[1m"...)
	}
	for i, c := range t.cols {
		b = t.pad(b, i, c, c.title)
	}
	b = trimRight(b)
	if t.color {
		b = append(b, "\x1b[0m"...)
	}
	return append(b, '\n')
}

// Append appends ev's row to dst (a LineFormat), or nothing for an event
// without a row.
func (t *Table) Append(dst []byte, ev *event.Event) []byte {
	if !ev.IsResult() && !ev.IsAccept() {
		return dst
	}
	start := len(dst)
	for i, c := range t.cols {
		var s string
		failed := false
		switch c.id {
		case colTime:
			t.cell = ev.Time.In(t.loc).AppendFormat(t.cell[:0], "15:04:05.000")
			s = string(t.cell)
		case colPID:
			s = strconv.FormatUint(uint64(ev.HostPID), 10)
		case colComm:
			s = printable(ev.Comm)
		case colDir:
			s = "out"
			if ev.IsAccept() {
				s = "in"
			}
		case colLocal:
			s = t.addr(ev.Local)
		case colRemote:
			s = t.addr(ev.Remote)
		case colOutcome:
			if ev.IsAccept() {
				s = "accepted"
			} else {
				o := ev.Outcome()
				s, failed = o.String(), o != event.OutcomeEstablished
			}
		case colLatency:
			s = "-"
			if d := ev.Duration(); ev.IsResult() && d > 0 {
				s = latency(d)
			}
		case colContainer:
			s = "-"
			if w := ev.Workload; w != nil && w.ContainerID != "" {
				s = printable(w.ContainerID)
				if len(s) > 12 {
					s = s[:12]
				}
			}
		}
		if failed && t.color {
			dst = append(dst, "\x1b[31m"...)
			dst = t.pad(dst, i, c, s)
			dst = append(trimRight(dst), "\x1b[0m"...)
			if i < len(t.cols)-1 {
				dst = t.fill(dst, c, s)
			}
			continue
		}
		dst = t.pad(dst, i, c, s)
	}
	row := trimRight(dst[start:])
	return append(dst[:start+len(row)], '\n')
}

// pad appends s in column c (the i-th shown), aligned and followed by
// the space before the next column.
func (t *Table) pad(dst []byte, i int, c column, s string) []byte {
	w := c.width
	if w == 0 {
		w = t.addrW
	}
	n := utf8.RuneCountInString(s)
	if n > w {
		// Keep the end: a port, a command's distinguishing suffix.
		r := []rune(s)
		s, n = "…"+string(r[len(r)-w+1:]), w
	}
	if c.right {
		dst = spaces(dst, w-n)
	}
	dst = append(dst, s...)
	if !c.right {
		dst = spaces(dst, w-n)
	}
	if i < len(t.cols)-1 {
		dst = append(dst, ' ')
	}
	return dst
}

// fill appends the padding pad would have put after s, for a cell
// whose colour was reset before it.
func (t *Table) fill(dst []byte, c column, s string) []byte {
	w := c.width
	if w == 0 {
		w = t.addrW
	}
	n := min(utf8.RuneCountInString(s), w)
	if !c.right {
		dst = spaces(dst, w-n)
	}
	return append(dst, ' ')
}

func (t *Table) addr(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "-"
	}
	if a := ap.Addr(); a.Is4In6() {
		ap = netip.AddrPortFrom(a.Unmap(), ap.Port())
	}
	return printable(ap.String())
}

// latency is d in at most four digits and a unit: 312µs, 12.3ms, 3.01s.
func latency(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return strconv.FormatInt(d.Microseconds(), 10) + "µs"
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) + "ms"
	case d < time.Second:
		return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + "ms"
	case d < 100*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) + "s"
	}
	return strconv.FormatFloat(d.Seconds(), 'f', 0, 64) + "s"
}

// printable replaces what a terminal would act on instead of show
// (control characters, escape sequences, invalid UTF-8), so a process
// name cannot rewrite the screen.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := make([]rune, 0, len(s))
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			r = '?'
		}
		b = append(b, r)
	}
	return string(b)
}

func spaces(dst []byte, n int) []byte {
	for ; n > 0; n-- {
		dst = append(dst, ' ')
	}
	return dst
}

func trimRight(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == ' ' {
		b = b[:len(b)-1]
	}
	return b
}
