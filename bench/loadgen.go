package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// server is the in-process side of the load generator: a listener on
// 127.0.0.1 whose acceptors accept each connection and close it at once.
// The server closes first, so TIME_WAIT lands on the server side (whose
// port is fixed) and the clients' ephemeral ports are freed as soon as
// they close: the generator cannot run out of local ports.
type server struct {
	ln       *net.TCPListener
	port     int
	accepted atomic.Uint64
	wg       sync.WaitGroup
}

// acceptors is the number of goroutines accepting; Accept on one listener
// is serialised by the runtime, two keep one ready while the other closes.
const acceptors = 2

func startServer() (*server, error) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, fmt.Errorf("load generator: listening on 127.0.0.1: %w", err)
	}
	s := &server{ln: ln, port: ln.Addr().(*net.TCPAddr).Port}
	for range acceptors {
		s.wg.Go(s.acceptLoop)
	}
	return s, nil
}

func (s *server) acceptLoop() {
	for {
		c, err := s.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off instead of spinning.
			time.Sleep(time.Millisecond)
			continue
		}
		s.accepted.Add(1)
		c.Close()
	}
}

func (s *server) close() {
	s.ln.Close()
	s.wg.Wait()
}

// loadResult is one run of the generator.
type loadResult struct {
	Conns   uint64        // connections established (dial succeeded)
	Errors  uint64        // failed dials and reads
	Elapsed time.Duration // from the first dial to the last close
}

// Rate is connections per second.
func (r loadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Conns) / r.Elapsed.Seconds()
}

// run makes connections to s with `workers` goroutines for d or until
// maxConns connections are made, whichever comes first. Each worker dials
// 127.0.0.1:port, waits for the server's close (EOF) and closes: one
// complete TCP connection, about ten state changes of
// sock/inet_sock_set_state.
func (s *server) run(workers int, d time.Duration, maxConns uint64) loadResult {
	var (
		stop   atomic.Bool
		conns  atomic.Uint64
		errs   atomic.Uint64
		wg     sync.WaitGroup
		addr   = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.port}
		budget = maxConns / uint64(workers)
	)
	if budget == 0 {
		budget = 1
	}
	start := time.Now()
	timer := time.AfterFunc(d, func() { stop.Store(true) })
	defer timer.Stop()
	for range workers {
		wg.Go(func() {
			var buf [1]byte
			var n, e uint64
			for n < budget && !stop.Load() {
				c, err := net.DialTCP("tcp4", nil, addr)
				if err != nil {
					e++
					time.Sleep(time.Millisecond)
					continue
				}
				n++
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(buf[:]); err == nil {
					e++ // the server never writes
				} else if !errors.Is(err, io.EOF) {
					e++
				}
				c.Close()
			}
			conns.Add(n)
			errs.Add(e)
		})
	}
	wg.Wait()
	return loadResult{Conns: conns.Load(), Errors: errs.Load(), Elapsed: time.Since(start)}
}

// dialOnce makes one connection and waits for the server's close.
func (s *server) dialOnce() error {
	c, err := net.DialTCP("tcp4", nil, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.port})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [1]byte
	if _, err := c.Read(buf[:]); !errors.Is(err, io.EOF) {
		return fmt.Errorf("waiting for the server's close: %v", err)
	}
	return nil
}
