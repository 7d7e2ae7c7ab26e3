package event

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// newSample starts a sample with the context the tests expect back.
func newSample(eventID uint32) *SampleBuilder {
	return NewSample(Event{
		KernelTime: 123456789, PidNS: 4026532000, MntNS: 4026532001,
		HostPPID: 100, HostPID: 200, PPID: 0, PID: 1, UID: 1000,
		EventID: eventID, Retval: -111, Comm: "curl",
	})
}

func TestDecode(t *testing.T) {
	remote4 := netip.MustParseAddrPort("10.1.2.3:443")
	local4 := netip.MustParseAddrPort("192.168.0.7:51000")
	remote6 := netip.MustParseAddrPort("[2001:db8::1]:8443")
	local6 := netip.MustParseAddrPort("[2001:db8::2]:40000")

	tests := []struct {
		name       string
		in         []byte
		protocol   string
		remote     netip.AddrPort
		local      netip.AddrPort
		family     uint16
		eventID    uint32
		wantArgNum uint32
	}{
		{
			name:     "ipv4",
			in:       newSample(TCPConnect).Str("TCP").Sockaddr(remote4).Sockaddr(local4).Bytes(),
			protocol: "TCP", remote: remote4, local: local4, family: afInet, eventID: TCPConnect, wantArgNum: 3,
		},
		{
			name:     "ipv6",
			in:       newSample(TCPConnectV6).Str("TCPv6").Sockaddr(remote6).Sockaddr(local6).Bytes(),
			protocol: "TCPv6", remote: remote6, local: local6, family: afInet6, eventID: TCPConnectV6, wantArgNum: 3,
		},
		{
			name: "v4-mapped ipv6 decodes to ipv4",
			in: newSample(TCPConnectV6).Str("TCPv6").
				Sockaddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:80")).
				Sockaddr(netip.MustParseAddrPort("[::ffff:127.0.0.1]:5555")).Bytes(),
			protocol: "TCPv6",
			remote:   netip.MustParseAddrPort("127.0.0.1:80"),
			local:    netip.MustParseAddrPort("127.0.0.1:5555"),
			family:   afInet6, eventID: TCPConnectV6, wantArgNum: 3,
		},
		{
			name:     "unknown family keeps the family, no address",
			in:       newSample(TCPConnect).Str("TCP").Family(1).Family(1).Bytes(),
			protocol: "TCP", family: 1, eventID: TCPConnect, wantArgNum: 3,
		},
		{
			name:     "seed layout: two args",
			in:       newSample(TCPConnect).Str("TCP").Sockaddr(remote4).Bytes(),
			protocol: "TCP", remote: remote4, family: afInet, eventID: TCPConnect, wantArgNum: 2,
		},
		{
			name:     "int args are skipped",
			in:       newSample(TCPConnect).Int(7).Str("TCP").Sockaddr(remote4).Bytes(),
			protocol: "TCP", remote: remote4, family: afInet, eventID: TCPConnect, wantArgNum: 3,
		},
		{
			name:     "trailing perf padding is ignored",
			in:       append(newSample(TCPConnect).Str("TCP").Sockaddr(remote4).Sockaddr(local4).Bytes(), 0, 0, 0, 0, 0, 0, 0),
			protocol: "TCP", remote: remote4, local: local4, family: afInet, eventID: TCPConnect, wantArgNum: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode(tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev.Protocol != tt.protocol || ev.Remote != tt.remote || ev.Local != tt.local || ev.RemoteFamily != tt.family {
				t.Errorf("got protocol %q remote %v local %v family %d, want %q %v %v %d",
					ev.Protocol, ev.Remote, ev.Local, ev.RemoteFamily, tt.protocol, tt.remote, tt.local, tt.family)
			}
			want := Event{
				KernelTime: 123456789, PidNS: 4026532000, MntNS: 4026532001,
				HostPPID: 100, HostPID: 200, PPID: 0, PID: 1, UID: 1000,
				EventID: tt.eventID, ArgNum: tt.wantArgNum, Retval: -111, Comm: "curl",
				Protocol: tt.protocol, Remote: tt.remote, Local: tt.local, RemoteFamily: tt.family,
			}
			if ev != want {
				t.Errorf("got  %+v\nwant %+v", ev, want)
			}
		})
	}
}

