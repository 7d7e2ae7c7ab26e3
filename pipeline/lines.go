package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/connwatch/connwatch/event"
)

// LinesFlushInterval is how long a LineSink keeps a line buffered.
const LinesFlushInterval = 200 * time.Millisecond

// LineFormat appends the text of one event to dst, newline included, or
// returns dst unchanged for an event it does not show.
type LineFormat func(dst []byte, ev *event.Event) []byte

// LineSink writes events as lines of text (one per event, or none for
// events its format leaves out) to a writer, buffered and flushed every
// LinesFlushInterval, on Flush and on Shutdown. After a write error it
// prints nothing more and Err reports the error. It backs -format events
// (NewEventsSink) and the terminal table (package console).
type LineSink struct {
	format LineFormat
	what   string // "events", "table rows": named in write errors

	mu     sync.Mutex
	bw     *bufio.Writer
	line   []byte
	err    error
	onErr  func(error)
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// NewLineSink returns a sink writing header (if any) and then format's
// lines to w; what names the lines in errors. onErr, which may be nil, is
// called once with the first write error.
func NewLineSink(w io.Writer, what string, header []byte, format LineFormat, onErr func(error)) *LineSink {
	s := &LineSink{format: format, what: what, bw: bufio.NewWriterSize(w, 64<<10), onErr: onErr,
		stop: make(chan struct{}), done: make(chan struct{})}
	s.bw.Write(header) // cannot fail: the buffer is larger than any header
	go s.flusher()
	return s
}

// NewEventsSink returns the sink of -format events: one flat JSON line
// per kernel event (event.AppendJSON); mode is the attach mode named in
// every line.
func NewEventsSink(w io.Writer, mode string, onErr func(error)) *LineSink {
	return NewLineSink(w, "events", nil, func(dst []byte, ev *event.Event) []byte {
		return append(event.AppendJSON(dst, ev, mode), '\n')
	}, onErr)
}

func (s *LineSink) flusher() {
	defer close(s.done)
	t := time.NewTicker(LinesFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.flushLocked()
			s.mu.Unlock()
		}
	}
}

// Emit writes ev's line, if it has one, into the buffer.
func (s *LineSink) Emit(ev *event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.closed {
		return
	}
	s.line = s.format(s.line[:0], ev)
	if len(s.line) == 0 {
		return
	}
	if _, err := s.bw.Write(s.line); err != nil {
		s.fail(err)
	}
}

func (s *LineSink) flushLocked() {
	if s.err != nil || s.bw.Buffered() == 0 {
		return
	}
	if err := s.bw.Flush(); err != nil {
		s.fail(err)
	}
}

func (s *LineSink) fail(err error) {
	s.err = fmt.Errorf("writing %s: %w", s.what, err)
	if s.onErr != nil {
		s.onErr(s.err)
	}
}

// Err returns the first write error.
func (s *LineSink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Flush writes the buffered lines.
func (s *LineSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
	return s.err
}

// Shutdown flushes and stops the flush timer.
func (s *LineSink) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return s.err
	}
	s.closed = true
	s.flushLocked()
	err := s.err
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return errors.Join(err)
}

var _ Sink = (*LineSink)(nil)
