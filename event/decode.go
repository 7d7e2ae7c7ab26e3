package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Wire format of one sample, as bpf/connwatch.c writes it (little-endian):
//
//	sys_context_t (68 bytes, packed)
//	  u64 ts; u32 pid_id; u32 mnt_id; u32 host_ppid; u32 host_pid;
//	  u32 ppid; u32 pid; u32 uid; u32 event_id; u32 argnum; s64 retval;
//	  char comm[16];
//	then argnum arguments, each a u8 type followed by its value:
//	  STR_T       s32 size (including the NUL), then size bytes
//	  SOCKADDR_T  sockaddr_in (16 bytes) or sockaddr_in6 (28 bytes), or for
//	              any other family the 2-byte family alone
//	  ULONG_T     8 bytes (a connect result's attempt timestamp, a close's
//	              established timestamp)
//	  TCP_CLOSE_T 32 bytes: u64 bytes_acked, u64 bytes_received,
//	              u32 srtt_us, u32 total_retrans, u32 isn, u8 oldstate,
//	              u8 side (1 = accepted), u16 pad
//	  TCP_ISN_T   4 bytes: the client's initial sequence number
//	  others      4 bytes (int and the flag types)
//
// Perf samples are padded to 8 bytes, so bytes after the last argument are
// ignored.
const (
	ContextSize = 68
	MaxArgs     = 6
	// MaxStringSize bounds a STR_T value (the kernel side reads at most 256).
	MaxStringSize = 4096
)

// Byte offsets of sys_context_t's members, as Decode reads them (a test
// in bpf compares them with the compiled object's BTF).
const (
	offTS       = 0
	offPidNS    = 8
	offMntNS    = 12
	offHostPPID = 16
	offHostPID  = 20
	offPPID     = 24
	offPID      = 28
	offUID      = 32
	offEventID  = 36
	offArgNum   = 40
	offRetval   = 44
	offComm     = 52
	commSize    = 16
)

// ContextField is one member of sys_context_t as the decoder reads it.
type ContextField struct {
	Name   string // the C member's name
	Offset int    // in bytes
	Size   int    // in bytes
}

// ContextLayout is sys_context_t as Decode reads it, member by member.
var ContextLayout = []ContextField{
	{"ts", offTS, 8}, {"pid_id", offPidNS, 4}, {"mnt_id", offMntNS, 4},
	{"host_ppid", offHostPPID, 4}, {"host_pid", offHostPID, 4},
	{"ppid", offPPID, 4}, {"pid", offPID, 4}, {"uid", offUID, 4},
	{"event_id", offEventID, 4}, {"argnum", offArgNum, 4}, {"retval", offRetval, 8},
	{"comm", offComm, commSize},
}

// Argument types (KubeArmor's values).
const (
	ArgNone          = 0
	ArgInt           = 1
	ArgULong         = 4 // 8 bytes (tracee's and KubeArmor's numbering)
	ArgStr           = 10
	ArgStrArr        = 11
	ArgSockaddr      = 12
	ArgOpenFlags     = 13
	ArgExecFlags     = 14
	ArgSockDom       = 15
	ArgSockType      = 16
	ArgFileType      = 17
	ArgUnlinkatFlag  = 19
	ArgPtraceReq     = 23
	ArgMountFlag     = 24
	ArgUmountFlag    = 25
	ArgTCPClose      = 40 // connwatch's own
	ArgTCPISN        = 41 // connwatch's own
	tcpCloseSize     = 32
	afInet           = 2
	afInet6          = 10
	sockaddrInSize   = 16
	sockaddrIn6Size  = 28
	sockaddrFamSize  = 2
	stringHeaderSize = 4
)

// ErrShort is wrapped by errors for samples that end before their declared
// content.
var ErrShort = errors.New("sample too short")

// Decoder decodes samples into Events. It interns the short strings every
// event repeats (comm, protocol) so that a warm decoder does not allocate.
// A Decoder is not safe for concurrent use; its zero value is ready.
type Decoder struct {
	strs map[string]string
}

// maxInterned bounds the intern table; it is reset when full.
const maxInterned = 4096

func (d *Decoder) intern(b []byte) string {
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	if d.strs == nil || len(d.strs) >= maxInterned {
		d.strs = make(map[string]string, 64)
	}
	s := string(b)
	d.strs[s] = s
	return s
}

// Decode is a pure function from one sample's bytes to an Event. It returns
// an error, never panics, for a short or inconsistent sample; trailing bytes
// after the last argument are ignored. ev.Time is left zero (see Clock).
func Decode(b []byte) (Event, error) {
	var d Decoder
	var ev Event
	err := d.Decode(b, &ev)
	return ev, err
}

