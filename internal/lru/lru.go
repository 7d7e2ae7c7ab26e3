// Package lru is the bounded least-recently-used map of connwatch's caches:
// enrichment's process, namespace and container metadata caches and the
// exporter's encoded workload resources.
package lru

// Cache is a map holding at most a fixed number of entries; inserting
// beyond that drops the least recently used one. It is not safe for
// concurrent use: its owner serialises access.
//
// Get, Peek, a Put that replaces a value, and Remove do not allocate; nor
// does a Put that inserts once the cache has been full, since nodes freed by
// eviction or removal are kept for the next insertion. That keeps it fit
// for the event path.
type Cache[K comparable, V any] struct {
	cap  int
	m    map[K]*node[K, V]
	root node[K, V] // sentinel of the recency ring: root.next is the most recent entry
	free *node[K, V]
}

type node[K comparable, V any] struct {
	key        K
	val        V
	prev, next *node[K, V]
}

// New returns an empty Cache holding at most capacity entries (at least 1).
func New[K comparable, V any](capacity int) *Cache[K, V] {
	if capacity < 1 {
		capacity = 1
	}
	c := &Cache[K, V]{cap: capacity, m: make(map[K]*node[K, V], capacity)}
	c.root.next = &c.root
	c.root.prev = &c.root
	return c
}

// Len returns the number of entries.
func (c *Cache[K, V]) Len() int { return len(c.m) }

// Get returns the value stored under k and marks it most recently used.
func (c *Cache[K, V]) Get(k K) (v V, ok bool) {
	n := c.m[k]
	if n == nil {
		return v, false
	}
	if c.root.next != n {
		c.moveToFront(n)
	}
	return n.val, true
}

// Peek returns the value stored under k without changing its recency.
func (c *Cache[K, V]) Peek(k K) (V, bool) {
	n, ok := c.m[k]
	if !ok {
		var zero V
		return zero, false
	}
	return n.val, true
}

// Put stores v under k as the most recently used entry. When k is new and
// the Cache is full, the least recently used entry is dropped first and
// returned with evicted true.
func (c *Cache[K, V]) Put(k K, v V) (evictedKey K, evictedVal V, evicted bool) {
	if n, ok := c.m[k]; ok {
		n.val = v
		c.moveToFront(n)
		return evictedKey, evictedVal, false
	}
	if len(c.m) >= c.cap {
		old := c.root.prev
		evictedKey, evictedVal, evicted = old.key, old.val, true
		c.unlink(old)
		delete(c.m, old.key)
		c.release(old)
	}
	n := c.free
	if n != nil {
		c.free = n.next
	} else {
		n = new(node[K, V])
	}
	n.key, n.val = k, v
	c.insertFront(n)
	c.m[k] = n
	return evictedKey, evictedVal, evicted
}

// Remove deletes k and reports whether it was present.
func (c *Cache[K, V]) Remove(k K) bool {
	n, ok := c.m[k]
	if !ok {
		return false
	}
	c.unlink(n)
	delete(c.m, k)
	c.release(n)
	return true
}

// Clear removes every entry; the Cache keeps no reference to them.
func (c *Cache[K, V]) Clear() {
	for n := c.root.next; n != &c.root; {
		next := n.next
		c.release(n)
		n = next
	}
	clear(c.m)
	c.root.next = &c.root
	c.root.prev = &c.root
}

// Each calls fn for every entry from the most to the least recently used
// until fn returns false. fn must not modify the Cache.
func (c *Cache[K, V]) Each(fn func(K, V) bool) {
	for n := c.root.next; n != &c.root; n = n.next {
		if !fn(n.key, n.val) {
			return
		}
	}
}

func (c *Cache[K, V]) moveToFront(n *node[K, V]) {
	c.unlink(n)
	c.insertFront(n)
}

func (c *Cache[K, V]) insertFront(n *node[K, V]) {
	n.prev = &c.root
	n.next = c.root.next
	c.root.next.prev = n
	c.root.next = n
}

func (c *Cache[K, V]) unlink(n *node[K, V]) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
}

// release clears n so that it retains no key or value and puts it on the
// free list.
func (c *Cache[K, V]) release(n *node[K, V]) {
	var zk K
	var zv V
	n.key, n.val, n.prev = zk, zv, nil
	n.next = c.free
	c.free = n
}
