//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Scopes of the visibility map's inner maps (KubeArmor's values).
const (
	ScopeFile    uint32 = 0
	ScopeProcess uint32 = 1
	ScopeNetwork uint32 = 2
	ScopeCaps    uint32 = 3
)

// OuterKey is the visibility map's key: a pid and mount namespace pair.
type OuterKey struct {
	PidNS uint32
	MntNS uint32
}

var (
	// HostKey is the entry of host processes.
	HostKey = OuterKey{0, 0}
	// DefaultKey is the entry of namespaces that have none of their own.
	DefaultKey = OuterKey{0xc0ffee, 0xc0ffee}
)

// Visibility is the whole content of the visibility map: for each namespace
// pair, scope -> 1 (ignore) or 0 (trace).
type Visibility map[OuterKey]map[uint32]uint32

// SetVisibility makes the kernel's visibility map equal v. Each entry is
// replaced atomically (a new inner map is filled, then swapped in with one
// update of the outer map), then entries v no longer has are deleted: a
// namespace never passes through a state in which it has no entry unless it
// is being removed. It must not be called concurrently with itself.
func (p *Probe) SetVisibility(v Visibility) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.coll == nil {
		return ErrProbeClosed
	}
	outer := p.coll.Maps["visibility"]
	if outer == nil || p.innerVisibility == nil {
		return errors.New("visibility map not loaded")
	}
	for key, scopes := range v {
		inner, err := ebpf.NewMap(p.innerVisibility)
		if err != nil {
			return fmt.Errorf("creating inner visibility map: %w", err)
		}
		for scope, ignore := range scopes {
			if err := inner.Put(scope, ignore); err != nil {
				inner.Close()
				return fmt.Errorf("filling visibility of %v: %w", key, err)
			}
		}
		err = outer.Put(key, inner)
		// The outer map holds its own reference to the inner map.
		inner.Close()
		if err != nil {
			return fmt.Errorf("updating visibility of %v: %w", key, err)
		}
	}

	var stale []OuterKey
	var key OuterKey
	var id uint32
	it := outer.Iterate()
	for it.Next(&key, &id) {
		if _, ok := v[key]; !ok {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("listing visibility entries: %w", err)
	}
	for _, k := range stale {
		if err := outer.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("removing visibility of %v: %w", k, err)
		}
	}
	return nil
}

// VisibilityEntries counts the visibility map's entries.
func (p *Probe) VisibilityEntries() (int, error) { return p.countEntries("visibility") }

// PendingAttempts counts the attempts the kernel tracks until their outcome.
func (p *Probe) PendingAttempts() (int, error) { return p.countEntries("conn_attempts") }

// OpenConnections counts the reported connections the kernel tracks until
// they close.
func (p *Probe) OpenConnections() (int, error) { return p.countEntries("conns") }

func (p *Probe) countEntries(name string) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.coll == nil {
		return 0, ErrProbeClosed
	}
	return countEntries(p.coll.Maps[name])
}

func countEntries(m *ebpf.Map) (int, error) {
	var n int
	var key, value []byte
	it := m.Iterate()
	for it.Next(&key, &value) {
		n++
	}
	return n, it.Err()
}
