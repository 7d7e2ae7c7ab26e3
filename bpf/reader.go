//go:build linux

package bpf

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/ringbuf"
)

// Record is one read from the perf or ring buffer: a sample, or (perf
// buffer only) a count of samples the kernel lost on a CPU because the
// buffer was full.
type Record = perf.Record

// ErrClosed is returned by Read after Close.
var ErrClosed = perf.ErrClosed

// ErrFlushed is returned by Read once the records pending at Flush are read.
var ErrFlushed = perf.ErrFlushed

// eventReader is the perf or the ring buffer reader.
type eventReader interface {
	ReadInto(*Record) error
	SetDeadline(time.Time)
	Flush() error
	Close() error
}

// newReader opens the reader of the transport opts choose on maps.
func newReader(maps *connwatchMaps, opts Options) (eventReader, error) {
	var rd eventReader
	if opts.Transport == TransportRingbuf {
		r, err := ringbuf.NewReader(maps.SysEventsRb)
		if err != nil {
			return nil, fmt.Errorf("opening ring buffer reader: %w", err)
		}
		rd = &ringReader{Reader: r}
	} else {
		r, err := perf.NewReaderWithOptions(maps.SysEvents, opts.PerCPUBuffer,
			perf.ReaderOptions{WakeupEvents: opts.WakeupEvents})
		if err != nil {
			return nil, fmt.Errorf("opening perf reader: %w", err)
		}
		rd = r
	}
	if opts.Transport == TransportRingbuf || opts.WakeupEvents > 1 {
		rd.SetDeadline(time.Now().Add(opts.Poll))
		rd = polling{rd, opts.Poll}
	}
	return rd, nil
}

// ringReader reads the ring buffer into perf Records. The ring buffer
// never loses samples silently: a full ring fails the kernel's write,
// which it counts in KernelStats.PerfErrors.
type ringReader struct {
	*ringbuf.Reader
	rec ringbuf.Record
}

func (r *ringReader) ReadInto(rec *Record) error {
	r.rec.RawSample = rec.RawSample
	err := r.Reader.ReadInto(&r.rec)
	rec.RawSample, rec.LostSamples, rec.CPU, rec.Remaining = r.rec.RawSample, 0, 0, r.rec.Remaining
	return err
}

// polling reads so that no event waits longer than every for a wakeup
// the kernel does not send: a read that finds the buffers empty waits
// until the next deadline, which then moves on by every.
type polling struct {
	eventReader
	every time.Duration
}

func (r polling) ReadInto(rec *Record) error {
	for {
		err := r.eventReader.ReadInto(rec)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return err
		}
		r.SetDeadline(time.Now().Add(r.every))
	}
}

// Read blocks until the next record. rec's buffer is reused; RawSample is only
// valid until the next Read. After Flush, Read returns what is buffered and
// then ErrFlushed.
func (p *Probe) Read(rec *Record) error { return p.reader.ReadInto(rec) }

// Flush makes a blocked Read return the records already in the buffers
// and then ErrFlushed. (Read collects them every Options.Poll anyway.)
func (p *Probe) Flush() error { return p.reader.Flush() }
