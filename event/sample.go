package event

import (
	"encoding/binary"
	"net/netip"
)

// SampleBuilder writes a sample in the kernel's wire format, as
// bpf/connwatch.c assembles it: the packed sys_context_t, then typed
// arguments. It serves tests, benchmarks and fuzz seeds; the agent itself
// only decodes.
type SampleBuilder struct {
	ctx  [ContextSize]byte
	args []byte
	n    uint32
}

// NewSample starts a sample whose sys_context_t holds c's context fields
// (KernelTime through Comm; ArgNum is counted from the arguments added).
func NewSample(c Event) *SampleBuilder {
	s := &SampleBuilder{}
	le := binary.LittleEndian
	le.PutUint64(s.ctx[offTS:], c.KernelTime)
	le.PutUint32(s.ctx[offPidNS:], c.PidNS)
	le.PutUint32(s.ctx[offMntNS:], c.MntNS)
	le.PutUint32(s.ctx[offHostPPID:], c.HostPPID)
	le.PutUint32(s.ctx[offHostPID:], c.HostPID)
	le.PutUint32(s.ctx[offPPID:], c.PPID)
	le.PutUint32(s.ctx[offPID:], c.PID)
	le.PutUint32(s.ctx[offUID:], c.UID)
	le.PutUint32(s.ctx[offEventID:], c.EventID)
	le.PutUint64(s.ctx[offRetval:], uint64(c.Retval))
	copy(s.ctx[offComm:], c.Comm)
	return s
}

// Str adds a STR_T argument: its size including the NUL, then the bytes.
func (s *SampleBuilder) Str(v string) *SampleBuilder {
	s.args = append(s.args, ArgStr)
	s.args = binary.LittleEndian.AppendUint32(s.args, uint32(len(v)+1))
	s.args = append(append(s.args, v...), 0)
	s.n++
	return s
}

// Sockaddr adds a SOCKADDR_T argument: a sockaddr_in for an IPv4 ap, else
// a sockaddr_in6.
func (s *SampleBuilder) Sockaddr(ap netip.AddrPort) *SampleBuilder {
	s.args = append(s.args, ArgSockaddr)
	if ap.Addr().Is4() {
		b := make([]byte, sockaddrInSize)
		binary.LittleEndian.PutUint16(b, afInet)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As4()
		copy(b[4:], a[:])
		s.args = append(s.args, b...)
	} else {
		b := make([]byte, sockaddrIn6Size)
		binary.LittleEndian.PutUint16(b, afInet6)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().As16()
		copy(b[8:], a[:])
		s.args = append(s.args, b...)
	}
	s.n++
	return s
}

// Family adds a SOCKADDR_T argument of family f and nothing else, as the
// kernel program sends for a family it does not decode.
func (s *SampleBuilder) Family(f uint16) *SampleBuilder {
	s.args = append(s.args, ArgSockaddr)
	s.args = binary.LittleEndian.AppendUint16(s.args, f)
	s.n++
	return s
}

// Int adds an INT_T argument.
func (s *SampleBuilder) Int(v uint32) *SampleBuilder {
	s.args = append(s.args, ArgInt)
	s.args = binary.LittleEndian.AppendUint32(s.args, v)
	s.n++
	return s
}

// ULong adds a ULONG_T (8-byte) argument.
func (s *SampleBuilder) ULong(v uint64) *SampleBuilder {
	s.args = append(s.args, ArgULong)
	s.args = binary.LittleEndian.AppendUint64(s.args, v)
	s.n++
	return s
}

// Bytes returns the sample, argnum set to the arguments added.
func (s *SampleBuilder) Bytes() []byte {
	binary.LittleEndian.PutUint32(s.ctx[offArgNum:], s.n)
	return append(append([]byte{}, s.ctx[:]...), s.args...)
}

// ISN adds a TCP_ISN_T argument.
func (s *SampleBuilder) ISN(v uint32) *SampleBuilder {
	s.args = append(s.args, ArgTCPISN)
	s.args = binary.LittleEndian.AppendUint32(s.args, v)
	s.n++
	return s
}

// CloseInfo adds a TCP_CLOSE_T argument: c's fields and isn.
func (s *SampleBuilder) CloseInfo(c Close, isn uint32) *SampleBuilder {
	s.args = append(s.args, ArgTCPClose)
	s.args = binary.LittleEndian.AppendUint64(s.args, c.BytesSent)
	s.args = binary.LittleEndian.AppendUint64(s.args, c.BytesReceived)
	s.args = binary.LittleEndian.AppendUint32(s.args, c.RTTMicros)
	s.args = binary.LittleEndian.AppendUint32(s.args, c.Retransmits)
	s.args = binary.LittleEndian.AppendUint32(s.args, isn)
	side := byte(0)
	if c.Server {
		side = 1
	}
	s.args = append(s.args, c.OldState, side, 0, 0)
	s.n++
	return s
}
