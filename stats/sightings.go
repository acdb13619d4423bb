package stats

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net/netip"
	"time"
)

// Bounds of the sightings: however many candidate samples are downloaded,
// at most maxSightings hashes and maxSightingClients client digests in all
// are kept (the oldest first sighting goes first), about 10 MiB at most.
const (
	maxSightings       = 65_536
	maxSightingClients = 1 << 20
)

// sightings counts, for each file that could be sent as a sample, the
// distinct clients that downloaded it within a window that starts at its
// first sighting. Clients are kept as keyed digests (clientDigest), never
// as addresses, and only in memory: a restart starts counting again. It is
// not safe for concurrent use; Participation guards it with its mutex.
type sightings struct {
	window     time.Duration
	maxFiles   int // maxSightings
	maxClients int // maxSightingClients
	m          map[[32]byte]*sighting
	order      []seen // by first sighting, oldest first, from head
	head       int
	clients    int // digests kept in all entries
}

type sighting struct {
	first   time.Time
	clients []uint64
}

type seen struct {
	hash  [32]byte
	first time.Time
}

func newSightings(window time.Duration) *sightings {
	return &sightings{window: window, maxFiles: maxSightings, maxClients: maxSightingClients, m: make(map[[32]byte]*sighting)}
}

// see records that client downloaded h at now and returns how many
// distinct clients did within the window, counting at most k.
func (s *sightings) see(h [32]byte, client uint64, now time.Time, k int) int {
	s.expire(now)
	e := s.m[h]
	if e == nil {
		for len(s.m) >= s.maxFiles || s.clients >= s.maxClients {
			s.dropOldest()
		}
		e = &sighting{first: now}
		s.m[h] = e
		s.order = append(s.order, seen{h, now})
	}
	if len(e.clients) >= k {
		return len(e.clients)
	}
	for _, c := range e.clients {
		if c == client {
			return len(e.clients)
		}
	}
	e.clients = append(e.clients, client)
	s.clients++
	return len(e.clients)
}

// forget drops h: its sample was taken.
func (s *sightings) forget(h [32]byte) {
	if e := s.m[h]; e != nil {
		s.clients -= len(e.clients)
		delete(s.m, h)
	}
	s.compact()
}

// reset forgets everything: the digests' key changed.
func (s *sightings) reset() {
	clear(s.m)
	s.order, s.head, s.clients = nil, 0, 0
}

// waiting is how many files had fewer than k clients within the window
// at now.
func (s *sightings) waiting(now time.Time, k int) int {
	s.expire(now)
	n := 0
	for _, e := range s.m {
		if len(e.clients) < k {
			n++
		}
	}
	return n
}

// expire drops the files first seen a window or more before now.
func (s *sightings) expire(now time.Time) {
	for s.head < len(s.order) && now.Sub(s.order[s.head].first) >= s.window {
		s.pop()
	}
	s.compact()
}

// dropOldest drops the file first seen longest ago.
func (s *sightings) dropOldest() {
	for s.head < len(s.order) {
		if s.pop() {
			return
		}
	}
}

// pop removes the oldest entry of order and its file, unless the file was
// forgotten (and perhaps seen again) since; it reports whether it dropped
// one.
func (s *sightings) pop() bool {
	o := s.order[s.head]
	s.order[s.head] = seen{}
	s.head++
	if e := s.m[o.hash]; e != nil && e.first.Equal(o.first) {
		s.clients -= len(e.clients)
		delete(s.m, o.hash)
		return true
	}
	return false
}

// compact keeps order from growing past twice the files it tracks.
func (s *sightings) compact() {
	live := len(s.order) - s.head
	if s.head > 1024 && s.head > live {
		s.order = append(s.order[:0], s.order[s.head:]...)
		s.head = 0
		live = len(s.order)
	}
	if live > 2*len(s.m)+1024 {
		kept := s.order[:0]
		for _, o := range s.order[s.head:] {
			if e := s.m[o.hash]; e != nil && e.first.Equal(o.first) {
				kept = append(kept, o)
			}
		}
		clear(s.order[len(kept):])
		s.order, s.head = kept, 0
	}
}

// clientDigest is the keyed digest of a client address that sightings
// count: HMAC-SHA-256 under the installation's client key (which never
// leaves it and is replaced with the installation identifier), truncated
// to 64 bits. An IPv4 address and its IPv4-mapped IPv6 form are one client.
func clientDigest(key []byte, a netip.Addr) uint64 {
	b := a.Unmap().As16()
	m := hmac.New(sha256.New, key)
	m.Write(b[:])
	return binary.BigEndian.Uint64(m.Sum(nil))
}
