package otel

// JSON values as encoding/json writes them with SetEscapeHTML(false):
// attribute values, maps, floats, times, hex IDs and strings, each
// appended to a byte slice for the JSON lines (jsonline.go).

import (
	"encoding/base64"
	"encoding/hex"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
)

// appendJSONMap appends kvs as encoding/json writes a map[string]any of
// them: keys sorted, the last of equal keys kept.
func appendJSONMap(dst []byte, kvs []attribute.KeyValue) []byte {
	if !slices.IsSortedFunc(kvs, compareKeys) {
		kvs = slices.Clone(kvs)
		slices.SortStableFunc(kvs, compareKeys)
	}
	dst = append(dst, '{')
	first := true
	for i, kv := range kvs {
		if i+1 < len(kvs) && kvs[i+1].Key == kv.Key {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, string(kv.Key))
		dst = append(dst, ':')
		dst = appendJSONValue(dst, kv.Value)
	}
	return append(dst, '}')
}

func compareKeys(a, b attribute.KeyValue) int { return strings.Compare(string(a.Key), string(b.Key)) }

// appendJSONValue appends v as encoding/json writes jsonValue(v). The
// typed slices of jsonValue are written as null when nil, as
// encoding/json writes a nil slice; the []any it builds never are.
func appendJSONValue(dst []byte, v attribute.Value) []byte {
	switch v.Type() {
	case attribute.BOOL:
		return strconv.AppendBool(dst, v.AsBool())
	case attribute.INT64:
		return strconv.AppendInt(dst, v.AsInt64(), 10)
	case attribute.FLOAT64:
		return appendJSONFloat(dst, v.AsFloat64())
	case attribute.STRING:
		return appendJSONString(dst, v.AsString())
	case attribute.BOOLSLICE:
		return appendJSONArray(dst, v.AsBoolSlice(), strconv.AppendBool)
	case attribute.INT64SLICE:
		return appendJSONArray(dst, v.AsInt64Slice(), func(b []byte, i int64) []byte {
			return strconv.AppendInt(b, i, 10)
		})
	case attribute.FLOAT64SLICE:
		return appendJSONArray(dst, nonNil(v.AsFloat64Slice()), appendJSONFloat)
	case attribute.STRINGSLICE:
		return appendJSONArray(dst, v.AsStringSlice(), appendJSONString[string])
	case attribute.BYTESLICE:
		// Base64 needs no escaping.
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, v.AsByteSlice())
		return append(dst, '"')
	case attribute.SLICE:
		return appendJSONArray(dst, nonNil(v.AsSlice()), appendJSONValue)
	case attribute.MAP:
		return appendJSONMap(dst, v.AsMap())
	}
	return append(dst, "null"...)
}

// nonNil turns a nil slice into an empty one, for the values jsonValue
// copies into a new []any, which encoding/json writes as [] even when
// empty.
func nonNil[S ~[]E, E any](s S) S {
	if s == nil {
		return S{}
	}
	return s
}

func appendJSONArray[E any](dst []byte, s []E, appendElem func([]byte, E) []byte) []byte {
	if s == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, e := range s {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendElem(dst, e)
	}
	return append(dst, ']')
}

// appendJSONFloat appends f as encoding/json writes jsonFloat(f): the
// non-finite values as the strings of jsonFloat, the others in the
// shortest form, with an exponent only for magnitudes below 1e-6 or from
// 1e21 on, and without a leading zero in a negative exponent.
func appendJSONFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(dst, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(dst, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(dst, `"-Infinity"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-07 becomes e-7.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendJSONTime appends formatTime(t) as a JSON string. RFC 3339 text
// needs no escaping.
func appendJSONTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	if !t.IsZero() {
		dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

// appendJSONHex appends b in lower-case hex as a JSON string, as
// trace.TraceID.String and trace.SpanID.String write the IDs.
func appendJSONHex(dst, b []byte) []byte {
	dst = append(dst, '"')
	dst = hex.AppendEncode(dst, b)
	return append(dst, '"')
}

const lowerHex = "0123456789abcdef"

// jsonSafe marks the ASCII bytes encoding/json copies unescaped with
// EscapeHTML off: all but the control characters, '"' and '\\'.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := range t {
		t[b] = b >= 0x20 && b != '"' && b != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string, escaped exactly as
// encoding/json escapes it with EscapeHTML off: '"' and '\\' with a
// backslash, \b \f \n \r \t as such, the other control characters as
// \u00XX, each byte of invalid UTF-8 as \ufffd, and U+2028 and U+2029 as
// \u2028 and \u2029 (for JSONP). Runs of safe bytes are copied at once.
func appendJSONString[S []byte | string](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', lowerHex[b>>4], lowerHex[b&0xf])
			}
			i++
			start = i
			continue
		}
		// Converting at most UTFMax bytes keeps a []byte's conversion on
		// the stack.
		c, size := utf8.DecodeRuneInString(string(s[i:min(len(s), i+utf8.UTFMax)]))
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', lowerHex[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
