package config

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/connwatch/connwatch/otel"
)

// The value validators: each says what is wrong with one value, in a
// message without the setting's name, or "" when nothing is. The walk of
// the file, ApplyEnv and Validate all use them, so a value means the same
// whatever its source.

// Bounds of probe.max_connections: an entry costs the kernel about 150
// bytes, so the largest is about 2.4 GiB of kernel memory.
const (
	DefaultMaxConnections = 65536
	minMaxConnections     = 64
	maxMaxConnections     = 1 << 24
)

// maxQueueMiB bounds the queue sizes (1 TiB).
const maxQueueMiB = 1 << 20

// Bounds of export.trace_key. A key shorter than 16 bytes could be
// guessed; HMAC hashes a key longer than its block (64 bytes) first, so
// more than a few hundred bytes buys nothing.
const (
	MinTraceKeyBytes = 16
	MaxTraceKeyBytes = 1024
)

// checkCount checks a whole number from lo to hi; text is the number as
// written.
func checkCount(text string, lo, hi int) string {
	if i, err := strconv.Atoi(text); err == nil && i >= lo && i <= hi {
		return ""
	}
	return fmt.Sprintf("%s is not a number from %d to %d", text, lo, hi)
}

// checkSize checks a queue size in MiB; text is the number as written.
func checkSize(text string) string {
	if i, err := strconv.Atoi(text); err == nil && i >= 1 && i <= maxQueueMiB {
		return ""
	}
	return fmt.Sprintf("%s is not a size in MiB from 1 to %d", text, maxQueueMiB)
}

// checkDuration checks that a duration, as written in text, is positive.
func checkDuration(text string, d time.Duration) string {
	if d <= 0 {
		return fmt.Sprintf("%q must be positive", text)
	}
	return ""
}

// checkNonEmpty refuses "".
func checkNonEmpty(s string) string {
	if s == "" {
		return "must not be empty"
	}
	return ""
}

// checkGlob checks a non-empty, well-formed path.Match pattern.
func checkGlob(s string) string {
	if s == "" {
		return "must not be empty"
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Sprintf("%q is not a valid glob pattern", s)
	}
	return ""
}

// checkScope checks the scope name s, listed after the names in before.
func checkScope(s string, before []string) string {
	if _, ok := ScopeNumber(s); !ok {
		return fmt.Sprintf("%q is not one of %s", s, strings.Join(scopeNames, ", "))
	}
	for _, b := range before {
		if b == s {
			return fmt.Sprintf("scope %q is listed twice", s)
		}
	}
	return ""
}

// checkTraceKey checks a trace key; "" is the public default.
func checkTraceKey(k string) string {
	switch {
	case k == "":
		return ""
	case len(k) < MinTraceKeyBytes:
		return fmt.Sprintf("%d bytes is too short for a key (at least %d; e.g. the output of `head -c 32 /dev/urandom | base64`)", len(k), MinTraceKeyBytes)
	case len(k) > MaxTraceKeyBytes:
		return fmt.Sprintf("%d bytes is too long (at most %d)", len(k), MaxTraceKeyBytes)
	}
	return ""
}

// checkEndpoint checks an OTLP endpoint: "" (none) or one the exporter
// accepts (otel.ParseEndpoint).
func checkEndpoint(s string) string {
	if s == "" {
		return ""
	}
	if _, err := otel.ParseEndpoint(s, false); err != nil {
		return err.Error()
	}
	return ""
}

// checkCompression checks a compression name (otel.CheckCompression).
func checkCompression(s string) string {
	if err := otel.CheckCompression(s); err != nil {
		return err.Error()
	}
	return ""
}

// checkListen checks a listen address: "" (no listener) or host:port with
// a port from 0 to 65535.
func checkListen(s string) string {
	if s == "" {
		return ""
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		if errors.As(err, &ae) {
			return fmt.Sprintf("%q is not host:port (%s)", s, ae.Err)
		}
		return fmt.Sprintf("%q is not host:port", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || (n == 0 && port != "0") {
		return fmt.Sprintf("%q has an invalid port %q (expected 0 to 65535)", s, port)
	}
	return ""
}

// checkHeaderName checks a header name (an HTTP token).
func checkHeaderName(name string) string {
	if name == "" {
		return "header name must not be empty"
	}
	for _, r := range name {
		if r > 0x7e || !isTokenChar(byte(r)) {
			return fmt.Sprintf("header name %q contains %q, which is not allowed in header names", name, r)
		}
	}
	return ""
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// checkHeaderValue refuses header values with control characters.
func checkHeaderValue(v string) string {
	for _, r := range v {
		if (r < 0x20 && r != '\t') || r == 0x7f {
			return fmt.Sprintf("header value contains the control character %q", r)
		}
	}
	return ""
}
