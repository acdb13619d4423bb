package db

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"

	"github.com/picket-proxy/picket/reputation"
)

// The compiled database file of a feed directory: what a Store loads from
// feeds.toml goes into this file (.feeds.db beside feeds.toml by default: a dot file, so that go:embed of a feed directory never takes it),
// with the fingerprint of the feeds it was built from and their load
// Report. A restart with the feeds unchanged maps it instead of parsing
// them again.

// DefaultCompiled is the name of the compiled database in the feed
// directory.
const DefaultCompiled = ".feeds.db"

// parserGeneration changes whenever parsing changes what a feed line
// means, so that a compiled file of an older Picket is rebuilt.
const parserGeneration = 1

// buildRevision is the VCS revision Picket was built from ("" unknown): a
// new build rebuilds the compiled file, in case its parsers changed.
var buildRevision = func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	rev := ""
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" || s.Key == "vcs.modified" {
			rev += s.Value
		}
	}
	return fmt.Sprintf("%d/%s/%s", parserGeneration, bi.Main.Version, rev)
}()

// The extra sections of a compiled file.
const (
	reportSection = "report"
	netsSection   = "nets"
)

// setReport keeps r in the file being built.
func (b *Builder) setReport(r *Report) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	b.sections = append(b.sections, section{name: reportSection, data: data})
	return nil
}

// report returns the Report kept in d (nil when none).
func (d *DB) report() (*Report, error) {
	data := d.section(reportSection)
	if data == nil {
		return nil, nil
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: report: %v", ErrBadSnapshot, err)
	}
	return &r, nil
}

// setFingerprint marks the file being built with the fingerprint of the
// feeds it comes from.
func (b *Builder) setFingerprint(fp [32]byte) { b.fingerprint = fp }

// setNets keeps the address lists in the file being built.
func (b *Builder) setNets(n *Networks) {
	if n.Len() > 0 {
		b.sections = append(b.sections, section{name: netsSection, data: n.marshal()})
	}
}

// restore reads what a compiled file keeps beside the hashes: the load
// Report and the address lists (into d).
func (d *DB) restore() (*Report, error) {
	r, err := d.report()
	if err != nil {
		return nil, err
	}
	if data := d.section(netsSection); data != nil {
		if d.nets, err = unmarshalNetworks(data); err != nil {
			return nil, fmt.Errorf("%w: address lists: %v", ErrBadSnapshot, err)
		}
	}
	return r, nil
}

// marshal encodes the networks as their verdicts, then each network
// (netip.Prefix's binary form) with its verdict's index; unmarshal builds
// them again, so the tables' invariants are the builder's.
func (n *Networks) marshal() []byte {
	var b []byte
	b = binary.AppendUvarint(b, uint64(len(n.verdicts)))
	for _, v := range n.verdicts {
		b = append(b, byte(v.Verdict.Kind))
		for _, s := range []string{v.Verdict.Category, v.Verdict.ThreatName, v.Source} {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	b = binary.AppendUvarint(b, uint64(n.n))
	for _, t := range n.tables {
		for j, k := range t.keys {
			var a netip.Addr
			if t.v6 {
				var x [16]byte
				binary.BigEndian.PutUint64(x[:8], k.hi)
				binary.BigEndian.PutUint64(x[8:], k.lo)
				a = netip.AddrFrom16(x)
			} else {
				var x [4]byte
				binary.BigEndian.PutUint32(x[:], uint32(k.lo))
				a = netip.AddrFrom4(x)
			}
			p, _ := netip.PrefixFrom(a, t.bits).MarshalBinary()
			b = binary.AppendUvarint(b, uint64(len(p)))
			b = append(b, p...)
			b = binary.AppendUvarint(b, uint64(t.vidx[j]))
		}
	}
	return b
}

func unmarshalNetworks(b []byte) (*Networks, error) {
	bad := errors.New("damaged")
	next := func() (uint64, bool) {
		v, w := binary.Uvarint(b)
		if w <= 0 {
			return 0, false
		}
		b = b[w:]
		return v, true
	}
	bytesOf := func() ([]byte, bool) {
		l, ok := next()
		if !ok || l > uint64(len(b)) {
			return nil, false
		}
		s := b[:l]
		b = b[l:]
		return s, true
	}
	nv, ok := next()
	if !ok || nv > uint64(len(b)) {
		return nil, bad
	}
	verdicts := make([]NetVerdict, 0, nv)
	for i := uint64(0); i < nv; i++ {
		if len(b) == 0 || b[0] > byte(reputation.KindMalware) {
			return nil, bad
		}
		v := NetVerdict{Verdict: reputation.Verdict{Kind: reputation.Kind(b[0])}}
		b = b[1:]
		var f [3][]byte
		for k := range f {
			if f[k], ok = bytesOf(); !ok {
				return nil, bad
			}
		}
		v.Verdict.Category, v.Verdict.ThreatName, v.Source = string(f[0]), string(f[1]), string(f[2])
		verdicts = append(verdicts, v)
	}
	count, ok := next()
	if !ok || count > uint64(len(b)) {
		return nil, bad
	}
	nb := newNetBuilder()
	for i := uint64(0); i < count; i++ {
		raw, ok := bytesOf()
		if !ok {
			return nil, bad
		}
		var p netip.Prefix
		if err := p.UnmarshalBinary(raw); err != nil || !p.IsValid() || p != p.Masked() {
			return nil, bad
		}
		vi, ok := next()
		if !ok || vi >= uint64(len(verdicts)) {
			return nil, bad
		}
		nb.add(p, verdicts[vi].Verdict, verdicts[vi].Source)
	}
	if len(b) != 0 {
		return nil, bad
	}
	return nb.build(), nil
}
