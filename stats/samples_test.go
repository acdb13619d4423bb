package stats

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/scanner"
	"github.com/rs/zerolog"
)

var (
	clientA = netip.MustParseAddr("10.1.0.1")
	clientB = netip.MustParseAddr("10.1.0.2")
	clientC = netip.MustParseAddr("10.1.0.3")
)

func sampleOf(name, typ, active string, size int64) Sample {
	return Sample{SHA256: exeHash(name), Size: size, Type: typ, Result: "unknown", Active: active, Client: clientA}
}

// TestSampleRules: which files may be sampled, with samples_min_clients 1
// so that only the file decides.
func TestSampleRules(t *testing.T) {
	for _, tc := range []struct {
		name    string
		s       Sample
		samples Samples
		want    bool
	}{
		{"plain pdf", sampleOf("a", "pdf", "", 100), SamplesFull, false},
		{"plain docx", sampleOf("b", "ooxml", "", 100), SamplesFull, false},
		{"plain zip", sampleOf("c", "zip", "", 100), SamplesFull, false},
		{"image", sampleOf("d", "image", "", 100), SamplesFull, false},
		{"unknown reason", sampleOf("e", "pdf", "personal-data", 100), SamplesFull, false},
		{"pdf with javascript", sampleOf("f", "pdf", "pdf-javascript", 100), SamplesFull, true},
		{"docm", sampleOf("g", "ooxml", "macros", 100), SamplesFull, true},
		{"zip holding an exe", sampleOf("h", "zip", "archived-executable", 100), SamplesFull, true},
		{"pe", sampleOf("i", "pe", "executable", 100), SamplesFull, true},
		{"detected pe", Sample{SHA256: exeHash("j"), Size: 100, Type: "pe", Result: "malicious", Active: "executable"}, SamplesFull, false},
		{"clean docm", Sample{SHA256: exeHash("k"), Size: 100, Type: "ooxml", Result: "clean", Active: "macros"}, SamplesFull, false},
		{"samples off", sampleOf("l", "pe", "executable", 100), SamplesOff, false},
		{"large pe, full", sampleOf("m", "pe", "executable", 5000), SamplesFull, false},
		{"large pe, full-or-part", sampleOf("n", "pe", "executable", 5000), SamplesFullOrPart, true},
		{"large elf, full-or-part", sampleOf("o", "elf", "executable", 5000), SamplesFullOrPart, true},
		{"large docm, full-or-part", sampleOf("p", "ooxml", "macros", 5000), SamplesFullOrPart, false},
		{"large pdf, full-or-part", sampleOf("q", "pdf", "pdf-javascript,pdf-openaction", 5000), SamplesFullOrPart, false},
		{"large zip with an exe, full-or-part", sampleOf("r", "zip", "archived-executable", 5000), SamplesFullOrPart, false},
		{"large msi, full-or-part", sampleOf("s", "ole2", "executable", 5000), SamplesFullOrPart, false},
		{"large script by name, full-or-part", sampleOf("u", "text", "script", 5000), SamplesFullOrPart, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, nil, newClock(), t.TempDir(), Settings{Participation: true, Samples: tc.samples})
			cfg.Server = "http://127.0.0.1:9" // never reached: nothing is sent here
			p := newParticipation(t, cfg, zerolog.Nop())
			if got := p.WantSample(tc.s); got != tc.want {
				t.Errorf("WantSample: got %t, want %t", got, tc.want)
			}
		})
	}
}

