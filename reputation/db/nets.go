package db

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/picket-proxy/picket/reputation"
)

// Networks is an immutable set of IP networks with verdicts: the address
// lists of the feeds (formats ips, spamhaus-drop, jsonl "cidr"), which the
// proxy checks on every address it is about to dial. It lives beside the
// hash index of a DB and is swapped with it.
//
// Networks of one family and prefix length form one sorted table; a lookup
// masks the address once per table present (a few dozen at most) and
// binary-searches, so overlapping networks of different lengths all match.
type Networks struct {
	tables   []netTable // longest prefixes first
	verdicts []NetVerdict
	n        int
}

// NetVerdict is a listed network's verdict and the source that listed it.
type NetVerdict struct {
	Verdict reputation.Verdict
	Source  string
}

// NetMatch is the network an address was found in.
type NetMatch struct {
	Network netip.Prefix
	NetVerdict
}

type netTable struct {
	v6   bool
	bits int
	keys []u128 // masked network addresses, sorted, unique
	vidx []uint32
}

// u128 is an address as a number: IPv4 in lo's low 32 bits.
type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// mask keeps the first bits of an address of width 32 or 128.
func (a u128) mask(bits int, v6 bool) u128 {
	if !v6 {
		if bits == 0 {
			return u128{}
		}
		return u128{lo: a.lo &^ (1<<(32-bits) - 1)}
	}
	switch {
	case bits == 0:
		return u128{}
	case bits < 64:
		return u128{hi: a.hi &^ (1<<(64-bits) - 1)}
	case bits == 64:
		return u128{hi: a.hi}
	case bits < 128:
		return u128{hi: a.hi, lo: a.lo &^ (1<<(128-bits) - 1)}
	}
	return a
}

// Len is the number of networks.
func (n *Networks) Len() int {
	if n == nil {
		return 0
	}
	return n.n
}

// Lookup returns the verdict of the address a: a network listed clean
// (known good) wins over every other; otherwise the most severe verdict of
// the networks holding a, the longest network on a tie. ok is false when
// no network holds a.
func (n *Networks) Lookup(a netip.Addr) (m NetMatch, ok bool) {
	if n == nil || !a.IsValid() {
		return NetMatch{}, false
	}
	a = a.Unmap().WithZone("")
	key, v6 := toU128(a), a.Is6()
	for i := range n.tables {
		t := &n.tables[i]
		if t.v6 != v6 {
			continue
		}
		k := key.mask(t.bits, v6)
		j, found := slices.BinarySearchFunc(t.keys, k, u128.cmp)
		if !found {
			continue
		}
		v := n.verdicts[t.vidx[j]]
		if !ok || better(v.Verdict, m.Verdict) {
			m, ok = NetMatch{Network: netip.PrefixFrom(a, t.bits).Masked(), NetVerdict: v}, true
		}
		if m.Verdict.Kind == reputation.KindClean {
			return m, true
		}
	}
	return m, ok
}

// better reports whether v should replace w: clean wins, then the more
// severe.
func better(v, w reputation.Verdict) bool {
	if w.Kind == reputation.KindClean {
		return false
	}
	return v.Kind == reputation.KindClean || v.Worse(w)
}

// netBuilder collects the networks of a load.
type netBuilder struct {
	entries  []netEntry
	verdicts []NetVerdict
	ids      map[NetVerdict]uint32
}

type netEntry struct {
	pfx netip.Prefix
	v   uint32
}

func newNetBuilder() *netBuilder { return &netBuilder{ids: make(map[NetVerdict]uint32)} }

// add adds a masked network listed by source.
func (b *netBuilder) add(p netip.Prefix, v reputation.Verdict, source string) {
	nv := NetVerdict{Verdict: reputation.Verdict{Kind: v.Kind, Category: v.Category, ThreatName: v.ThreatName}, Source: source}
	id, ok := b.ids[nv]
	if !ok {
		id = uint32(len(b.verdicts))
		b.verdicts = append(b.verdicts, nv)
		b.ids[nv] = id
	}
	b.entries = append(b.entries, netEntry{pfx: p, v: id})
}

// build sorts the networks into tables; a network listed twice keeps the
// better verdict (clean, then the more severe).
func (b *netBuilder) build() *Networks {
	if len(b.entries) == 0 {
		return nil
	}
	es := b.entries
	slices.SortFunc(es, func(x, y netEntry) int {
		if c := cmp.Compare(x.pfx.Addr().BitLen(), y.pfx.Addr().BitLen()); c != 0 {
			return c
		}
		if c := cmp.Compare(y.pfx.Bits(), x.pfx.Bits()); c != 0 {
			return c // longest first
		}
		return toU128(x.pfx.Addr()).cmp(toU128(y.pfx.Addr()))
	})
	n := &Networks{verdicts: b.verdicts}
	for i, e := range es {
		v6, bits, key := e.pfx.Addr().Is6(), e.pfx.Bits(), toU128(e.pfx.Addr())
		if i == 0 || v6 != es[i-1].pfx.Addr().Is6() || bits != es[i-1].pfx.Bits() {
			n.tables = append(n.tables, netTable{v6: v6, bits: bits})
		}
		t := &n.tables[len(n.tables)-1]
		if k := len(t.keys); k > 0 && t.keys[k-1] == key {
			if better(b.verdicts[e.v].Verdict, b.verdicts[t.vidx[k-1]].Verdict) {
				t.vidx[k-1] = e.v
			}
			continue
		}
		t.keys = append(t.keys, key)
		t.vidx = append(t.vidx, e.v)
		n.n++
	}
	b.entries = nil
	return n
}

// Networks returns the database's address lists (nil when it has none;
// a nil *Networks matches nothing).
func (d *DB) Networks() *Networks { return d.nets }