func TestDecodeTruncatedAtEveryOffset(t *testing.T) {
	for _, full := range [][]byte{
		newSample(TCPConnect).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).Bytes(),
		newSample(TCPConnectV6).Str("TCPv6").Sockaddr(netip.MustParseAddrPort("[::1]:5")).Sockaddr(netip.MustParseAddrPort("[::1]:9")).Bytes(),
	} {
		for n := 0; n < len(full); n++ {
			_, err := Decode(full[:n])
			if err == nil {
				t.Fatalf("Decode of %d of %d bytes succeeded, want an error", n, len(full))
			}
			if !errors.Is(err, ErrShort) {
				t.Errorf("Decode of %d of %d bytes: %v, want ErrShort", n, len(full), err)
			}
		}
	}
}

func TestDecodeRejectsInconsistent(t *testing.T) {
	tooMany := newSample(TCPConnect).Bytes()
	binary.LittleEndian.PutUint32(tooMany[40:], 7)

	negStr := newSample(TCPConnect).Str("TCP").Bytes()
	binary.LittleEndian.PutUint32(negStr[ContextSize+1:], 0xffffffff)

	hugeStr := newSample(TCPConnect).Str("TCP").Bytes()
	binary.LittleEndian.PutUint32(hugeStr[ContextSize+1:], 1<<30)

	unknownType := newSample(TCPConnect).Str("TCP").Bytes()
	unknownType[ContextSize] = 99

	noneType := newSample(TCPConnect).Str("TCP").Bytes()
	noneType[ContextSize] = ArgNone

	for name, b := range map[string][]byte{
		"argnum above 6":      tooMany,
		"negative str size":   negStr,
		"huge str size":       hugeStr,
		"unknown arg type":    unknownType,
		"NONE_T inside args":  noneType,
		"empty":               nil,
		"context only, short": bytes.Repeat([]byte{1}, ContextSize-1),
	} {
		if _, err := Decode(b); err == nil {
			t.Errorf("%s: Decode succeeded, want an error", name)
		}
	}
}

func TestDecoderDoesNotAllocate(t *testing.T) {
	b := newSample(TCPConnect).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).Bytes()
	var d Decoder
	var ev Event
	if err := d.Decode(b, &ev); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() { _ = d.Decode(b, &ev) })
	if allocs != 0 {
		t.Errorf("warm Decode allocates %.1f times per sample, want 0", allocs)
	}
}

func BenchmarkDecode(b *testing.B) {
	in := newSample(TCPConnect).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).Bytes()
	var d Decoder
	var ev Event
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := d.Decode(in, &ev); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(newSample(TCPConnect).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).Bytes())
	f.Add(newSample(TCPConnectV6).Str("TCPv6").Sockaddr(netip.MustParseAddrPort("[::1]:5")).Sockaddr(netip.MustParseAddrPort("[::ffff:1.2.3.4]:9")).Bytes())
	f.Add(newSample(TCPConnect).Str("TCP").Family(1).Int(3).Bytes())
	f.Add(newSample(TCPClose).Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).
		ULong(1).CloseInfo(Close{BytesSent: 3, BytesReceived: 4, RTTMicros: 5, Retransmits: 6, OldState: 4, Server: true}, 7).Bytes())
	f.Add(newSample(TCPAccept).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).ISN(8).Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := Decode(b)
		if err != nil {
			return
		}
		if ev.ArgNum > MaxArgs {
			t.Fatalf("accepted argnum %d", ev.ArgNum)
		}
		// Whatever decodes must print as valid JSON.
		line := AppendJSON(nil, &ev, "fuzz")
		if !jsonValid(line) {
			t.Fatalf("invalid JSON for a decoded event: %s", line)
		}
	})
}

