package proxy

// slots is a set of pointers that each keep their own index in it (their
// slot), so that adding and removing are O(1) without hashing: a removed
// element's place is taken by the last one. Its users hold their own lock.
type slots[T any, P slotted[T]] []P

// slotted is a pointer to an element that has a slot of its own.
type slotted[T any] interface {
	*T
	slotAt() *int
}

func (s *slots[T, P]) add(p P) {
	*p.slotAt() = len(*s)
	*s = append(*s, p)
}

// remove takes p out; it reports false when p was not in s (never added, or
// removed already).
func (s *slots[T, P]) remove(p P) bool {
	l, i := *s, *p.slotAt()
	if i >= len(l) || l[i] != p {
		return false
	}
	last := len(l) - 1
	l[i] = l[last]
	*l[i].slotAt() = i
	l[last] = nil
	*s = l[:last]
	return true
}
