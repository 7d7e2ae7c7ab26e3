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

// EventsFlushInterval is how long an EventsSink keeps a line buffered.
const EventsFlushInterval = 200 * time.Millisecond

// EventsSink writes one flat JSON line per kernel event (`-format events`,
// event.AppendJSON) to a writer, buffered and flushed every
// EventsFlushInterval, on Flush and on Shutdown. After a write error it
// prints nothing more and Err reports the error.
type EventsSink struct {
	mode string

	mu     sync.Mutex
	bw     *bufio.Writer
	line   []byte
	err    error
	onErr  func(error)
	stop   chan struct{}
	done   chan struct{}
	closed bool
}

// NewEventsSink returns a sink writing to w; mode is the attach mode
// named in every line. onErr, which may be nil, is called once with the
// first write error.
func NewEventsSink(w io.Writer, mode string, onErr func(error)) *EventsSink {
	s := &EventsSink{mode: mode, bw: bufio.NewWriterSize(w, 64<<10), onErr: onErr,
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.flusher()
	return s
}

func (s *EventsSink) flusher() {
	defer close(s.done)
	t := time.NewTicker(EventsFlushInterval)
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

// Emit writes ev's line into the buffer.
func (s *EventsSink) Emit(ev *event.Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || s.closed {
		return
	}
	s.line = event.AppendJSON(s.line[:0], ev, s.mode)
	s.line = append(s.line, '\n')
	if _, err := s.bw.Write(s.line); err != nil {
		s.fail(err)
	}
}

func (s *EventsSink) flushLocked() {
	if s.err != nil || s.bw.Buffered() == 0 {
		return
	}
	if err := s.bw.Flush(); err != nil {
		s.fail(err)
	}
}

func (s *EventsSink) fail(err error) {
	s.err = fmt.Errorf("writing events: %w", err)
	if s.onErr != nil {
		s.onErr(s.err)
	}
}

// Err returns the first write error.
func (s *EventsSink) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Flush writes the buffered lines.
func (s *EventsSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.flushLocked()
	return s.err
}

// Shutdown flushes and stops the flush timer.
func (s *EventsSink) Shutdown(ctx context.Context) error {
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

var _ Sink = (*EventsSink)(nil)
