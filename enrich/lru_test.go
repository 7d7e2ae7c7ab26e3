package enrich

import (
	"slices"
	"testing"
)

func lruKeys(l *lru[int, string]) []int {
	var ks []int
	l.Each(func(k int, _ string) bool { ks = append(ks, k); return true })
	return ks
}

func TestLRU(t *testing.T) {
	l := newLRU[int, string](3)
	for i := 1; i <= 3; i++ {
		if _, _, ev := l.Put(i, string(rune('a'+i-1))); ev {
			t.Fatalf("Put(%d) evicted below capacity", i)
		}
	}
	if got := lruKeys(l); !slices.Equal(got, []int{3, 2, 1}) {
		t.Fatalf("order = %v, want [3 2 1]", got)
	}
	if v, ok := l.Get(1); !ok || v != "a" {
		t.Fatalf("Get(1) = %q, %v", v, ok)
	}
	if v, ok := l.Peek(2); !ok || v != "b" {
		t.Fatalf("Peek(2) = %q, %v", v, ok)
	}
	// 1 was used, Peek does not count: 2 is the least recent.
	k, v, ev := l.Put(4, "d")
	if !ev || k != 2 || v != "b" {
		t.Fatalf("Put(4) evicted %d %q %v, want 2 b true", k, v, ev)
	}
	if got := lruKeys(l); !slices.Equal(got, []int{4, 1, 3}) {
		t.Fatalf("order = %v, want [4 1 3]", got)
	}
	if _, _, ev := l.Put(3, "c2"); ev {
		t.Fatal("replacing a key evicted")
	}
	if v, _ := l.Get(3); v != "c2" || l.Len() != 3 {
		t.Fatalf("after replace Get(3) = %q, Len %d", v, l.Len())
	}
	if !l.Remove(1) || l.Remove(1) || l.Len() != 2 {
		t.Fatal("Remove")
	}
	if _, ok := l.Get(1); ok {
		t.Fatal("removed key still present")
	}
	l.Put(5, "e")
	if got := lruKeys(l); !slices.Equal(got, []int{5, 3, 4}) {
		t.Fatalf("order = %v, want [5 3 4]", got)
	}
	n := 0
	l.Each(func(int, string) bool { n++; return false })
	if n != 1 {
		t.Fatalf("Each did not stop: %d calls", n)
	}
}

func TestLRUReusesNodes(t *testing.T) {
	l := newLRU[int, string](64)
	for i := range 64 {
		l.Put(i, "v")
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			l.Put(1000+i, "w") // each evicts one and reuses its node
		}
		for i := range 64 {
			l.Remove(1000 + i)
			l.Put(i, "v")
		}
	})
	if allocs != 0 {
		t.Errorf("steady-state churn allocates %.1f per run", allocs)
	}
	if newLRU[int, int](0).cap != 1 {
		t.Error("capacity 0 not raised to 1")
	}
}
