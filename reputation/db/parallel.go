package db

import (
	"errors"
	"net/netip"
	"runtime"
	"sync"

	"github.com/picket-proxy/picket/reputation"
)

// loadSources parses the sources concurrently, as many at once as there
// are CPUs. Hashes reach b in batches under one lock: the Builder's choice
// between duplicates does not depend on their order, so neither does the
// database. Networks are few; each source keeps its own, and they are
// added in the manifest's order, so ties between sources fall as they did
// when loading was sequential.
func (m *Manifest) loadSources(b *Builder) ([]SourceReport, *Networks, error) {
	reports := make([]SourceReport, len(m.Sources))
	nets := make([][]netEntryV, len(m.Sources))
	errs := make([]error, len(m.Sources))
	var mu sync.Mutex
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for i := range m.Sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			x := batcher{mu: &mu, b: b, buf: make([]Entry, 0, batchSize)}
			addNet := func(p netip.Prefix, v reputation.Verdict) { nets[i] = append(nets[i], netEntryV{p, v}) }
			reports[i], errs[i] = m.loadSource(&m.Sources[i], sink{add: x.add, addNet: addNet})
			x.flush()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	nb := newNetBuilder()
	for i, ns := range nets {
		for _, e := range ns {
			nb.add(e.p, e.v, m.Sources[i].Name)
		}
	}
	return reports, nb.build(), nil
}

// netEntryV is a network as a source listed it.
type netEntryV struct {
	p netip.Prefix
	v reputation.Verdict
}

const batchSize = 4096

// batcher collects one source's entries for the shared Builder.
type batcher struct {
	mu  *sync.Mutex
	b   *Builder
	buf []Entry
}

func (x *batcher) add(h reputation.Hash, v reputation.Verdict) {
	x.buf = append(x.buf, Entry{Hash: h, Verdict: v})
	if len(x.buf) == cap(x.buf) {
		x.flush()
	}
}

func (x *batcher) flush() {
	x.mu.Lock()
	for i := range x.buf {
		x.b.Add(x.buf[i].Hash, x.buf[i].Verdict)
	}
	x.mu.Unlock()
	clear(x.buf) // drop the strings
	x.buf = x.buf[:0]
}
