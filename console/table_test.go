package console

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

var (
	t0     = time.Date(2026, 12, 2, 13, 4, 5, 123_000_000, time.UTC)
	client = netip.MustParseAddrPort("127.0.0.1:40000")
	server = netip.MustParseAddrPort("127.0.0.1:8080")
)

func result(retval int64, d time.Duration) *event.Event {
	return &event.Event{
		EventID: event.TCPConnectResult, HostPID: 812, PID: 812, Comm: "curl", Retval: retval,
		Time: t0, KernelTime: 5e9, StartKernelTime: 5e9 - uint64(d),
		Local: client, Remote: server,
	}
}

func accept() *event.Event {
	return &event.Event{
		EventID: event.TCPAccept, HostPID: 4242, PID: 1, Comm: "python3", Time: t0,
		Local: server, Remote: client,
		Workload: &event.Workload{ContainerID: "3f2a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"},
	}
}

// fields splits a row at runs of spaces.
func fields(row string) []string { return strings.Fields(row) }

func TestTableRows(t *testing.T) {
	tb := NewTable(TableOptions{Width: 160, Location: time.UTC})
	if got := fields(string(tb.Header())); strings.Join(got, " ") != "TIME PID COMM DIR LOCAL REMOTE OUTCOME LATENCY CONTAINER" {
		t.Errorf("header %q", got)
	}
	for _, tc := range []struct {
		ev   *event.Event
		want string
	}{
		{result(0, 312*time.Microsecond), "13:04:05.123 812 curl out 127.0.0.1:40000 127.0.0.1:8080 established 312µs -"},
		{result(-int64(unix.ECONNREFUSED), 45*time.Millisecond), "13:04:05.123 812 curl out 127.0.0.1:40000 127.0.0.1:8080 refused 45.0ms -"},
		{result(-int64(unix.ETIMEDOUT), 3010*time.Millisecond), "13:04:05.123 812 curl out 127.0.0.1:40000 127.0.0.1:8080 timeout 3.01s -"},
		{accept(), "13:04:05.123 4242 python3 in 127.0.0.1:8080 127.0.0.1:40000 accepted - 3f2a1b2c3d4e"},
	} {
		row := string(tb.Append(nil, tc.ev))
		if !strings.HasSuffix(row, "\n") || strings.Count(row, "\n") != 1 || strings.HasSuffix(row, " \n") {
			t.Errorf("row %q is not one trimmed line", row)
		}
		if got := strings.Join(fields(row), " "); got != tc.want {
			t.Errorf("row\n got %q\nwant %q", got, tc.want)
		}
		if strings.Contains(row, "\x1b") {
			t.Errorf("colour without Color: %q", row)
		}
	}
	// Columns line up: every row is as wide as the header where both
	// have text in the last column.
	h, r := string(tb.Header()), string(tb.Append(nil, accept()))
	if strings.Index(h, "CONTAINER") != strings.Index(r, "3f2a1b2c3d4e") {
		t.Errorf("CONTAINER column misaligned:\n%s%s", h, r)
	}
}

// An attempt has no row: its outcome's row follows.
func TestTableSkipsAttempts(t *testing.T) {
	tb := NewTable(TableOptions{})
	for _, id := range []uint32{event.TCPConnect, event.TCPConnectV6, 999} {
		if row := tb.Append([]byte("x"), &event.Event{EventID: id, Time: t0}); string(row) != "x" {
			t.Errorf("event %d: row %q", id, row)
		}
	}
}

func TestTableColor(t *testing.T) {
	tb := NewTable(TableOptions{Width: 160, Color: true, Location: time.UTC})
	if h := string(tb.Header()); !strings.HasPrefix(h, "\x1b[1m") || !strings.HasSuffix(h, "\x1b[0m\n") {
		t.Errorf("header %q not bold", h)
	}
	ok := string(tb.Append(nil, result(0, time.Millisecond)))
	if strings.Contains(ok, "\x1b") {
		t.Errorf("established row highlighted: %q", ok)
	}
	bad := string(tb.Append(nil, result(-int64(unix.ECONNREFUSED), time.Millisecond)))
	if !strings.Contains(bad, "\x1b[31mrefused\x1b[0m") {
		t.Errorf("refused row not red: %q", bad)
	}
	// Colour codes take no columns: LATENCY lines up with the plain row.
	plain := strings.Index(ok, "1.00ms")
	if got := strings.Index(bad, "1.00ms") - len("\x1b[31m\x1b[0m"); got != plain {
		t.Errorf("latency at %d in the red row, %d in the plain one:\n%s%s", got, plain, ok, bad)
	}
}

// Narrow terminals lose the least useful columns first; PID, COMM,
// REMOTE and OUTCOME stay.
func TestTableNarrow(t *testing.T) {
	for _, tc := range []struct {
		width int
		want  string
	}{
		{160, "TIME PID COMM DIR LOCAL REMOTE OUTCOME LATENCY CONTAINER"},
		{110, "TIME PID COMM DIR LOCAL REMOTE OUTCOME LATENCY"},
		{100, "TIME PID COMM DIR REMOTE OUTCOME LATENCY"},
		{80, "TIME PID COMM REMOTE OUTCOME LATENCY"},
		{60, "PID COMM REMOTE OUTCOME"},
		{10, "PID COMM REMOTE OUTCOME"},
	} {
		tb := NewTable(TableOptions{Width: tc.width})
		h := string(tb.Header())
		if got := strings.Join(fields(h), " "); got != tc.want {
			t.Errorf("width %d: %q, want %q", tc.width, got, tc.want)
		}
		row := string(tb.Append(nil, result(0, time.Millisecond)))
		if tc.width >= 60 && len([]rune(strings.TrimSuffix(row, "\n"))) > tc.width {
			t.Errorf("width %d: row of %d columns: %q", tc.width, len(row)-1, row)
		}
	}
}

// What a process names itself cannot reach the terminal as control
// sequences; addresses too long for their column keep their port.
func TestTableHostileText(t *testing.T) {
	tb := NewTable(TableOptions{Width: 80, Location: time.UTC})
	ev := result(0, time.Millisecond)
	ev.Comm = "ev\x1b[2Jil\xff\x07"
	ev.Remote = netip.MustParseAddrPort("[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:443")
	row := string(tb.Append(nil, ev))
	if strings.ContainsAny(row, "\x1b\x07") || !strings.Contains(row, "ev?[2Jil??") {
		t.Errorf("row %q", row)
	}
	if !strings.Contains(row, "…") || !strings.Contains(row, ":ffff]:443 ") {
		t.Errorf("long address not cut at its start: %q", row)
	}
	ev.Remote = netip.MustParseAddrPort("[::ffff:10.0.0.1]:443")
	if row := string(tb.Append(nil, ev)); !strings.Contains(row, " 10.0.0.1:443 ") {
		t.Errorf("v4-mapped address not shown as IPv4: %q", row)
	}
}

func TestLatency(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * time.Microsecond:     "7µs",
		999 * time.Microsecond:   "999µs",
		1500 * time.Microsecond:  "1.50ms",
		12345 * time.Microsecond: "12.3ms",
		2 * time.Second:          "2.00s",
		127 * time.Second:        "127s",
	} {
		if got := latency(d); got != want {
			t.Errorf("latency(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestColorOK(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	if !ColorOK(env("TERM", "xterm-256color")) || ColorOK(env("TERM", "xterm", "NO_COLOR", "1")) ||
		ColorOK(env("TERM", "dumb")) || ColorOK(env()) {
		t.Error("ColorOK")
	}
}