func TestDecodeResult(t *testing.T) {
	b := newSample(TCPConnectResult).Str("TCP").
		Sockaddr(netip.MustParseAddrPort("10.0.0.1:80")).
		Sockaddr(netip.MustParseAddrPort("10.0.0.2:40000")).
		ULong(123000000).Bytes()
	ev, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if ev.StartKernelTime != 123000000 || !ev.IsResult() || ev.ArgNum != 4 {
		t.Fatalf("start %d result %v argnum %d, want 123000000 true 4", ev.StartKernelTime, ev.IsResult(), ev.ArgNum)
	}
	// The sample's ts (123456789) minus the attempt's.
	if ev.Duration() != 456789 {
		t.Errorf("duration %v, want 456.789µs", ev.Duration())
	}
	if ev.Outcome() != OutcomeRefused || ErrnoName(ev.Retval) != "ECONNREFUSED" {
		t.Errorf("outcome %s %s, want refused ECONNREFUSED", ev.Outcome(), ErrnoName(ev.Retval))
	}
	for n := ContextSize; n < len(b); n++ {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrShort) {
			t.Fatalf("Decode of %d of %d bytes: %v, want ErrShort", n, len(b), err)
		}
	}
}

func TestOutcome(t *testing.T) {
	for retval, want := range map[int64]Outcome{
		0: OutcomeEstablished, -111: OutcomeRefused, -110: OutcomeTimeout, -104: OutcomeReset,
		-113: OutcomeUnreachable, -101: OutcomeUnreachable, -103: OutcomeClosed, -12: OutcomeClosed,
	} {
		ev := Event{EventID: TCPConnectResultV6, Retval: retval}
		if got := ev.Outcome(); got != want {
			t.Errorf("retval %d: outcome %s, want %s", retval, got, want)
		}
	}
	attempt := Event{EventID: TCPConnect}
	if attempt.Outcome() != OutcomeNone || attempt.Duration() != 0 || attempt.Direction() != "outbound" {
		t.Errorf("an attempt has outcome %q duration %v direction %s", attempt.Outcome(), attempt.Duration(), attempt.Direction())
	}
	if a := (Event{EventID: TCPAcceptV6}); a.Direction() != "inbound" {
		t.Errorf("accept direction %s, want inbound", a.Direction())
	}
	if ErrnoName(-111) != "ECONNREFUSED" || ErrnoName(0) != "" || ErrnoName(-9999) != "errno 9999" {
		t.Errorf("ErrnoName: %q %q %q", ErrnoName(-111), ErrnoName(0), ErrnoName(-9999))
	}
}

func TestSplitAttempt(t *testing.T) {
	b := newSample(TCPConnectAndResultV6).Str("TCPv6").
		Sockaddr(netip.MustParseAddrPort("[2001:db8::1]:443")).
		Sockaddr(netip.MustParseAddrPort("[2001:db8::2]:40000")).
		ULong(123000000).Bytes()
	ev, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	ev.Time, ev.Start = time.Unix(0, 123456789), time.Unix(0, 123000000)
	w := &Workload{ExeName: "curl"}
	ev.Workload = w
	attempt, ok := ev.SplitAttempt()
	if !ok {
		t.Fatal("a 413 sample did not split")
	}
	if ev.EventID != TCPConnectResultV6 || ev.Retval != -111 || ev.Duration() != 456789 || !ev.Time.Equal(time.Unix(0, 123456789)) {
		t.Errorf("result: id %d retval %d duration %v time %v", ev.EventID, ev.Retval, ev.Duration(), ev.Time)
	}
	want := Event{
		KernelTime: 123000000, Time: time.Unix(0, 123000000),
		PidNS: 4026532000, MntNS: 4026532001, HostPPID: 100, HostPID: 200, PPID: 0, PID: 1, UID: 1000,
		EventID: TCPConnectV6, ArgNum: 3, Retval: 0, Comm: "curl", Protocol: "TCPv6",
		Remote: ev.Remote, Local: ev.Local, RemoteFamily: 10, Workload: w,
	}
	if attempt != want {
		t.Errorf("attempt\n got  %+v\n want %+v", attempt, want)
	}
	if _, ok := ev.SplitAttempt(); ok {
		t.Error("a 412 result split again")
	}
}

