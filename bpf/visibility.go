//go:build linux

package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// Scopes of the visibility map's inner maps (KubeArmor's values, the C
// enum scopes).
const (
	ScopeFile    = uint32(connwatchScopesFILE_PROBE)
	ScopeProcess = uint32(connwatchScopesPROCESS_PROBE)
	ScopeNetwork = uint32(connwatchScopesNETWORK_PROBE)
	ScopeCaps    = uint32(connwatchScopesCAPS_PROBE)
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
	DefaultKey = OuterKey{uint32(connwatchVisibilityKeysVISIBILITY_DEFAULT_NS), uint32(connwatchVisibilityKeysVISIBILITY_DEFAULT_NS)}
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
	if p.objs == nil {
		return ErrProbeClosed
	}
	outer := p.objs.maps.Visibility
	for key, scopes := range v {
		inner, err := ebpf.NewMap(p.objs.innerVisibility)
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
func (p *Probe) VisibilityEntries() (int, error) {
	return p.countEntries(func(m *connwatchMaps) *ebpf.Map { return m.Visibility })
}

// PendingAttempts counts the attempts the kernel tracks until their outcome.
func (p *Probe) PendingAttempts() (int, error) {
	return p.countEntries(func(m *connwatchMaps) *ebpf.Map { return m.ConnAttempts })
}

// OpenConnections counts the reported connections the kernel tracks until
// they close.
func (p *Probe) OpenConnections() (int, error) {
	return p.countEntries(func(m *connwatchMaps) *ebpf.Map { return m.Conns })
}

func (p *Probe) countEntries(m func(*connwatchMaps) *ebpf.Map) (int, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.objs == nil {
		return 0, ErrProbeClosed
	}
	return countEntries(m(&p.objs.maps))
}
