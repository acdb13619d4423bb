package stats

import (
	"encoding/hex"
	"hash/maphash"
	"net/netip"
	"sort"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// Caps of one interval's aggregate: beyond them new hashes are counted in
// Withheld and not kept, so memory stays bounded whatever the traffic.
const (
	maxFiles      = 10_000
	maxURLs       = 10_000
	maxCategories = 256
)

type verdictKey struct{ verdict, category string }
type scanKey struct{ typ, result string }

// entry is one hash's count and the distinct clients seen for it, kept as
// keyed 64-bit digests and only up to the minimum needed.
type entry struct {
	Verdict  string   `json:"verdict"`
	Type     string   `json:"type,omitempty"`
	Threat   string   `json:"threat,omitempty"`
	Category string   `json:"category,omitempty"`
	Count    uint64   `json:"count"`
	Clients  int      `json:"clients"` // distinct clients counted before a restart
	seen     []uint64 // keyed digests of clients, never persisted
}

func (e *entry) addClient(d uint64, k int) {
	if e.clients() >= k {
		return
	}
	for _, s := range e.seen {
		if s == d {
			return
		}
	}
	e.seen = append(e.seen, d)
}

// clients is how many distinct clients are known to have seen the entry:
// the clients counted before a restart and those since are not added up
// (a client of both would count twice, its digests being keyed afresh at
// each start), the larger count stands.
func (e *entry) clients() int { return max(e.Clients, len(e.seen)) }

// aggregate is one interval's counters. Its methods are not safe for
// concurrent use; Participation guards it with a mutex.
type aggregate struct {
	start      time.Time
	requests   Requests
	verdicts   map[verdictKey]uint64
	blocks     map[string]uint64
	scans      map[scanKey]uint64
	lookups    Lookups // raw: Total, CacheHits, Failures
	files      map[[32]byte]*entry
	urls       map[[32]byte]*entry
	overflow   Withheld
	categories int
}

func newAggregate(start time.Time) *aggregate {
	return &aggregate{
		start:    start.UTC().Truncate(time.Minute),
		verdicts: make(map[verdictKey]uint64), blocks: make(map[string]uint64), scans: make(map[scanKey]uint64),
		files: make(map[[32]byte]*entry), urls: make(map[[32]byte]*entry),
	}
}

// clientKey turns a client address into a keyed digest; seed is random per
// process, so digests cannot be reversed or linked across restarts.
func clientKey(seed maphash.Seed, a netip.Addr) uint64 {
	b := a.As16()
	return maphash.Bytes(seed, b[:])
}

// add counts one event. urlHash is the hashed expression of a detection
// (computed by the caller outside the lock), zero if none. It is O(1).
func (g *aggregate) add(e *Event, urlHash [32]byte, client uint64, k int) {
	g.requests.Total++
	switch e.Action {
	case "tunnel":
		g.requests.Tunnels++
	case "intercept":
		g.requests.Intercepted++
	case "block":
		g.requests.Blocked++
		g.blocks[oneOf(stageNames, e.Stage)]++
	case "warn":
		g.requests.Warned++
	case "error":
		g.requests.Errors++
	}
	if e.Verdict != "" {
		vk := verdictKey{oneOf(verdictNames, e.Verdict), category(e.Category)}
		if _, ok := g.verdicts[vk]; !ok {
			if g.categories >= maxCategories {
				vk.category = "other"
			} else {
				g.categories++
			}
		}
		g.verdicts[vk]++
	}
	if urlHash != ([32]byte{}) {
		g.count(g.urls, urlHash, maxURLs, &g.overflow.URLs, entry{Verdict: oneOf(verdictNames, e.Verdict), Category: category(e.Category)}, client, k)
	}
	if s := e.Scan; s != nil {
		typ := oneOf(typeNames, s.Type)
		g.scans[scanKey{typ, oneOf(resultNames, s.Result)}]++
		var verdict, threat string
		switch {
		case s.Result == "malicious":
			verdict, threat = "detected", threatName(s.Source, s.Threat)
		case s.Result == "unknown" && s.Executable:
			verdict = "unknown"
		}
		if verdict != "" && len(s.SHA256) == 32 {
			g.count(g.files, [32]byte(s.SHA256), maxFiles, &g.overflow.Files, entry{Verdict: verdict, Type: typ, Threat: threat}, client, k)
		}
	}
}

func (g *aggregate) count(m map[[32]byte]*entry, h [32]byte, max int, overflow *uint64, proto entry, client uint64, k int) {
	en, ok := m[h]
	if !ok {
		if len(m) >= max {
			*overflow++
			return
		}
		en = &proto
		m[h] = en
	}
	en.Count++
	en.addClient(client, k)
}

// addLookups folds a reputation client's counter delta in.
func (g *aggregate) addLookups(d reputation.Stats) {
	g.lookups.Total += d.Lookups
	g.lookups.CacheHits += d.CacheHits
	g.lookups.Failures += d.Failures
}

// batch builds the Batch of this aggregate without changing it: entries
// seen by fewer than k distinct clients are withheld. Slices are sorted so
// that the same aggregate always gives the same bytes.
func (g *aggregate) batch(k int, interval time.Duration) Batch {
	b := Batch{
		Schema: Schema, Start: g.start, End: g.start.Add(interval), Requests: g.requests, Lookups: g.lookups,
		Verdicts: []VerdictCount{}, Blocks: []BlockCount{}, Scans: []ScanCount{}, Files: []FileCount{}, URLs: []URLCount{},
		Withheld: g.overflow,
	}
	if b.Lookups.Total > 0 {
		b.Lookups.CacheHitRatio = float64(b.Lookups.CacheHits) / float64(b.Lookups.Total)
	}
	for k, n := range g.verdicts {
		b.Verdicts = append(b.Verdicts, VerdictCount{k.verdict, k.category, n})
	}
	sort.Slice(b.Verdicts, func(i, j int) bool {
		x, y := b.Verdicts[i], b.Verdicts[j]
		return x.Verdict < y.Verdict || x.Verdict == y.Verdict && x.Category < y.Category
	})
	for s, n := range g.blocks {
		b.Blocks = append(b.Blocks, BlockCount{s, n})
	}
	sort.Slice(b.Blocks, func(i, j int) bool { return b.Blocks[i].Stage < b.Blocks[j].Stage })
	for k, n := range g.scans {
		b.Scans = append(b.Scans, ScanCount{k.typ, k.result, n})
	}
	sort.Slice(b.Scans, func(i, j int) bool {
		x, y := b.Scans[i], b.Scans[j]
		return x.Type < y.Type || x.Type == y.Type && x.Result < y.Result
	})
	for h, e := range g.files {
		if e.clients() < k {
			b.Withheld.Files++
			continue
		}
		b.Files = append(b.Files, FileCount{SHA256: hex.EncodeToString(h[:]), Verdict: e.Verdict, Type: e.Type, Threat: e.Threat, Count: e.Count})
	}
	sort.Slice(b.Files, func(i, j int) bool { return b.Files[i].SHA256 < b.Files[j].SHA256 })
	for h, e := range g.urls {
		if e.clients() < k {
			b.Withheld.URLs++
			continue
		}
		b.URLs = append(b.URLs, URLCount{hex.EncodeToString(h[:]), e.Verdict, e.Category, e.Count})
	}
	sort.Slice(b.URLs, func(i, j int) bool { return b.URLs[i].SHA256 < b.URLs[j].SHA256 })
	return b
}

// checkpoint is an aggregate on disk (queue_dir/current.json), so that a
// restart loses no counts and "picket stats preview" sees the interval so
// far. Client digests are not kept, only how many there were.
type checkpoint struct {
	Start    time.Time        `json:"start"`
	Requests Requests         `json:"requests"`
	Verdicts []VerdictCount   `json:"verdicts"`
	Blocks   []BlockCount     `json:"blocks"`
	Scans    []ScanCount      `json:"scans"`
	Lookups  Lookups          `json:"lookups"`
	Files    map[string]entry `json:"files"`
	URLs     map[string]entry `json:"urls"`
	Overflow Withheld         `json:"overflow"`
}

func (g *aggregate) checkpoint() checkpoint {
	c := checkpoint{Start: g.start, Requests: g.requests, Lookups: g.lookups, Overflow: g.overflow,
		Files: make(map[string]entry, len(g.files)), URLs: make(map[string]entry, len(g.urls))}
	for k, n := range g.verdicts {
		c.Verdicts = append(c.Verdicts, VerdictCount{k.verdict, k.category, n})
	}
	for s, n := range g.blocks {
		c.Blocks = append(c.Blocks, BlockCount{s, n})
	}
	for k, n := range g.scans {
		c.Scans = append(c.Scans, ScanCount{k.typ, k.result, n})
	}
	for h, e := range g.files {
		en := *e
		en.Clients, en.seen = e.clients(), nil
		c.Files[hex.EncodeToString(h[:])] = en
	}
	for h, e := range g.urls {
		en := *e
		en.Clients, en.seen = e.clients(), nil
		c.URLs[hex.EncodeToString(h[:])] = en
	}
	return c
}

func restore(c checkpoint) *aggregate {
	g := newAggregate(c.Start)
	g.requests, g.lookups, g.overflow = c.Requests, c.Lookups, c.Overflow
	for _, v := range c.Verdicts {
		g.verdicts[verdictKey{v.Verdict, v.Category}] += v.Count
	}
	g.categories = len(g.verdicts)
	for _, b := range c.Blocks {
		g.blocks[b.Stage] += b.Count
	}
	for _, s := range c.Scans {
		g.scans[scanKey{s.Type, s.Result}] += s.Count
	}
	load := func(m map[[32]byte]*entry, from map[string]entry) {
		for k, e := range from {
			var h [32]byte
			if b, err := hex.DecodeString(k); err == nil && len(b) == 32 {
				copy(h[:], b)
				en := e
				m[h] = &en
			}
		}
	}
	load(g.files, c.Files)
	load(g.urls, c.URLs)
	return g
}

// urlHash is the SHA-256 of a detected URL's expression host/path: no
// scheme, no query, no fragment. Zero if the URL does not parse.
func urlHash(raw string) [32]byte {
	u, err := reputation.ParseURL(raw)
	if err != nil {
		return [32]byte{}
	}
	return reputation.HashExpression(u.Host + u.Path)
}
