package lru

import (
	"slices"
	"testing"
)

func keys(c *Cache[int, string]) []int {
	var ks []int
	c.Each(func(k int, _ string) bool { ks = append(ks, k); return true })
	return ks
}

func TestCache(t *testing.T) {
	c := New[int, string](3)
	for i := 1; i <= 3; i++ {
		if _, _, ev := c.Put(i, string(rune('a'+i-1))); ev {
			t.Fatalf("Put(%d) evicted below capacity", i)
		}
	}
	if got := keys(c); !slices.Equal(got, []int{3, 2, 1}) {
		t.Fatalf("order = %v, want [3 2 1]", got)
	}
	if v, ok := c.Get(1); !ok || v != "a" {
		t.Fatalf("Get(1) = %q, %v", v, ok)
	}
	if v, ok := c.Peek(2); !ok || v != "b" {
		t.Fatalf("Peek(2) = %q, %v", v, ok)
	}
	// 1 was used, Peek does not count: 2 is the least recent.
	k, v, ev := c.Put(4, "d")
	if !ev || k != 2 || v != "b" {
		t.Fatalf("Put(4) evicted %d %q %v, want 2 b true", k, v, ev)
	}
	if got := keys(c); !slices.Equal(got, []int{4, 1, 3}) {
		t.Fatalf("order = %v, want [4 1 3]", got)
	}
	if _, _, ev := c.Put(3, "c2"); ev {
		t.Fatal("replacing a key evicted")
	}
	if v, _ := c.Get(3); v != "c2" || c.Len() != 3 {
		t.Fatalf("after replace Get(3) = %q, Len %d", v, c.Len())
	}
	if !c.Remove(1) || c.Remove(1) || c.Len() != 2 {
		t.Fatal("Remove")
	}
	if _, ok := c.Get(1); ok {
		t.Fatal("removed key still present")
	}
	c.Put(5, "e")
	if got := keys(c); !slices.Equal(got, []int{5, 3, 4}) {
		t.Fatalf("order = %v, want [5 3 4]", got)
	}
	n := 0
	c.Each(func(int, string) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Each did not stop: %d calls", n)
	}
}

func TestClear(t *testing.T) {
	c := New[int, string](4)
	for i := range 4 {
		c.Put(i, "v")
	}
	c.Clear()
	if c.Len() != 0 || len(keys(c)) != 0 {
		t.Fatalf("after Clear: Len %d, keys %v", c.Len(), keys(c))
	}
	if _, ok := c.Get(2); ok {
		t.Fatal("cleared key still present")
	}
	for n := c.free; n != nil; n = n.next {
		if n.key != 0 || n.val != "" || n.prev != nil {
			t.Fatalf("a freed node retains %d %q", n.key, n.val)
		}
	}
	// Usable again, with its full capacity.
	for i := range 4 {
		if _, _, ev := c.Put(10+i, "w"); ev {
			t.Fatalf("Put(%d) after Clear evicted below capacity", 10+i)
		}
	}
	if got := keys(c); !slices.Equal(got, []int{13, 12, 11, 10}) {
		t.Fatalf("order after Clear = %v", got)
	}
}

func TestNoAllocationsOnceFull(t *testing.T) {
	c := New[int, string](64)
	for i := range 64 {
		c.Put(i, "v")
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			c.Put(1000+i, "w") // each evicts one and reuses its node
		}
		for i := range 64 {
			c.Get(1000 + i)
			c.Remove(1000 + i)
			c.Put(i, "v")
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state churn allocates %.1f per run", allocs)
	}
	if New[int, int](0).cap != 1 {
		t.Error("capacity 0 not raised to 1")
	}
}
