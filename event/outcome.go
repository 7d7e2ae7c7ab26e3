package event

import "golang.org/x/sys/unix"

// Outcome is what happened to an outgoing connection.
type Outcome uint8

const (
	OutcomeNone        Outcome = iota // not a result event
	OutcomeEstablished                // handshake completed (retval 0)
	OutcomeRefused                    // RST in answer to the SYN (ECONNREFUSED)
	OutcomeTimeout                    // SYN retries exhausted (ETIMEDOUT)
	OutcomeReset                      // reset during the handshake (ECONNRESET)
	OutcomeUnreachable                // ICMP host/network unreachable (EHOSTUNREACH, ENETUNREACH)
	OutcomeClosed                     // the socket was closed before the handshake ended (ECONNABORTED, or any other error)
)

var outcomeNames = [...]string{"", "established", "refused", "timeout", "reset", "unreachable", "closed"}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Outcome classifies a connect result by its retval.
func (e *Event) Outcome() Outcome {
	if !e.IsResult() {
		return OutcomeNone
	}
	switch -e.Retval {
	case 0:
		return OutcomeEstablished
	case int64(unix.ECONNREFUSED):
		return OutcomeRefused
	case int64(unix.ETIMEDOUT):
		return OutcomeTimeout
	case int64(unix.ECONNRESET):
		return OutcomeReset
	case int64(unix.EHOSTUNREACH), int64(unix.ENETUNREACH):
		return OutcomeUnreachable
	}
	return OutcomeClosed
}

// How a connection ended, for a close event (CloseHow).
const (
	CloseFIN     = "fin"     // orderly: the socket left a FIN state (FIN_WAIT, CLOSING, LAST_ACK)
	CloseReset   = "reset"   // an RST was received or sent
	CloseTimeout = "timeout" // retransmissions gave up (ETIMEDOUT)
)

// CloseHow tells how a closed connection ended: CloseTimeout when the
// kernel gave up retransmitting; CloseReset when an RST came in (the socket
// error ECONNRESET or EPIPE) or the socket went to CLOSE straight from a
// state that has sent no FIN (ESTABLISHED, CLOSE_WAIT, SYN_RECV), which is
// an RST sent (close with unread data, SO_LINGER 0, abort); CloseFIN
// otherwise. "" for other events.
func (e *Event) CloseHow() string {
	if !e.IsClose() {
		return ""
	}
	switch -e.Retval {
	case int64(unix.ETIMEDOUT):
		return CloseTimeout
	case int64(unix.ECONNRESET), int64(unix.EPIPE):
		return CloseReset
	}
	switch e.Close.OldState {
	case StateEstablished, StateCloseWait, StateSynRecv:
		return CloseReset
	}
	return CloseFIN
}

// ErrnoName returns the symbolic name of a negative errno retval
// ("ECONNREFUSED"), "" for retval >= 0.
func ErrnoName(retval int64) string {
	if retval >= 0 {
		return ""
	}
	if n := unix.ErrnoName(unix.Errno(-retval)); n != "" {
		return n
	}
	return "errno " + itoa(-retval)
}

func itoa(v int64) string {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return string(b[i:])
}
