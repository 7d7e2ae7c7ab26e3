package otel

// The encoder's fuzz target; the checks it applies to what a receiver
// decodes are those of encode_helpers_test.go.

import (
	"math"
	"net/netip"
	"testing"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

	"github.com/connwatch/connwatch/event"
)

// fuzzExporter is an Exporter that FuzzEncode reuses across inputs.
type fuzzExporter struct {
	o      Options
	e      *Exporter
	tt, lt *memTransport
}

var fuzzExporters [2]fuzzExporter // OmitCommandArgs false, true

// statsSince returns the counters FuzzEncode checks, as changes since
// before.
func statsSince(now, before Stats) Stats {
	return Stats{
		Ignored:       now.Ignored - before.Ignored,
		LogsExported:  now.LogsExported - before.LogsExported,
		SpansExported: now.SpansExported - before.SpansExported,
		LogsFailed:    now.LogsFailed - before.LogsFailed,
		SpansFailed:   now.SpansFailed - before.SpansFailed,
	}
}

// FuzzEncode emits an event with arbitrary fields (and a well-formed one
// after it, in the same batch) and checks that every export request body
// decodes and that the decoded records carry what the mapping says.
func FuzzEncode(f *testing.F) {
	for i := range fuzzExporters {
		o := testOptions()
		o.BatchTimeout = time.Hour
		o.OmitCommandArgs = i == 1
		e, tt, lt := newTestExporter(f, o)
		fuzzExporters[i] = fuzzExporter{o: o, e: e, tt: tt, lt: lt}
	}
	v4 := []byte{93, 184, 216, 34}
	v6 := netip.MustParseAddr("2001:db8::1").AsSlice()
	f.Add(uint32(0), int64(0), uint8(1), v4, uint16(443), uint8(1), []byte{10, 0, 0, 1}, uint16(51000), uint16(unix.AF_INET),
		"curl", "TCP", "https://example.com/", tAttempt.UnixNano(), int64(0), uint64(1e9), uint64(0), uint32(0), true)
	f.Add(uint32(4), int64(-111), uint8(1), v4, uint16(443), uint8(1), []byte{10, 0, 0, 1}, uint16(51000), uint16(unix.AF_INET),
		"curl", "TCP", "-s", tOutcome.UnixNano(), tAttempt.UnixNano(), uint64(2e9), uint64(1234567), uint32(0), true)
	f.Add(uint32(3), int64(0), uint8(3), v4, uint16(51000), uint8(3), []byte{10, 0, 0, 2}, uint16(443), uint16(unix.AF_INET6),
		"nginx", "TCPv6", "daemon off;", tOutcome.UnixNano(), int64(0), uint64(2e9), uint64(0), uint32(4026532500), true)
	f.Add(uint32(5), int64(-110), uint8(2), v6, uint16(8443), uint8(0), []byte(nil), uint16(0), uint16(unix.AF_INET6),
		"", "", "", int64(0), int64(0), uint64(5), uint64(10), uint32(7), false)
	f.Add(uint32(2), int64(0), uint8(0), []byte(nil), uint16(0), uint8(0), []byte(nil), uint16(0), uint16(1),
		"c\xffomm", "TCP\x80", "\xe2\x80", int64(-1), int64(math.MaxInt64), uint64(math.MaxUint64), uint64(math.MaxUint64), uint32(1), true)
	f.Add(uint32(1), int64(math.MinInt64), uint8(4), append(v6, "eth\xff0"...), uint16(65535), uint8(4), append(v6, "\"\\\n"...), uint16(1),
		uint16(0), "\x00\x01", "\u2028", "naïve 世界", int64(math.MinInt64), int64(1), uint64(0), uint64(1), uint32(math.MaxUint32), true)
	f.Add(uint32(7+8*999), int64(1), uint8(1), v4, uint16(1), uint8(1), v4, uint16(2), uint16(2),
		"x", "y", "z", int64(1), int64(2), uint64(3), uint64(4), uint32(5), false)

	f.Fuzz(func(t *testing.T, idSel uint32, retval int64, rsel uint8, raddr []byte, rport uint16, lsel uint8, laddr []byte, lport uint16,
		family uint16, comm, protocol, arg string, timeNS, startNS int64, kt, dur uint64, pidNS uint32, withWorkload bool,
	) {
		ids := [...]uint32{event.TCPConnect, event.TCPAccept, event.TCPConnectV6, event.TCPAcceptV6, event.TCPConnectResult, event.TCPConnectResultV6,
			event.TCPClose, event.TCPCloseV6}
		ev := &event.Event{
			KernelTime:      kt,
			StartKernelTime: kt - dur,
			PidNS:           pidNS,
			MntNS:           pidNS / 3,
			HostPPID:        idSel >> 16,
			HostPID:         idSel>>8 + 1,
			PPID:            idSel >> 20,
			PID:             idSel >> 4,
			UID:             idSel >> 12,
			EventID:         idSel >> 3,
			Retval:          retval,
			Comm:            comm,
			Protocol:        protocol,
			Remote:          fuzzAddr(rsel, raddr, rport),
			Local:           fuzzAddr(lsel, laddr, lport),
			RemoteFamily:    family,
		}
		if sel := idSel % 16; sel < uint32(len(ids)) {
			ev.EventID = ids[sel]
		}
		// The connection's identity and a close's account, from inputs
		// the corpus already varies.
		ev.ISN, ev.HasISN = uint32(dur), kt&1 == 1
		ev.Close = event.Close{BytesSent: dur, BytesReceived: kt, RTTMicros: pidNS, Retransmits: idSel,
			OldState: uint8(rport), Server: lsel&1 == 1}
		if timeNS != 0 {
			ev.Time = time.Unix(0, timeNS)
		}
		if startNS != 0 {
			ev.Start = time.Unix(0, startNS)
		}
		if withWorkload {
			ev.Workload = &event.Workload{
				ExePath: "/bin/" + arg, ExeName: arg, Args: []string{comm, arg, protocol}, Owner: arg,
				StartTime: ev.Start, ContainerID: arg, Runtime: protocol, PodUID: comm, Cgroup: "/" + arg,
			}
		}

		// One exporter per option set serves every input of this
		// process: making one per input would cost more than the input.
		fe := fuzzExporters[pidNS%2]
		o, e, tt, lt := fe.o, fe.e, fe.tt, fe.lt
		tt.reset(t)
		lt.reset(t)
		before := e.Stats()
		fixed := resultEvent(-int64(unix.ECONNREFUSED))
		e.Emit(ev)
		e.Emit(fixed)
		flush(t, e)

		st := statsSince(e.Stats(), before)
		logs, spans := lt.Logs(), tt.Spans()
		_, fuzzSpan := spanOf(ev)
		wantLogs, wantSpans := 1, 1
		if mapped(ev) {
			wantLogs++
			if fuzzSpan {
				wantSpans++
			}
		} else if st.Ignored != 1 {
			t.Errorf("unmapped event %d not ignored: %+v", ev.EventID, st)
		}
		if len(logs) != wantLogs || len(spans) != wantSpans {
			t.Fatalf("event %d: %d records, %d spans; want %d, %d", ev.EventID, len(logs), len(spans), wantLogs, wantSpans)
		}
		if st.LogsExported != uint64(wantLogs) || st.SpansExported != uint64(wantSpans) || st.LogsFailed != 0 || st.SpansFailed != 0 {
			t.Errorf("stats %+v", st)
		}
		// The fuzzed event comes first: its resource entry is the
		// batch's first, or it shares the fixed event's and precedes it.
		checkSpan(t, &o, fixed, spans[len(spans)-1])
		checkLog(t, &o, fixed, logs[len(logs)-1], spans[len(spans)-1].Span, tObserved)
		if !mapped(ev) {
			return
		}
		var span *tracepb.Span
		if fuzzSpan {
			checkSpan(t, &o, ev, spans[0])
			span = spans[0].Span
		}
		checkLog(t, &o, ev, logs[0], span, tObserved)

		// The event's own fields, independently of appendAttributes.
		attrs := logs[0].Attrs()
		if attrs["connwatch.event_id"] != int64(ev.EventID) || attrs["connwatch.retval"] != retval {
			t.Errorf("event id %v retval %v", attrs["connwatch.event_id"], attrs["connwatch.retval"])
		}
		for _, end := range []struct {
			key string
			ap  netip.AddrPort
		}{{"network.peer", ev.Remote}, {"network.local", ev.Local}} {
			addr, port := attrs[end.key+".address"], attrs[end.key+".port"]
			if !end.ap.IsValid() {
				if addr != nil || port != nil {
					t.Errorf("%s of an invalid address: %v %v", end.key, addr, port)
				}
				continue
			}
			if want := validText(end.ap.Addr().Unmap().String()); addr != want || port != int64(end.ap.Port()) {
				t.Errorf("%s: %v %v, want %v %v", end.key, addr, port, want, end.ap.Port())
			}
		}
		if !ev.Remote.IsValid() && family != 0 && attrs["connwatch.remote_family"] != int64(family) {
			t.Errorf("remote family %v, want %d", attrs["connwatch.remote_family"], family)
		}
	})
}

// fuzzAddr makes an address of sel's kind from b: invalid, IPv4, IPv6,
// v4-mapped IPv6 or IPv6 with a zone of arbitrary bytes.
func fuzzAddr(sel uint8, b []byte, port uint16) netip.AddrPort {
	var a16 [16]byte
	copy(a16[:], b)
	var a netip.Addr
	switch sel % 5 {
	case 0:
		return netip.AddrPort{}
	case 1:
		a = netip.AddrFrom4([4]byte(a16[:4]))
	case 2:
		a = netip.AddrFrom16(a16)
	case 3:
		a = netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: a16[0], 13: a16[1], 14: a16[2], 15: a16[3]})
	case 4:
		zone := "z"
		if len(b) > 16 {
			zone = string(b[16:])
		}
		a = netip.AddrFrom16(a16).WithZone(zone)
	}
	return netip.AddrPortFrom(a, port)
}
