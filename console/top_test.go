package console

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

// fakeNow is a clock the test moves.
type fakeNow struct{ t time.Time }

func (f *fakeNow) now() time.Time { return f.t }

func TestTopRates(t *testing.T) {
	clk := &fakeNow{t: t0}
	top := NewTop(clk.now)
	for i := range 10 {
		top.Emit(result(0, time.Duration(i+1)*time.Millisecond)) // curl: 10 established, 1..10 ms
	}
	for range 4 {
		top.Emit(result(-int64(unix.ECONNREFUSED), time.Millisecond)) // and 4 refused
	}
	for range 6 {
		a := accept()
		a.Remote = netip.AddrPortFrom(a.Remote.Addr(), uint16(40000+len(top.works)))
		top.Emit(a) // python3 in a container: 6 accepts
	}
	top.Emit(&event.Event{EventID: event.TCPConnect, Comm: "curl"}) // an attempt counts for nothing
	clk.t = clk.t.Add(2 * time.Second)

	rows := top.Snapshot()
	if len(rows) != 2 {
		t.Fatalf("rows %+v", rows)
	}
	curl, py := rows[0], rows[1] // sorted by connects/s
	if curl.Workload != "curl" || curl.PID != 812 || curl.Connects != 7 || curl.Failures != 2 || curl.Accepts != 0 || curl.Total != 14 {
		t.Errorf("curl row %+v", curl)
	}
	// 14 handshakes (refused ones too): five of 1 ms, then 2..10 ms.
	if curl.P50 != 3*time.Millisecond || curl.P99 != 10*time.Millisecond {
		t.Errorf("curl latencies p50 %v p99 %v", curl.P50, curl.P99)
	}
	if curl.TopPeer != server || curl.PeerCount != 14 {
		t.Errorf("curl top peer %v ×%d", curl.TopPeer, curl.PeerCount)
	}
	if py.Workload != "python3@3f2a1b2c3d4e" || py.Accepts != 3 || py.Connects != 0 || py.P99 != 0 {
		t.Errorf("python3 row %+v", py)
	}
	if py.TopPeer != netip.AddrPortFrom(client.Addr(), 0) || py.PeerCount != 6 {
		t.Errorf("python3 top peer %v ×%d: want the client's address, its ports ignored", py.TopPeer, py.PeerCount)
	}

	// The next refresh starts from zero; idle workloads go after TopIdle.
	clk.t = clk.t.Add(time.Second)
	rows = top.Snapshot()
	if len(rows) != 2 || rows[0].Connects != 0 || rows[0].Total != 14 || rows[0].TopPeer.IsValid() {
		t.Errorf("idle refresh %+v", rows)
	}
	clk.t = clk.t.Add(TopIdle)
	if rows = top.Snapshot(); len(rows) != 0 {
		t.Errorf("after %v idle: %+v", TopIdle, rows)
	}
}

func TestTopLatencyBounded(t *testing.T) {
	top := NewTop(nil)
	for i := range 5 * maxLatencySamples {
		top.Emit(result(0, time.Duration(i%100+1)*time.Microsecond))
	}
	for _, c := range top.works {
		if len(c.latencies) != maxLatencySamples {
			t.Errorf("%d samples kept", len(c.latencies))
		}
	}
	r := top.Snapshot()[0]
	// Uniform 1..100 µs: the reservoir's median is near 50.
	if r.P50 < 40*time.Microsecond || r.P50 > 60*time.Microsecond || r.P99 < 95*time.Microsecond {
		t.Errorf("p50 %v p99 %v", r.P50, r.P99)
	}
}

func TestSortRows(t *testing.T) {
	rows := []TopRow{
		{Workload: "b", Connects: 1, Failures: 5, Accepts: 0, P99: time.Second},
		{Workload: "a", Connects: 9, Failures: 0, Accepts: 2, P99: time.Millisecond},
		{Workload: "c", Connects: 1, Failures: 1, Accepts: 7},
	}
	for key, want := range map[SortKey]string{
		SortConnects: "a b c", SortFailures: "b c a", SortAccepts: "c a b", SortLatency: "b a c", SortName: "a b c",
	} {
		SortRows(rows, key)
		var got []string
		for _, r := range rows {
			got = append(got, r.Workload)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("sort %d: %v, want %s", key, got, want)
		}
	}
}

// The view: title, header, a row per workload, keys that sort and quit.
func TestTopModel(t *testing.T) {
	clk := &fakeNow{t: t0}
	top := NewTop(clk.now)
	top.Emit(result(0, time.Millisecond))
	ev := result(-int64(unix.ECONNREFUSED), time.Millisecond)
	ev.Comm = "zz\x1b[2J"
	top.Emit(ev)
	clk.t = clk.t.Add(time.Second)
	var m topModel = topModel{top: top, o: TopOptions{Interval: time.Second}, width: 120, height: 10}
	next, _ := m.Update(tickMsg{})
	m = next.(topModel)
	lines := strings.Split(m.View().Content, "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "connwatch top ") || !strings.HasPrefix(lines[1], "WORKLOAD") {
		t.Fatalf("view:\n%s", strings.Join(lines, "\n"))
	}
	if f := strings.Fields(lines[2]); f[0] != "curl" || f[2] != "1.0" || f[3] != "0.0" || f[8] != "127.0.0.1:8080" {
		t.Errorf("curl row %q", lines[2])
	}
	if strings.Contains(lines[3], "\x1b") || !strings.HasPrefix(lines[3], "zz?[2J") {
		t.Errorf("hostile name row %q", lines[3])
	}
	for _, l := range lines {
		if len([]rune(l)) > 120 {
			t.Errorf("line wider than the terminal: %q", l)
		}
	}
}
