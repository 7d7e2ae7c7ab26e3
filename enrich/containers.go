package enrich

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connwatch/connwatch/event"
	"github.com/connwatch/connwatch/internal/lru"
)

// A metaSource answers what a container runtime says of one container.
// Lookup returns errNotHere when the source does not know the container
// (another runtime's, or gone), or another error when the source could
// not be asked (a missing directory, a socket that refuses, hangs or
// answers garbage). It must honour ctx.
type metaSource interface {
	name() string
	// serves reports whether the source is worth asking for a container
	// whose cgroup named runtime ("" when the cgroup did not say).
	serves(runtime string) bool
	lookup(ctx context.Context, id string) (*event.ContainerMeta, error)
}

var errNotHere = errors.New("container not known here")

// Bounds of the container metadata resolver.
const (
	metaCacheSize   = 4096
	metaQueueLen    = 256
	metaTimeout     = 2 * time.Second // one source's answer for one container
	metaRetryMin    = time.Second     // a container no source knew (yet)
	metaRetryMax    = 5 * time.Minute
	metaSourceRetry = 5 * time.Second // a source that failed, doubling up to metaRetryMax
)

// metaResolver looks container metadata up off the event path: lookup
// answers from its cache at once and queues an unknown container for a
// background goroutine, which asks the sources in order. An event of a
// container whose metadata is not known yet is never delayed; its
// Workload gets the metadata at a later event.
type metaResolver struct {
	sources []*sourceState
	log     *slog.Logger
	now     func() time.Time
	timeout time.Duration

	mu    sync.Mutex
	cache *lru.Cache[string, *metaEntry]

	queue chan metaRequest
	stop  chan struct{}
	done  chan struct{}

	found, notFound, failed atomic.Uint64
}

type metaRequest struct{ id, runtime string }

type metaEntry struct {
	meta   *event.ContainerMeta // nil until known
	queued bool
	next   time.Time // earliest retry when meta is nil and not queued
	tries  int
}

// sourceState is a source and its health: after a failure it is skipped
// until next, with a doubling delay; the first failure is logged as a
// warning, later ones at debug level until it recovers.
type sourceState struct {
	src    metaSource
	next   time.Time
	delay  time.Duration
	warned bool
}

func newMetaResolver(sources []metaSource, log *slog.Logger) *metaResolver {
	r := &metaResolver{
		log:     log,
		now:     time.Now,
		timeout: metaTimeout,
		cache:   lru.New[string, *metaEntry](metaCacheSize),
		queue:   make(chan metaRequest, metaQueueLen),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	for _, s := range sources {
		r.sources = append(r.sources, &sourceState{src: s})
	}
	go r.run()
	return r
}

// lookup returns the metadata of container id if known, else nil, queueing
// the container for the sources when it is new or its retry is due.
// Cheap and non-blocking: the event path calls it.
func (r *metaResolver) lookup(id, runtime string) *event.ContainerMeta {
	r.mu.Lock()
	defer r.mu.Unlock()
	ent, ok := r.cache.Get(id)
	if ok && (ent.meta != nil || ent.queued) {
		return ent.meta
	}
	if ok && r.now().Before(ent.next) {
		return nil
	}
	if !ok {
		ent = &metaEntry{}
		r.cache.Put(id, ent)
	}
	select {
	case r.queue <- metaRequest{id, runtime}:
		ent.queued = true
	default: // full: asked again at a later event
	}
	return nil
}

func (r *metaResolver) close() {
	close(r.stop)
	<-r.done
}

func (r *metaResolver) run() {
	defer close(r.done)
	for {
		select {
		case <-r.stop:
			return
		case req := <-r.queue:
			meta := r.resolve(req)
			r.mu.Lock()
			if ent, ok := r.cache.Peek(req.id); ok {
				ent.queued = false
				ent.meta = meta
				if meta == nil {
					ent.tries++
					ent.next = r.now().Add(min(metaRetryMin<<min(ent.tries-1, 16), metaRetryMax))
				}
			}
			r.mu.Unlock()
		}
	}
}

// resolve asks the healthy sources that serve req's runtime, in order.
// The first answer that names something is the result; a later source
// is asked only to fill what it lacks: a Kubernetes container's pod
// labels (app.kubernetes.io/name), which its OCI bundle does not carry
// and the CRI API does. An answer that names nothing (the bundle of a
// container started without Kubernetes) is kept only if no source does
// better.
func (r *metaResolver) resolve(req metaRequest) *event.ContainerMeta {
	var got, empty *event.ContainerMeta
	for _, s := range r.sources {
		if got != nil && (got.Service != "" || got.PodName == "") {
			break // nothing left that a later source adds
		}
		if !s.src.serves(req.runtime) || r.now().Before(s.next) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		m, err := s.src.lookup(ctx, req.id)
		cancel()
		switch {
		case errors.Is(err, errNotHere):
			r.recovered(s)
			continue
		case err != nil:
			r.failedSource(s, err)
			continue
		}
		r.recovered(s)
		switch {
		case m.Name == "" && m.PodName == "" && m.ImageName == "":
			if empty == nil {
				empty = m
			}
		case got == nil:
			got = m
		default:
			got = merge(got, m)
		}
	}
	if got == nil {
		got = empty
	}
	if got == nil {
		r.notFound.Add(1)
		r.log.Debug("container metadata not found", "container_id", req.id, "runtime", req.runtime)
		return nil
	}
	r.found.Add(1)
	r.log.Debug("container metadata", "container_id", req.id, "source", got.Source, "name", got.Name,
		"image", got.ImageName, "pod", got.PodName, "namespace", got.PodNamespace)
	return got
}

// merge returns a with its empty fields taken from b.
func merge(a, b *event.ContainerMeta) *event.ContainerMeta {
	m := *a
	m.Name = cmp.Or(m.Name, b.Name)
	m.ImageName = cmp.Or(m.ImageName, b.ImageName)
	if len(m.ImageTags) == 0 {
		m.ImageTags = b.ImageTags
	}
	m.Service = cmp.Or(m.Service, b.Service)
	m.ComposeProject = cmp.Or(m.ComposeProject, b.ComposeProject)
	m.PodName = cmp.Or(m.PodName, b.PodName)
	m.PodNamespace = cmp.Or(m.PodNamespace, b.PodNamespace)
	m.PodUID = cmp.Or(m.PodUID, b.PodUID)
	m.K8sContainer = cmp.Or(m.K8sContainer, b.K8sContainer)
	m.Source = a.Source + ", " + b.Source
	return &m
}

func (r *metaResolver) failedSource(s *sourceState, err error) {
	r.failed.Add(1)
	s.delay = min(max(2*s.delay, metaSourceRetry), metaRetryMax)
	s.next = r.now().Add(s.delay)
	if !s.warned {
		s.warned = true
		r.log.Warn("container metadata source unavailable; containers are reported without its names until it answers",
			"source", s.src.name(), "err", err, "retry_in", s.delay.String())
		return
	}
	r.log.Debug("container metadata source still unavailable", "source", s.src.name(), "err", err, "retry_in", s.delay.String())
}

func (r *metaResolver) recovered(s *sourceState) {
	if s.warned {
		r.log.Info("container metadata source answers again", "source", s.src.name())
	}
	s.warned, s.delay, s.next = false, 0, time.Time{}
}
