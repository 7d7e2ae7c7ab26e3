package main

// The receiver's scan of the protobuf wire format (receiver.go): an OTLP
// trace or logs request is walked field by field and its records counted
// by kind for the watched server.port, without decoding it.

import "errors"

// consumeVarint decodes a protobuf varint; n < 0 when b ends inside it.
func consumeVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}

var errWire = errors.New("malformed protobuf")

// fields calls f for each field of the protobuf message b: its number and
// either its bytes (length-delimited) or its value (varint).
func fields(b []byte, f func(num uint64, val []byte, u uint64) error) error {
	for len(b) > 0 {
		tag, n := consumeVarint(b)
		if n < 0 {
			return errWire
		}
		b = b[n:]
		var val []byte
		var u uint64
		switch tag & 7 {
		case 0: // varint
			u, n = consumeVarint(b)
		case 1: // fixed64
			n = 8
		case 2: // length-delimited
			var l uint64
			l, n = consumeVarint(b)
			if n >= 0 {
				if l > uint64(len(b)-n) {
					return errWire
				}
				val = b[n : n+int(l)]
				n += int(l)
			}
		case 5: // fixed32
			n = 4
		default: // groups are not used by OTLP
			return errWire
		}
		if n < 0 || n > len(b) {
			return errWire
		}
		b = b[n:]
		if err := f(tag>>3, val, u); err != nil {
			return err
		}
	}
	return nil
}

// nested calls f for each message in field num of b, two levels down
// (ResourceSpans → ScopeSpans → Span; ResourceLogs → ScopeLogs →
// LogRecord: field 1, then 2, then 2).
func nested(b []byte, f func(rec []byte) error) error {
	return fields(b, func(num uint64, res []byte, _ uint64) error {
		if num != 1 {
			return nil
		}
		return fields(res, func(num uint64, scope []byte, _ uint64) error {
			if num != 2 {
				return nil
			}
			return fields(scope, func(num uint64, rec []byte, _ uint64) error {
				if num != 2 {
					return nil
				}
				return f(rec)
			})
		})
	})
}

// intAttrs reads the int values of the attributes server.port and
// connwatch.event_id from the KeyValue messages in field attrField of rec.
func intAttrs(rec []byte, attrField uint64, name *[]byte) (port, id int64, err error) {
	port, id = -1, -1
	err = fields(rec, func(num uint64, val []byte, _ uint64) error {
		if name != nil && num == 5 {
			*name = val
		}
		if num != attrField {
			return nil
		}
		var key []byte
		var iv int64 = -1
		err := fields(val, func(num uint64, v []byte, _ uint64) error {
			switch num {
			case 1:
				key = v
			case 2:
				return fields(v, func(num uint64, _ []byte, u uint64) error {
					if num == 3 { // AnyValue.int_value
						iv = int64(u)
					}
					return nil
				})
			}
			return nil
		})
		switch string(key) {
		case "server.port":
			port = iv
		case "connwatch.event_id":
			id = iv
		}
		return err
	})
	return
}

// scanTraces counts the spans of an ExportTraceServiceRequest.
func scanTraces(b []byte, watch int64, c *counts) error {
	return nested(b, func(span []byte) error {
		var name []byte
		port, _, err := intAttrs(span, 9, &name) // Span.name = 5, attributes = 9
		if err != nil {
			return err
		}
		c.Spans++
		if watch != 0 && port != watch {
			return nil
		}
		switch string(name) {
		case "tcp connect":
			c.ClientSpans++
		case "tcp accept":
			c.ServerSpans++
		}
		return nil
	})
}

// scanLogs counts the log records of an ExportLogsServiceRequest.
func scanLogs(b []byte, watch int64, c *counts) error {
	return nested(b, func(rec []byte) error {
		port, id, err := intAttrs(rec, 6, nil) // LogRecord.attributes = 6
		if err != nil {
			return err
		}
		c.Logs++
		if watch != 0 && port != watch {
			return nil
		}
		switch id {
		case 400, 402:
			c.ConnectLogs++
		case 410, 412:
			c.ResultLogs++
		case 401, 403:
			c.AcceptLogs++
		case 420, 422:
			c.CloseLogs++
		}
		return nil
	})
}

// scanMetrics counts the data points of an ExportMetricsServiceRequest
// (ResourceMetrics → ScopeMetrics → Metric, then the data points of its
// gauge, sum, histogram, exponential histogram or summary).
func scanMetrics(b []byte, c *counts) error {
	return nested(b, func(metric []byte) error {
		return fields(metric, func(num uint64, data []byte, _ uint64) error {
			switch num {
			case 5, 7, 9, 10, 11: // Metric.gauge, sum, histogram, exponential_histogram, summary
				return fields(data, func(num uint64, _ []byte, _ uint64) error {
					if num == 1 { // data_points
						c.MetricPoints++
					}
					return nil
				})
			}
			return nil
		})
	})
}
