package enrich

// lru is a bounded least-recently-used map. It is not safe for concurrent
// use; its owner serialises access.
//
// Nodes form an intrusive doubly linked ring around a sentinel, so Get and
// a Put that replaces a value do not allocate; a node freed by eviction or
// removal is kept for the next insertion.
type lru[K comparable, V any] struct {
	cap  int
	m    map[K]*lruNode[K, V]
	root lruNode[K, V] // sentinel: root.next is the most recent entry
	free *lruNode[K, V]
}

type lruNode[K comparable, V any] struct {
	key        K
	val        V
	prev, next *lruNode[K, V]
}

// newLRU returns an empty lru holding at most capacity entries (at least 1).
func newLRU[K comparable, V any](capacity int) *lru[K, V] {
	if capacity < 1 {
		capacity = 1
	}
	l := &lru[K, V]{cap: capacity, m: make(map[K]*lruNode[K, V], capacity)}
	l.root.next = &l.root
	l.root.prev = &l.root
	return l
}

// Len returns the number of entries.
func (l *lru[K, V]) Len() int { return len(l.m) }

// Get returns the value stored under k and marks it most recently used.
func (l *lru[K, V]) Get(k K) (V, bool) {
	n, ok := l.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	l.moveToFront(n)
	return n.val, true
}

// Peek returns the value stored under k without changing its recency.
func (l *lru[K, V]) Peek(k K) (V, bool) {
	n, ok := l.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	return n.val, true
}

// Put stores v under k as the most recently used entry. When the lru is full
// the least recently used entry is dropped and returned with evicted true.
func (l *lru[K, V]) Put(k K, v V) (evictedKey K, evictedVal V, evicted bool) {
	if n, ok := l.m[k]; ok {
		n.val = v
		l.moveToFront(n)
		return evictedKey, evictedVal, false
	}
	if len(l.m) >= l.cap {
		old := l.root.prev
		evictedKey, evictedVal, evicted = old.key, old.val, true
		l.unlink(old)
		delete(l.m, old.key)
		l.release(old)
	}
	n := l.free
	if n != nil {
		l.free = n.next
	} else {
		n = new(lruNode[K, V])
	}
	n.key, n.val = k, v
	l.insertFront(n)
	l.m[k] = n
	return evictedKey, evictedVal, evicted
}

// Remove deletes k and reports whether it was present.
func (l *lru[K, V]) Remove(k K) bool {
	n, ok := l.m[k]
	if !ok {
		return false
	}
	l.unlink(n)
	delete(l.m, k)
	l.release(n)
	return true
}

// Each calls fn for every entry from the most to the least recently used
// until fn returns false. fn must not modify the lru.
func (l *lru[K, V]) Each(fn func(K, V) bool) {
	for n := l.root.next; n != &l.root; n = n.next {
		if !fn(n.key, n.val) {
			return
		}
	}
}

func (l *lru[K, V]) moveToFront(n *lruNode[K, V]) {
	if l.root.next == n {
		return
	}
	l.unlink(n)
	l.insertFront(n)
}

func (l *lru[K, V]) insertFront(n *lruNode[K, V]) {
	n.prev = &l.root
	n.next = l.root.next
	l.root.next.prev = n
	l.root.next = n
}

func (l *lru[K, V]) unlink(n *lruNode[K, V]) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
}

// release clears n so that it retains no key or value and puts it on the
// free list.
func (l *lru[K, V]) release(n *lruNode[K, V]) {
	var zk K
	var zv V
	n.key, n.val = zk, zv
	n.next = l.free
	l.free = n
}
