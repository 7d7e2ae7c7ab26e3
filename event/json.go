package event

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends ev as one JSON object (no newline) to dst. mode is the
// attach mode that produced it. Field names are part of connwatch's stdout
// contract (see README).
func AppendJSON(dst []byte, ev *Event, mode string) []byte {
	dst = append(dst, `{"time":"`...)
	dst = ev.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	dst = append(dst, `","event":`...)
	dst = appendString(dst, Name(ev.EventID))
	dst = appendUint(dst, "event_id", uint64(ev.EventID))
	dst = appendUint(dst, "host_pid", uint64(ev.HostPID))
	dst = appendUint(dst, "host_ppid", uint64(ev.HostPPID))
	dst = appendUint(dst, "pid", uint64(ev.PID))
	dst = appendUint(dst, "ppid", uint64(ev.PPID))
	dst = appendUint(dst, "uid", uint64(ev.UID))
	dst = append(dst, `,"comm":`...)
	dst = appendString(dst, ev.Comm)
	dst = appendUint(dst, "pid_ns", uint64(ev.PidNS))
	dst = appendUint(dst, "mnt_ns", uint64(ev.MntNS))
	dst = append(dst, `,"protocol":`...)
	dst = appendString(dst, ev.Protocol)
	if ev.Remote.IsValid() {
		dst = append(dst, `,"remote_addr":"`...)
		dst = ev.Remote.Addr().AppendTo(dst)
		dst = append(dst, '"')
		dst = appendUint(dst, "remote_port", uint64(ev.Remote.Port()))
	} else {
		dst = appendUint(dst, "remote_family", uint64(ev.RemoteFamily))
	}
	if ev.Local.IsValid() {
		dst = append(dst, `,"local_addr":"`...)
		dst = ev.Local.Addr().AppendTo(dst)
		dst = append(dst, '"')
		dst = appendUint(dst, "local_port", uint64(ev.Local.Port()))
	}
	dst = append(dst, `,"retval":`...)
	dst = strconv.AppendInt(dst, ev.Retval, 10)
	if name := ErrnoName(ev.Retval); name != "" {
		dst = append(dst, `,"error":`...)
		dst = appendString(dst, name)
	}
	dst = append(dst, `,"direction":`...)
	dst = appendString(dst, ev.Direction())
	if ev.IsResult() {
		dst = append(dst, `,"outcome":`...)
		dst = appendString(dst, ev.Outcome().String())
		dst = append(dst, `,"start":"`...)
		dst = ev.Start.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
		dst = appendUint(dst, "duration_ns", uint64(ev.Duration()))
	}
	if ev.IsClose() {
		c := &ev.Close
		dst = append(dst, `,"close":`...)
		dst = appendString(dst, ev.CloseHow())
		dst = append(dst, `,"start":"`...)
		dst = ev.Start.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
		dst = appendUint(dst, "lifetime_ns", uint64(ev.Lifetime()))
		dst = appendUint(dst, "bytes_sent", c.BytesSent)
		dst = appendUint(dst, "bytes_received", c.BytesReceived)
		dst = appendUint(dst, "rtt_us", uint64(c.RTTMicros))
		dst = appendUint(dst, "retransmits", uint64(c.Retransmits))
	}
	if w := ev.Workload; w != nil {
		dst = appendWorkload(dst, w)
	}
	dst = append(dst, `,"mode":`...)
	dst = appendString(dst, mode)
	return append(dst, '}')
}

// appendWorkload appends the enrichment as nested "process", "container"
// and "k8s" objects, leaving out what is unknown.
func appendWorkload(dst []byte, w *Workload) []byte {
	dst = append(dst, `,"process":{"executable_name":`...)
	dst = appendString(dst, w.ExeName)
	if w.ExePath != "" {
		dst = append(dst, `,"executable_path":`...)
		dst = appendString(dst, w.ExePath)
	}
	if len(w.Args) > 0 {
		dst = appendStrings(dst, "args", w.Args)
	}
	if w.Owner != "" {
		dst = append(dst, `,"owner":`...)
		dst = appendString(dst, w.Owner)
	}
	if !w.StartTime.IsZero() {
		dst = append(dst, `,"start_time":"`...)
		dst = w.StartTime.UTC().AppendFormat(dst, time.RFC3339Nano)
		dst = append(dst, '"')
	}
	if w.Cgroup != "" {
		dst = append(dst, `,"cgroup":`...)
		dst = appendString(dst, w.Cgroup)
	}
	dst = append(dst, '}')
	if w.ContainerID != "" {
		dst = append(dst, `,"container":{"id":`...)
		dst = appendString(dst, w.ContainerID)
		if w.Runtime != "" {
			dst = append(dst, `,"runtime":`...)
			dst = appendString(dst, w.Runtime)
		}
		if c := w.Container; c != nil {
			dst = appendField(dst, "name", c.Name)
			dst = appendField(dst, "image", c.ImageName)
			if len(c.ImageTags) > 0 {
				dst = appendStrings(dst, "image_tags", c.ImageTags)
			}
		}
		dst = append(dst, '}')
	}
	var c ContainerMeta
	if w.Container != nil {
		c = *w.Container
	}
	if w.PodUID != "" || c.PodName != "" {
		dst = append(dst, `,"k8s":{"pod_uid":`...)
		dst = appendString(dst, w.PodUID)
		dst = appendField(dst, "pod_name", c.PodName)
		dst = appendField(dst, "namespace", c.PodNamespace)
		dst = appendField(dst, "container_name", c.K8sContainer)
		dst = append(dst, '}')
	}
	return dst
}

// appendStrings appends ,"key":[...] with the strings of l.
func appendStrings(dst []byte, key string, l []string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, `":[`...)
	for i, v := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, v)
	}
	return append(dst, ']')
}

// appendField appends ,"key":"v" unless v is empty.
func appendField(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendString(dst, v)
}

func appendUint(dst []byte, key string, v uint64) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return strconv.AppendUint(dst, v, 10)
}

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. Control characters are escaped
// and invalid UTF-8 (a comm can hold any bytes) becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}