// TestSamplesNeedDistinctClients: with the default samples_min_clients (2)
// a file is sampled only when a second client downloads it within the
// window; the same client twice, or an IPv4 address and its IPv4-mapped
// form, is one client.
func TestSamplesNeedDistinctClients(t *testing.T) {
	clk := newClock()
	cfg := testConfig(t, nil, clk, t.TempDir(), Settings{Participation: true, Samples: SamplesFull})
	cfg.Server, cfg.SamplesMinClients, cfg.SamplesWindow = "http://127.0.0.1:9", 0, 0 // the defaults: 2, 24h
	p := newParticipation(t, cfg, zerolog.Nop())
	doc := sampleOf("invoice.docm", "ooxml", "macros", 100)
	by := func(s Sample, a netip.Addr) Sample { s.Client = a; return s }

	for i, a := range []netip.Addr{clientA, clientA, netip.AddrFrom16(clientA.As16())} {
		if p.WantSample(by(doc, a)) {
			t.Fatalf("download %d by one client: sampled", i+1)
		}
	}
	if st := p.Status(); st.SamplesWaiting != 1 {
		t.Errorf("one client: waiting %d, want 1", st.SamplesWaiting)
	}
	clk.Add(23 * time.Hour)
	if !p.WantSample(by(doc, clientB)) {
		t.Fatal("a second client within the window: not sampled")
	}
	if p.WantSample(by(doc, clientC)) {
		t.Error("a third client: sampled again")
	}
	if st := p.Status(); st.SamplesWaiting != 0 {
		t.Errorf("after the sample: waiting %d, want 0", st.SamplesWaiting)
	}

	// Past the window the count starts again.
	pdf := sampleOf("statement-js.pdf", "pdf", "pdf-javascript", 100)
	if p.WantSample(by(pdf, clientA)) {
		t.Fatal("first client: sampled")
	}
	clk.Add(24 * time.Hour)
	if p.WantSample(by(pdf, clientB)) {
		t.Error("a second client a window later: sampled")
	}
	clk.Add(time.Hour)
	if !p.WantSample(by(pdf, clientC)) {
		t.Error("a second client within the new window: not sampled")
	}
}

// TestDroppedOfferIsOfferedAgain: an offer that could not be copied is
// counted as dropped and releases the file, so that a later download (by
// any client: the count was made) offers it again; a written sample is
// never offered again.
func TestDroppedOfferIsOfferedAgain(t *testing.T) {
	cfg := testConfig(t, nil, newClock(), t.TempDir(), Settings{Participation: true, Samples: SamplesFull})
	cfg.Server, cfg.SamplesMinClients = "http://127.0.0.1:9", 2
	p := newParticipation(t, cfg, zerolog.Nop())
	data := []byte("MZ pretend program")
	s := Sample{SHA256: exeHash(string(data)), Size: int64(len(data)), Type: "pe", Result: "unknown", Active: "executable"}
	by := func(a netip.Addr) Sample { s.Client = a; return s }
	p.WantSample(by(clientA))
	if !p.WantSample(by(clientB)) {
		t.Fatal("two clients: not wanted")
	}
	p.OfferSample(s, io.LimitReader(bytes.NewReader(data), 3)) // the body ended early
	if st := p.Status(); st.SamplesDropped != 1 || st.SamplesInFlight != 0 {
		t.Fatalf("after a failed copy: %d dropped, %d in flight; want 1, 0", st.SamplesDropped, st.SamplesInFlight)
	}
	if !p.WantSample(by(clientA)) {
		t.Fatal("the next download after a dropped offer: not wanted")
	}
	p.OfferSample(s, bytes.NewReader(data))
	waitFor(t, func() bool { return p.Status().SamplesTaken == 1 })
	if st := p.Status(); st.SamplesInFlight != 0 || st.QueuedSamples != 1 || st.SamplesWaiting != 0 {
		t.Errorf("after the sample: %+v", st)
	}
	if p.WantSample(by(clientC)) {
		t.Error("a written sample was wanted again")
	}
}