// Decode decodes b into ev, overwriting every field. See the package-level
// Decode.
func (d *Decoder) Decode(b []byte, ev *Event) error {
	*ev = Event{}
	if len(b) < ContextSize {
		return fmt.Errorf("context: %d of %d bytes: %w", len(b), ContextSize, ErrShort)
	}
	le := binary.LittleEndian
	ev.KernelTime = le.Uint64(b[offTS:])
	ev.PidNS = le.Uint32(b[offPidNS:])
	ev.MntNS = le.Uint32(b[offMntNS:])
	ev.HostPPID = le.Uint32(b[offHostPPID:])
	ev.HostPID = le.Uint32(b[offHostPID:])
	ev.PPID = le.Uint32(b[offPPID:])
	ev.PID = le.Uint32(b[offPID:])
	ev.UID = le.Uint32(b[offUID:])
	ev.EventID = le.Uint32(b[offEventID:])
	ev.ArgNum = le.Uint32(b[offArgNum:])
	ev.Retval = int64(le.Uint64(b[offRetval:]))
	ev.Comm = d.intern(cstring(b[offComm : offComm+commSize]))

	if ev.ArgNum > MaxArgs {
		return fmt.Errorf("argnum %d exceeds %d", ev.ArgNum, MaxArgs)
	}

	off := ContextSize
	sockaddrs := 0
	for i := uint32(0); i < ev.ArgNum; i++ {
		if off >= len(b) {
			return fmt.Errorf("arg %d: type at offset %d: %w", i, off, ErrShort)
		}
		typ := b[off]
		off++
		switch typ {
		case ArgStr:
			if len(b)-off < stringHeaderSize {
				return fmt.Errorf("arg %d: string size at offset %d: %w", i, off, ErrShort)
			}
			size := int32(le.Uint32(b[off:]))
			off += stringHeaderSize
			if size <= 0 || size > MaxStringSize {
				return fmt.Errorf("arg %d: string size %d out of range (1..%d)", i, size, MaxStringSize)
			}
			if len(b)-off < int(size) {
				return fmt.Errorf("arg %d: string of %d bytes at offset %d: %w", i, size, off, ErrShort)
			}
			s := b[off : off+int(size)]
			off += int(size)
			if ev.Protocol == "" {
				ev.Protocol = d.intern(cstring(s))
			}
		case ArgSockaddr:
			if len(b)-off < sockaddrFamSize {
				return fmt.Errorf("arg %d: sockaddr family at offset %d: %w", i, off, ErrShort)
			}
			family := le.Uint16(b[off:])
			size := sockaddrFamSize
			switch family {
			case afInet:
				size = sockaddrInSize
			case afInet6:
				size = sockaddrIn6Size
			}
			if len(b)-off < size {
				return fmt.Errorf("arg %d: sockaddr (family %d) of %d bytes at offset %d: %w", i, family, size, off, ErrShort)
			}
			ap := sockaddr(family, b[off:off+size])
			off += size
			switch sockaddrs {
			case 0:
				ev.Remote, ev.RemoteFamily = ap, family
			case 1:
				ev.Local = ap
			}
			sockaddrs++
		case ArgULong:
			if len(b)-off < 8 {
				return fmt.Errorf("arg %d: ulong at offset %d: %w", i, off, ErrShort)
			}
			if ev.StartKernelTime == 0 {
				ev.StartKernelTime = le.Uint64(b[off:])
			}
			off += 8
		case ArgTCPClose:
			if len(b)-off < tcpCloseSize {
				return fmt.Errorf("arg %d: tcp close info at offset %d: %w", i, off, ErrShort)
			}
			c := b[off : off+tcpCloseSize]
			ev.Close = Close{
				BytesSent:     le.Uint64(c[0:]),
				BytesReceived: le.Uint64(c[8:]),
				RTTMicros:     le.Uint32(c[16:]),
				Retransmits:   le.Uint32(c[20:]),
				OldState:      c[28],
				Server:        c[29] != 0,
			}
			ev.ISN, ev.HasISN = le.Uint32(c[24:]), true
			off += tcpCloseSize
		case ArgTCPISN:
			if len(b)-off < 4 {
				return fmt.Errorf("arg %d: isn at offset %d: %w", i, off, ErrShort)
			}
			ev.ISN, ev.HasISN = le.Uint32(b[off:]), true
			off += 4
		case ArgNone:
			return fmt.Errorf("arg %d: NONE_T inside argnum", i)
		case ArgInt, ArgOpenFlags, ArgExecFlags, ArgSockDom, ArgSockType, ArgFileType,
			ArgUnlinkatFlag, ArgPtraceReq, ArgMountFlag, ArgUmountFlag:
			if len(b)-off < 4 {
				return fmt.Errorf("arg %d: int at offset %d: %w", i, off, ErrShort)
			}
			off += 4
		default:
			return fmt.Errorf("arg %d: unknown type %d at offset %d", i, typ, off-1)
		}
	}
	if ev.Protocol == "" && ev.IsClose() {
		// A close names no protocol: its ID says the family, as the
		// kernel's names do.
		ev.Protocol = "TCP"
		if ev.EventID == TCPCloseV6 {
			ev.Protocol = "TCPv6"
		}
	}
	return nil
}

// sockaddr turns a raw sockaddr_in/sockaddr_in6 into an address and port.
// v4-mapped IPv6 addresses become plain IPv4; other families are invalid.
func sockaddr(family uint16, b []byte) netip.AddrPort {
	switch family {
	case afInet:
		port := binary.BigEndian.Uint16(b[2:])
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port)
	case afInet6:
		port := binary.BigEndian.Uint16(b[2:])
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// cstring returns b up to its first NUL.
func cstring(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// DecodeSample decodes one sample into the events it carries: one for
// most samples, two for a combined attempt-and-result sample (411/413),
// which becomes the attempt (400/402) in evs[0] and its result (410/412)
// in evs[1]. It returns how many of evs it filled. Times are left zero;
// stamp each event with a Clock. On error it returns 0 and the error of
// Decode.
func (d *Decoder) DecodeSample(b []byte, evs *[2]Event) (int, error) {
	if err := d.Decode(b, &evs[1]); err != nil {
		return 0, err
	}
	if attempt, ok := evs[1].SplitAttempt(); ok {
		evs[0] = attempt
		return 2, nil
	}
	evs[0] = evs[1]
	return 1, nil
}