// A close sample decodes into its connection's figures, names its
// protocol by its ID, prints them as JSON, and a cut anywhere is an error.
func TestDecodeClose(t *testing.T) {
	c := Close{BytesSent: 200002, BytesReceived: 50001, RTTMicros: 66, Retransmits: 2, OldState: 5, Server: true}
	b := newSample(TCPCloseV6).
		Sockaddr(netip.MustParseAddrPort("[2001:db8::1]:40000")).
		Sockaddr(netip.MustParseAddrPort("[2001:db8::2]:443")).
		ULong(23456789).CloseInfo(c, 0xdeadbeef).Bytes()
	ev, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.IsClose() || ev.Close != c || ev.ISN != 0xdeadbeef || !ev.HasISN || ev.Protocol != "TCPv6" || ev.ArgNum != 4 {
		t.Fatalf("decoded %+v", ev)
	}
	if ev.Lifetime() != 100*time.Millisecond || !ev.Inbound() || ev.Direction() != "inbound" || ev.CloseHow() != CloseFIN {
		t.Errorf("lifetime %v inbound %v %s how %s", ev.Lifetime(), ev.Inbound(), ev.Direction(), ev.CloseHow())
	}
	line := string(AppendJSON(nil, &ev, "test"))
	for _, want := range []string{`"event":"connwatch.tcp.close"`, `"event_id":422`, `"close":"fin"`, `"lifetime_ns":100000000`,
		`"bytes_sent":200002`, `"bytes_received":50001`, `"rtt_us":66`, `"retransmits":2`, `"direction":"inbound"`} {
		if !strings.Contains(line, want) {
			t.Errorf("JSON lacks %s: %s", want, line)
		}
	}
	for n := ContextSize; n < len(b); n++ {
		if _, err := Decode(b[:n]); !errors.Is(err, ErrShort) {
			t.Fatalf("Decode of %d of %d bytes: %v, want ErrShort", n, len(b), err)
		}
	}
	acc, err := Decode(newSample(TCPAccept).Str("TCP").Sockaddr(netip.MustParseAddrPort("1.2.3.4:5")).
		Sockaddr(netip.MustParseAddrPort("5.6.7.8:9")).ISN(42).Bytes())
	if err != nil || acc.ISN != 42 || !acc.HasISN {
		t.Errorf("accept with ISN: %+v, %v", acc, err)
	}
}

func TestCloseHow(t *testing.T) {
	for _, c := range []struct {
		retval int64
		state  uint8
		want   string
	}{
		{0, 5, CloseFIN},                  // FIN_WAIT2 -> CLOSE (TIME_WAIT)
		{0, 9, CloseFIN},                  // LAST_ACK
		{0, StateEstablished, CloseReset}, // RST sent (SO_LINGER 0)
		{0, StateCloseWait, CloseReset},
		{-104, StateEstablished, CloseReset}, // ECONNRESET
		{-32, 7, CloseReset},                 // EPIPE
		{-110, StateEstablished, CloseTimeout},
	} {
		ev := Event{EventID: TCPClose, Retval: c.retval, Close: Close{OldState: c.state}}
		if got := ev.CloseHow(); got != c.want {
			t.Errorf("retval %d from state %d: %s, want %s", c.retval, c.state, got, c.want)
		}
	}
	if (&Event{EventID: TCPAccept}).CloseHow() != "" {
		t.Errorf("an accept has a CloseHow")
	}
}

// In kprobe and fentry modes tcp_connect's probe sends the attempt with
// the client's ISN (STR, SOCKADDR, SOCKADDR, TCP_ISN_T): one event that
// carries it, so that it can be sampled on its connection's trace ID.
func TestDecodeAttemptWithISN(t *testing.T) {
	remote := netip.MustParseAddrPort("10.1.2.3:443")
	local := netip.MustParseAddrPort("192.168.0.7:51000")
	b := newSample(TCPConnect).Str("TCP").Sockaddr(remote).Sockaddr(local).ISN(0x8badf00d).Bytes()
	var d Decoder
	var evs [2]Event
	n, err := d.DecodeSample(b, &evs)
	if err != nil || n != 1 {
		t.Fatalf("DecodeSample: %d events, %v", n, err)
	}
	ev := evs[0]
	if !ev.IsConnect() || !ev.HasISN || ev.ISN != 0x8badf00d || ev.ArgNum != 4 || ev.Remote != remote || ev.Local != local || ev.Protocol != "TCP" {
		t.Errorf("decoded %+v", ev)
	}
}