// TestClientKeyRotatesWithInstallation: the digests' key is in the state
// file, never in what is shown or sent, and is replaced with the
// installation identifier; what was counted under the old key is dropped.
// Switching samples off drops the counts too.
func TestClientKeyRotatesWithInstallation(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, nil, newClock(), dir, Settings{Participation: true, Samples: SamplesFull})
	cfg.Server, cfg.SamplesMinClients = "http://127.0.0.1:9", 2
	p := newParticipation(t, cfg, zerolog.Nop())
	key := func() string {
		var st state
		data, _ := os.ReadFile(cfg.StateFile)
		json.Unmarshal(data, &st)
		return st.ClientKey
	}
	k1 := key()
	if len(k1) != 64 {
		t.Fatalf("state file client key: %q", k1)
	}
	shown, _ := json.Marshal(p.Status())
	preview, _ := p.Preview()
	if bytes.Contains(shown, []byte(k1)) || bytes.Contains(preview, []byte(k1)) {
		t.Error("the client key is in the status or the batch")
	}
	p.WantSample(sampleOf("a", "pe", "executable", 10))
	if st := p.Status(); st.SamplesWaiting != 1 {
		t.Fatalf("waiting %d, want 1", st.SamplesWaiting)
	}
	st, err := p.Set(Change{RotateInstallation: true, Who: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if k2 := key(); k2 == k1 || len(k2) != 64 {
		t.Errorf("client key after rotation: %q (was %q)", k2, k1)
	}
	if st.SamplesWaiting != 0 {
		t.Errorf("after rotation: waiting %d, want 0", st.SamplesWaiting)
	}
	// A restart keeps the key.
	k2 := key()
	p.Close()
	newParticipation(t, cfg, zerolog.Nop())
	if key() != k2 {
		t.Error("the client key changed across a restart")
	}

	p.WantSample(sampleOf("b", "pe", "executable", 10))
	off := SamplesOff
	if st, _ := p.Set(Change{Samples: &off, Who: "test"}); st.SamplesWaiting != 0 {
		t.Errorf("samples off: waiting %d, want 0", st.SamplesWaiting)
	}
}

// TestSightingsBounded: however many candidate files and clients, the
// sightings keep at most maxSightings files and maxSightingClients digests,
// dropping the oldest first sighting.
func TestSightingsBounded(t *testing.T) {
	s := newSightings(time.Hour)
	if s.maxFiles != maxSightings || s.maxClients != maxSightingClients {
		t.Fatalf("limits: %d files, %d clients", s.maxFiles, s.maxClients)
	}
	s.maxFiles, s.maxClients = 1000, 5000 // the same code, smaller numbers
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	h := func(i int) [32]byte { return sha256.Sum256([]byte{byte(i), byte(i >> 8), byte(i >> 16)}) }
	for i := 0; i < s.maxFiles+100; i++ {
		s.see(h(i), 1, now.Add(time.Duration(i)*time.Millisecond), 2)
	}
	if s.len() != s.maxFiles {
		t.Errorf("files: got %d, want %d", s.len(), s.maxFiles)
	}
	if _, ok := s.m[h(99)]; ok {
		t.Error("the oldest files were kept")
	}
	if _, ok := s.m[h(100)]; !ok {
		t.Error("a newer file was dropped")
	}
	// Many clients of few files.
	s.reset()
	for i := 0; i < 2*s.maxClients; i++ {
		if n := s.see(h(i/100), uint64(i), now, 100); n != i%100+1 {
			t.Fatalf("see %d: %d clients, want %d", i, n, i%100+1)
		}
	}
	if s.clients > s.maxClients || s.clients < s.maxClients-100 {
		t.Errorf("digests: got %d, want at most %d", s.clients, s.maxClients)
	}
	// Forgetting keeps the order list bounded.
	s.reset()
	for i := 0; i < 20_000; i++ {
		s.see(h(i), 1, now, 2)
		s.forget(h(i))
	}
	if s.len() != 0 || len(s.order)-s.head > 2048 {
		t.Errorf("after forgetting: %d files, %d in order", s.len(), len(s.order)-s.head)
	}
	// Expiry.
	s.see(h(1), 1, now, 2)
	if n := s.waiting(now.Add(time.Hour), 2); n != 0 {
		t.Errorf("after the window: %d waiting", n)
	}
}

func (s *sightings) len() int { return len(s.m) }

// TestSampleMetaAndPreviewList: a queued sample carries its type and
// reason; QueuedSamples lists them without reading the bytes.
func TestSampleMetaAndPreviewList(t *testing.T) {
	c := startCloud(t)
	dir := t.TempDir()
	cfg := testConfig(t, c, newClock(), dir, Settings{Participation: true, Samples: SamplesFull})
	p := newParticipation(t, cfg, zerolog.Nop())
	doc := []byte("pretend docm with macros")
	s := Sample{SHA256: exeHash(string(doc)), Size: int64(len(doc)), Type: "ooxml", Result: "unknown", Active: "macros,bogus", Client: clientA}
	if !p.WantSample(s) {
		t.Fatal("not wanted")
	}
	p.OfferSample(s, bytes.NewReader(doc))
	waitFor(t, func() bool { return p.Status().QueuedSamples == 1 })
	ro := cfg
	ro.ReadOnly = true
	pr, err := New(ro, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	q, err := pr.QueuedSamples()
	want := SampleMeta{SHA256: hex.EncodeToString(s.SHA256), Type: "ooxml", Size: int64(len(doc)), Reason: "macros"}
	if err != nil || len(q) != 1 || q[0] != want {
		t.Fatalf("QueuedSamples: got %+v, %v; want [%+v]", q, err, want)
	}
	p.Tick(context.Background())
	got := c.paths(reputation.PathSamples)
	if len(got) != 1 || !bytes.Equal(got[0].body, doc) {
		t.Fatalf("sent: %d samples", len(got))
	}
	var m SampleMeta
	if err := json.Unmarshal([]byte(got[0].header.Get(HeaderSample)), &m); err != nil || m != want {
		t.Errorf("sent meta: got %+v, want %+v", m, want)
	}
}

// TestActiveVocabulary: statistics know every kind of active content the
// scanner names, and no other.
func TestActiveVocabulary(t *testing.T) {
	var ours []string
	for n := range activeNames {
		ours = append(ours, n)
	}
	slices.Sort(ours)
	theirs := slices.Sorted(slices.Values(scanner.ActiveNames()))
	if !slices.Equal(ours, theirs) {
		t.Errorf("stats knows %v, the scanner names %v", ours, theirs)
	}
	if got := activeReason("macros,,ole-object,evil name,executable"); got != "macros,ole-object,executable" {
		t.Errorf("activeReason: got %q", got)
	}
}

// TestSwitchedOffSampleNeverSent: a sample still on its way to the queue
// when participation is switched off is not queued after the switch, so
// that switching participation on again later does not send it.
func TestSwitchedOffSampleNeverSent(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	// The sample writer reads the clock once per sample, before it writes:
	// the gate holds it there while participation is switched off.
	var armed atomic.Bool
	arrived, release := make(chan struct{}), make(chan struct{})
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true, Samples: SamplesFull})
	cfg.Now = func() time.Time {
		if armed.CompareAndSwap(true, false) {
			close(arrived)
			<-release
		}
		return clk.Now()
	}
	p := newParticipation(t, cfg, zerolog.Nop())
	data := []byte("MZ program on its way")
	s := Sample{SHA256: exeHash(string(data)), Size: int64(len(data)), Type: "pe", Result: "unknown", Active: "executable", Client: clientA}
	if !p.WantSample(s) {
		t.Fatal("not wanted")
	}
	armed.Store(true)
	p.OfferSample(s, bytes.NewReader(data))
	<-arrived
	off, on, full := false, true, SamplesFull
	p.Set(Change{Participation: &off, Who: "test"})
	close(release)
	waitFor(t, func() bool { return p.Status().SamplesInFlight == 0 })
	if st := p.Status(); st.QueuedSamples != 0 {
		t.Errorf("participation off: %d samples queued, want 0", st.QueuedSamples)
	}
	p.Set(Change{Participation: &on, Samples: &full, Who: "test"})
	p.Tick(context.Background())
	if got := c.paths(reputation.PathSamples); len(got) != 0 {
		t.Errorf("switched on again: the cloud got %d samples taken before the switch off, want 0", len(got))
	}
}

// TestSamplesOffDeletesQueued: a queued sample not sent yet is deleted
// when samples are switched off (participation stays on), so that
// switching samples on again later does not send it.
func TestSamplesOffDeletesQueued(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true, Samples: SamplesFull})
	p := newParticipation(t, cfg, zerolog.Nop())
	data := []byte("MZ program waiting")
	s := Sample{SHA256: exeHash(string(data)), Size: int64(len(data)), Type: "pe", Result: "unknown", Active: "executable", Client: clientA}
	if !p.WantSample(s) {
		t.Fatal("not wanted")
	}
	p.OfferSample(s, bytes.NewReader(data))
	waitFor(t, func() bool { return p.Status().QueuedSamples == 1 })
	off, full := SamplesOff, SamplesFull
	p.Set(Change{Samples: &off, Who: "test"})
	if st := p.Status(); st.QueuedSamples != 0 {
		t.Errorf("samples off: %d samples queued, want 0", st.QueuedSamples)
	}
	p.Set(Change{Samples: &full, Who: "test"})
	p.Tick(context.Background())
	if got := c.paths(reputation.PathSamples); len(got) != 0 {
		t.Errorf("samples on again: the cloud got %d samples taken before they were switched off, want 0", len(got))
	}
}
