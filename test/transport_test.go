//go:build linux

package test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/connwatch/connwatch/bpf"
	"github.com/connwatch/connwatch/event"
)

// A buffer nobody drains fills up: the kernel counts every event it could
// not write, and the events that did fit are read back intact afterwards.
// Nothing is lost without a count, with either transport.
func TestFullBufferIsCounted(t *testing.T) {
	requireRoot(t)
	for _, tr := range []bpf.Transport{bpf.TransportPerf, bpf.TransportRingbuf} {
		t.Run(string(tr), func(t *testing.T) {
			// One page per CPU (perf) or in all (ring buffer): a few
			// dozen events.
			p, err := bpf.Open(bpf.Options{Mode: attachMode(t), Transport: tr,
				PerCPUBuffer: os.Getpagesize(), RingBuffer: os.Getpagesize(), WakeupEvents: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()

			ln := listen(t, "tcp4", "127.0.0.1:0")
			const conns = 300
			for range conns {
				hostConnect(t, ln)
			}
			time.Sleep(100 * time.Millisecond) // let the last outcomes and accepts land

			ks, err := p.KernelStats()
			if err != nil {
				t.Fatal(err)
			}
			if ks.PerfErrors == 0 {
				t.Fatalf("%d connections into a one-page buffer nobody reads, yet no failed writes counted: %+v", conns, ks)
			}

			// Drain what is there: every sample decodes, and samples
			// read plus failed writes (plus, for perf, the lost counts)
			// cover at least our connections' events.
			var (
				rec        bpf.Record
				dec        event.Decoder
				ev         event.Event
				read, lost uint64
			)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					err := p.Read(&rec)
					if errors.Is(err, bpf.ErrFlushed) {
						return
					}
					if err != nil {
						t.Errorf("read: %v", err)
						return
					}
					if rec.LostSamples > 0 {
						lost += rec.LostSamples
						continue
					}
					if err := dec.Decode(rec.RawSample, &ev); err != nil {
						t.Errorf("decoding a sample that fit: %v", err)
					}
					read++
				}
			}()
			p.Flush()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				p.Close()
				<-done
				t.Fatal("reading the buffered samples did not end after Flush")
			}
			if read == 0 {
				t.Errorf("no sample read back from the full buffer")
			}
			// Each connection makes a connect sample; most also an accept.
			if read+ks.PerfErrors < conns {
				t.Errorf("read %d + failed %d < %d connections: events went missing without a count", read, ks.PerfErrors, conns)
			}
			// (A perf buffer reports its losses to the reader only with
			// the next sample written after space is freed.)
			t.Logf("%s: %d samples read, %d writes failed and counted, %d reported lost", tr, read, ks.PerfErrors, lost)
		})
	}
}
