package reputation

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

func resultKeyN(i int) resultKey { return resultKey{url: fmt.Sprintf("http://host%d.test/%d", i%7, i)} }

// TestResultCacheKeepsHitEntries: an entry hit at least once in every half
// of the cache's size of additions stays however many others come and go,
// while one never hit again leaves after the cache's size of additions;
// hits on other old entries in between do not push the first one out.
func TestResultCacheKeepsHitEntries(t *testing.T) {
	for _, size := range []int{8, 100, 1000} {
		cs, err := newCaches(size)
		if err != nil {
			t.Fatal(err)
		}
		c := cs.results
		hot, cold := resultKey{url: "http://hot.test/"}, resultKey{url: "http://cold.test/"}
		exp := time.Now().Add(time.Hour)
		c.add(hot, Verdict{Kind: KindMalware}, exp)
		c.add(cold, Verdict{Kind: KindClean}, exp)
		for i := 0; i < 20*size; i++ {
			c.add(resultKeyN(i), Verdict{}, exp)
			if i%3 == 0 { // and hits on older entries, each of which moves
				c.get(resultKeyN(max(0, i-size+2)))
			}
			if i%(size/2) == size/2-1 {
				e, ok := c.get(hot)
				if !ok {
					t.Fatalf("size %d: the entry hit every %d additions was evicted after %d", size, size/2, i+1)
				}
				if e.verdict.Kind != KindMalware {
					t.Fatalf("size %d: hot entry's verdict %v", size, e.verdict)
				}
			}
			if i == size-1 {
				if _, ok := c.peek(cold); ok {
					t.Fatalf("size %d: an entry never hit is still cached after %d additions", size, size)
				}
			}
		}
		if c.len() != size {
			t.Fatalf("size %d: len %d", size, c.len())
		}
	}
}

// TestResultCacheMovesWhenDue: a hit on an entry that went to the front
// less than a quarter of the size ago leaves the order as it is; a hit on
// an older one moves it to the front.
func TestResultCacheMovesWhenDue(t *testing.T) {
	cs, err := newCaches(100)
	if err != nil {
		t.Fatal(err)
	}
	c := cs.results
	exp := time.Now().Add(time.Hour)
	for i := 0; i < 100; i++ {
		c.add(resultKeyN(i), Verdict{}, exp)
	}
	before := c.lru.Keys()      // oldest first
	for i := 99; i >= 74; i-- { // at most 25 went to the front since: not due (in reverse, so that moving would show)
		if _, ok := c.get(resultKeyN(i)); !ok {
			t.Fatal("missing", i)
		}
	}
	if got := c.lru.Keys(); !slices.Equal(got, before) {
		t.Fatalf("hits on fresh entries moved them:\n%v\n%v", got[95:], before[95:])
	}
	if _, ok := c.get(resultKeyN(73)); !ok { // 26 went to the front since: due
		t.Fatal("missing 73")
	}
	keys := c.lru.Keys()
	if keys[len(keys)-1] != resultKeyN(73) {
		t.Fatalf("a hit on an entry due did not move it to the front: newest is %v", keys[len(keys)-1])
	}
	if _, ok := c.get(resultKeyN(0)); !ok {
		t.Fatal("missing 0")
	}
	if keys := c.lru.Keys(); keys[0] != resultKeyN(1) || keys[len(keys)-1] != resultKeyN(0) {
		t.Fatalf("the oldest entry hit did not move to the front: %v ... %v", keys[0], keys[len(keys)-1])
	}
}
