package otel

// The per-event attributes of a JSON line (jsonline.go): collected as
// visitAttributes yields them, written as one object sorted by key, with
// the sorted and escaped keys of each key sequence kept for the next line
// of the same shape.

import (
	"net/netip"
	"strconv"
)

// jsonAttrCap is the number of per-event attributes a jsonEncoder holds
// without growing; visitAttributes yields at most 16 (a failed result or
// accept with both ends), so a warm encoder never grows.
const jsonAttrCap = 24

// jsonAttr is one per-event attribute, its value already encoded as JSON
// in jsonAttrs.vals[start:end]: encoding at visit time keeps one entry
// type for strings, addresses and ints, and makes writing a member a copy.
type jsonAttr struct {
	key        string
	start, end int
}

// jsonAttrs is the attrVisitor of the JSON lines: it collects the
// attributes visitAttributes yields so that they can be written sorted by
// key, as encoding/json writes the map[string]any of LogLine.Attributes.
type jsonAttrs struct {
	list  []jsonAttr // backed by store unless a mapping outgrows it
	store [jsonAttrCap]jsonAttr
	vals  []byte // the encoded values
	tmp   []byte // an address's text before it is escaped

	shapes    [jsonShapes]jsonShape
	nextShape int // the slot the next new shape takes
}

func (a *jsonAttrs) reset() {
	if a.list == nil {
		a.list = a.store[:0]
	}
	a.list = a.list[:0]
	a.vals = a.vals[:0]
}

func (a *jsonAttrs) add(key string, start int) {
	a.list = append(a.list, jsonAttr{key: key, start: start, end: len(a.vals)})
}

func (a *jsonAttrs) str(key *attrKey, val string) {
	start := len(a.vals)
	a.vals = appendJSONString(a.vals, val)
	a.add(key.name, start)
}

func (a *jsonAttrs) addr(key *attrKey, addr netip.Addr) {
	// An address is the string netip.Addr.String returns; escaped like
	// any other string because an IPv6 zone is arbitrary text.
	a.tmp = addr.AppendTo(a.tmp[:0])
	start := len(a.vals)
	a.vals = appendJSONString(a.vals, a.tmp)
	a.add(key.name, start)
}

func (a *jsonAttrs) int(key *attrKey, v int64) {
	start := len(a.vals)
	a.vals = strconv.AppendInt(a.vals, v, 10)
	a.add(key.name, start)
}

// appendObject appends the collected attributes as a JSON object, sorted
// by key. The keys of visitAttributes are distinct; should one repeat,
// the last value wins, as in a map.
func (a *jsonAttrs) appendObject(dst []byte) []byte {
	sh := a.shape()
	dst = append(dst, '{')
	head := 0
	for i, idx := range sh.order {
		dst = append(dst, sh.heads[head:sh.ends[i]]...)
		head = sh.ends[i]
		kv := a.list[idx]
		dst = append(dst, a.vals[kv.start:kv.end]...)
	}
	return append(dst, '}')
}

// jsonShapes is the number of key sequences a jsonAttrs remembers. An
// event's sequence depends only on its kind, which addresses it has and
// whether it failed, so a handful cover a workload's lines.
const jsonShapes = 8

// jsonShape is a sequence of keys as visitAttributes yielded them, with
// the object's members sorted: order indexes the sequence and heads holds
// each member's `,"key":` (no comma for the first), ending at ends[i].
// Sorting and escaping the keys once per sequence rather than per line
// halves the cost of a line.
type jsonShape struct {
	keys  []string
	order []int
	heads []byte
	ends  []int
}

func (sh *jsonShape) matches(list []jsonAttr) bool {
	if len(sh.keys) != len(list) {
		return false
	}
	for i, kv := range list {
		// The keys are the same constants line after line, so this is
		// mostly a comparison of pointers.
		if sh.keys[i] != kv.key {
			return false
		}
	}
	return true
}

// shape returns the shape of the collected keys, building it in place of
// the oldest one when it is new. Rebuilding reuses the slices, so a warm
// jsonAttrs allocates nothing even when more shapes take turns.
func (a *jsonAttrs) shape() *jsonShape {
	for i := range a.shapes {
		if sh := &a.shapes[i]; sh.keys != nil && sh.matches(a.list) {
			return sh
		}
	}
	sh := &a.shapes[a.nextShape]
	a.nextShape = (a.nextShape + 1) % jsonShapes
	if sh.keys == nil {
		// Room for any shape of visitAttributes, so that shapes taking
		// turns in a slot do not grow it; nil marks an unused slot.
		sh.keys = make([]string, 0, jsonAttrCap)
		sh.order = make([]int, 0, jsonAttrCap)
		sh.heads = make([]byte, 0, 32*jsonAttrCap)
		sh.ends = make([]int, 0, jsonAttrCap)
	}
	sh.keys = sh.keys[:0]
	for _, kv := range a.list {
		sh.keys = append(sh.keys, kv.key)
	}
	// Insertion sort of the indexes, stable so that of equal keys the
	// last one is last: a score of short keys, no closure to allocate.
	sh.order = sh.order[:0]
	for i := range sh.keys {
		sh.order = append(sh.order, i)
	}
	o := sh.order
	for i := 1; i < len(o); i++ {
		for j := i; j > 0 && sh.keys[o[j]] < sh.keys[o[j-1]]; j-- {
			o[j], o[j-1] = o[j-1], o[j]
		}
	}
	n := 0
	for i, idx := range o {
		if i+1 < len(o) && sh.keys[o[i+1]] == sh.keys[idx] {
			continue
		}
		o[n] = idx
		n++
	}
	sh.order = o[:n]
	sh.heads, sh.ends = sh.heads[:0], sh.ends[:0]
	for i, idx := range sh.order {
		if i > 0 {
			sh.heads = append(sh.heads, ',')
		}
		sh.heads = appendJSONString(sh.heads, sh.keys[idx])
		sh.heads = append(sh.heads, ':')
		sh.ends = append(sh.ends, len(sh.heads))
	}
	return sh
}
