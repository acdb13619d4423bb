package stats

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation"
)

// lookupClient is a reputation client asking the test cloud.
func lookupClient(t *testing.T, c *cloud) *reputation.Client {
	t.Helper()
	rem, err := reputation.NewRemote(reputation.RemoteConfig{Server: c.http.URL, Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := reputation.New(reputation.Config{Backend: rem, Timeout: 5 * time.Second}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rc.Close() })
	return rc
}

func lookup(t *testing.T, rc *reputation.Client) {
	t.Helper()
	if _, err := rc.Lookup(context.Background(), reputation.Query{URL: "http://phishing.picket.test/"}); err != nil {
		t.Fatal(err)
	}
}

func exeHash(s string) []byte { h := sha256.Sum256([]byte(s)); return h[:] }

// traffic feeds a few events: clean, a phishing detection, an unknown
// executable download and a detected file.
func traffic(p *Participation, client string) {
	a := netip.MustParseAddr(client)
	p.Observe(Event{Action: "allow", Verdict: "clean", Source: "server", URL: "http://clean.example/page?q=1", Client: a})
	p.Observe(Event{Action: "block", Verdict: "phishing", Category: "phishing", Source: "server", Stage: "protection",
		URL: "http://phishing.picket.test/login?user=alice", Client: a})
	p.Observe(Event{Action: "allow", Verdict: "unknown", Source: "server", URL: "http://dl.example/tool.exe", Client: a,
		Scan: &Scan{Type: "pe", Result: "unknown", SHA256: exeHash("tool"), Size: 100, Executable: true}})
	p.Observe(Event{Action: "block", Verdict: "malware", Source: "local", Stage: "protection", URL: "http://dl.example/eicar.com", Client: a,
		Scan: &Scan{Type: "text", Result: "malicious", SHA256: exeHash("eicar"), Size: 68, Threat: "EICAR-Test-File", Source: "eicar"}})
}

func TestParticipationOffSendsOnlyLookups(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	rc := lookupClient(t, c)
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{})
	cfg.Lookups = rc.Stats
	p := newParticipation(t, cfg, zerolog.Nop())
	lookup(t, rc)
	traffic(p, "192.0.2.1")
	for i := 0; i < 3; i++ {
		clk.Add(time.Hour)
		if err := p.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range c.all() {
		if r.path != reputation.PathLookup {
			t.Errorf("participation off: the cloud got %s, want only lookups", r.path)
		}
	}
	if st := p.Status(); st.Sending || st.Queued != 0 {
		t.Errorf("status: got sending=%t queued=%d, want false 0", st.Sending, st.Queued)
	}
}

func TestKPSNSendsNothingAndWarns(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	var logs testutil.SyncBuffer
	rc := lookupClient(t, c)
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true, Samples: SamplesFull})
	cfg.KSN = false
	cfg.Lookups = rc.Stats
	p := newParticipation(t, cfg, zerolog.New(&logs))
	if !strings.Contains(logs.String(), "no effect in KPSN mode") {
		t.Errorf("no KPSN warning at start; log: %s", logs.String())
	}
	lookup(t, rc)
	traffic(p, "192.0.2.1")
	if p.WantSample(Sample{SHA256: exeHash("x"), Size: 10, Type: "pe", Result: "unknown", Active: "executable"}) {
		t.Error("KPSN: WantSample said yes")
	}
	on := true
	p.Set(Change{Participation: &on, Who: "test"})
	for i := 0; i < 3; i++ {
		clk.Add(time.Hour)
		p.Tick(context.Background())
	}
	for _, r := range c.all() {
		if r.path != reputation.PathLookup {
			t.Errorf("KPSN: the server got %s, want only lookups", r.path)
		}
	}
}

func TestParticipationSendsBatchesEqualToPreview(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	rc := lookupClient(t, c)
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true})
	cfg.Lookups = rc.Stats
	p := newParticipation(t, cfg, zerolog.Nop())
	lookup(t, rc)
	traffic(p, "192.0.2.1")
	clk.Add(10 * time.Minute)
	p.Tick(context.Background()) // interval not over: nothing sent
	if got := c.paths(reputation.PathStats); len(got) != 0 {
		t.Fatalf("before the interval ended: got %d batches, want 0", len(got))
	}
	preview, err := p.Preview()
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if err := p.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.paths(reputation.PathStats)
	if len(got) != 1 {
		t.Fatalf("batches received: got %d, want 1", len(got))
	}
	if !bytes.Equal(got[0].body, preview) {
		t.Errorf("sent batch differs from the preview:\nsent    %s\npreview %s", got[0].body, preview)
	}
	if got[0].header.Get("Content-Encoding") != "gzip" || got[0].header.Get("Authorization") != "Bearer tok" {
		t.Errorf("headers: got %v, want gzip and the bearer token", got[0].header)
	}
	var b Batch
	if err := json.Unmarshal(got[0].body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Seq != 1 || b.Requests.Total != 4 || b.Requests.Blocked != 2 || b.Lookups.Total != 1 || len(b.Installation) != 32 {
		t.Errorf("batch: got seq %d requests %+v lookups %+v installation %q", b.Seq, b.Requests, b.Lookups, b.Installation)
	}
	wantURL := reputation.HashExpression("phishing.picket.test/login")
	if len(b.URLs) != 1 || b.URLs[0].SHA256 != hex.EncodeToString(wantURL[:]) {
		t.Errorf("urls: got %+v, want only the phishing detection's hashed expression (no query); local block-list hits are not sent", b.URLs)
	}
	if len(b.Files) != 2 {
		t.Errorf("files: got %+v, want the unknown executable and the detected file", b.Files)
	}
	for _, f := range b.Files {
		if want := map[string]string{"detected": "EICAR-Test-File", "unknown": ""}[f.Verdict]; f.Threat != want {
			t.Errorf("files: %s file with threat %q, want %q (a detection's name, nothing for unknown files)", f.Verdict, f.Threat, want)
		}
	}
	// The intake stored it.
	s, err := Summarize(c.dir, 10)
	if err != nil || s.Batches != 1 || len(s.Unknown) != 1 || s.Unknown[0].SHA256 != hex.EncodeToString(exeHash("tool")) {
		t.Errorf("summary: got %+v, %v", s, err)
	}
}

func TestNoPersonalDataInBatches(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true})
	p := newParticipation(t, cfg, zerolog.Nop())
	secrets := []string{"203.0.113.77", "cleanhost-secret", "qs-secret", "pathsecret", "evilquery"}
	for i := 0; i < 50; i++ {
		p.Observe(Event{Action: "allow", Verdict: "clean", Source: "server", Category: "Rule With Spaces cleanhost-secret",
			URL: "http://cleanhost-secret.example/pathsecret?token=qs-secret", Client: netip.MustParseAddr("203.0.113.77")})
		p.Observe(Event{Action: "block", Verdict: "malware", Source: "server", Stage: "protection",
			URL: "http://bad.example/x?evilquery=1", Client: netip.MustParseAddr("203.0.113.77")})
	}
	clk.Add(time.Hour)
	p.Tick(context.Background())
	got := c.paths(reputation.PathStats)
	if len(got) != 1 {
		t.Fatalf("batches: got %d, want 1", len(got))
	}
	for _, r := range c.all() {
		all := string(r.body) + headerText(r)
		for _, s := range secrets {
			if strings.Contains(all, s) {
				t.Errorf("%s carries %q:\n%s", r.path, s, all)
			}
		}
	}
}

func headerText(r received) string {
	var b strings.Builder
	for k, v := range r.header {
		b.WriteString(k + ": " + strings.Join(v, ",") + "\n")
	}
	return b.String()
}

func TestRuntimeToggleAndRestart(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	dir := t.TempDir()
	cfg := testConfig(t, c, clk, dir, Settings{}) // the file says off
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	var logs testutil.SyncBuffer
	p.log = zerolog.New(&logs)
	on, off := true, false
	traffic(p, "192.0.2.1")
	if _, err := p.Set(Change{Participation: &on, Who: "admin API: alice from 10.0.0.5"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "alice from 10.0.0.5") {
		t.Errorf("change not logged with who/where: %s", logs.String())
	}
	clk.Add(time.Hour)
	p.Tick(context.Background())
	if n := len(c.paths(reputation.PathStats)); n != 1 {
		t.Fatalf("after switching on: got %d batches, want 1", n)
	}
	p.Set(Change{Participation: &off, Who: "test"})
	traffic(p, "192.0.2.1")
	clk.Add(time.Hour)
	p.Tick(context.Background())
	if n := len(c.paths(reputation.PathStats)); n != 1 {
		t.Fatalf("after switching off: got %d batches, want still 1", n)
	}
	p.Set(Change{Participation: &on, Who: "test"})
	p.Close()

	// Restart with the same file (still "off"): the runtime choice stands.
	p2 := newParticipation(t, cfg, zerolog.Nop())
	if st := p2.Status(); !st.Participation || st.ChangedBy != "test" {
		t.Errorf("after restart: got participation %t by %q, want true by test", st.Participation, st.ChangedBy)
	}
	traffic(p2, "192.0.2.1")
	clk.Add(time.Hour)
	p2.Tick(context.Background())
	got := c.paths(reputation.PathStats)
	if len(got) != 2 {
		t.Fatalf("after restart: got %d batches, want 2", len(got))
	}
	var b Batch
	json.Unmarshal(got[1].body, &b)
	if b.Seq != 2 {
		t.Errorf("seq after restart: got %d, want 2", b.Seq)
	}
	// A reload with the file unchanged keeps the runtime choice.
	if err := p2.Reload(Settings{Participation: false}, ""); err != nil {
		t.Fatal(err)
	}
	if !p2.Status().Participation {
		t.Error("reload with an unchanged file changed the runtime choice")
	}
}

func TestReloadFileChangeWins(t *testing.T) {
	clk := newClock()
	dir := t.TempDir()
	p := newParticipation(t, testConfig(t, nil, clk, dir, Settings{}), zerolog.Nop())
	on := true
	p.Set(Change{Participation: &on, Who: "api"})
	p.Reload(Settings{}, "") // file unchanged: runtime choice stands
	if !p.Status().Participation {
		t.Fatal("unchanged file overrode the runtime choice")
	}
	p.Reload(Settings{Participation: true, Samples: SamplesFull}, "")
	p.Reload(Settings{Participation: false, Samples: SamplesFull}, "SIGHUP")
	if st := p.Status(); st.Participation || st.ChangedBy != "SIGHUP" {
		t.Errorf("changed file: got %t by %q, want false by SIGHUP", st.Participation, st.ChangedBy)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "participation.json"))
	if !strings.Contains(string(data), `"participation": false`) {
		t.Errorf("state file: %s", data)
	}
}

func TestSamples(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true})
	p := newParticipation(t, cfg, zerolog.Nop())
	small := bytes.Repeat([]byte("MZ"), 100)
	big := bytes.Repeat([]byte("PE"), 2000) // 4000 bytes > 1024
	smallS := Sample{SHA256: exeHash(string(small)), Size: int64(len(small)), Type: "pe", Result: "unknown", Active: "executable"}
	bigS := Sample{SHA256: exeHash(string(big)), Size: int64(len(big)), Type: "pe", Result: "unknown", Active: "executable"}
	if p.WantSample(smallS) {
		t.Error("samples off: WantSample said yes")
	}
	full := SamplesFull
	p.Set(Change{Samples: &full, Who: "test"})
	if p.WantSample(Sample{SHA256: smallS.SHA256, Size: smallS.Size, Type: "text", Result: "unknown"}) {
		t.Error("text file: WantSample said yes")
	}
	if p.WantSample(Sample{SHA256: smallS.SHA256, Size: smallS.Size, Type: "pe", Result: "malicious", Active: "executable"}) {
		t.Error("detected file: WantSample said yes")
	}
	if p.WantSample(bigS) {
		t.Error("full: a file over samples_max_size was wanted")
	}
	if !p.WantSample(smallS) {
		t.Fatal("small unknown executable not wanted")
	}
	if p.WantSample(smallS) {
		t.Error("the same hash was wanted twice")
	}
	p.OfferSample(smallS, bytes.NewReader(small))
	part := SamplesFullOrPart
	p.Set(Change{Samples: &part, Who: "test"})
	if !p.WantSample(bigS) {
		t.Fatal("full-or-part: big file not wanted")
	}
	p.OfferSample(bigS, bytes.NewReader(big))
	// Wait for the writer through the queue (no sleeping on time).
	waitFor(t, func() bool { return p.Status().QueuedSamples == 2 })
	p.Tick(context.Background())
	got := c.paths(reputation.PathSamples)
	if len(got) != 2 {
		t.Fatalf("samples sent: got %d, want 2", len(got))
	}
	for _, r := range got {
		var m SampleMeta
		json.Unmarshal([]byte(r.header.Get(HeaderSample)), &m)
		switch m.SHA256 {
		case hex.EncodeToString(smallS.SHA256):
			if m.Partial || !bytes.Equal(r.body, small) {
				t.Errorf("small sample: partial %t, %d bytes", m.Partial, len(r.body))
			}
		case hex.EncodeToString(bigS.SHA256):
			if !m.Partial || len(r.body) != 1024 || !bytes.Equal(r.body, big[:1024]) {
				t.Errorf("big sample: got partial %t and %d bytes, want partial and 1024", m.Partial, len(r.body))
			}
		default:
			t.Errorf("unexpected sample %+v", m)
		}
	}
	// After a restart the hash is still known as sampled.
	p.Close()
	p2 := newParticipation(t, cfg, zerolog.Nop())
	if p2.WantSample(smallS) {
		t.Error("after restart: an already sampled hash was wanted again")
	}
	if s, _ := Summarize(c.dir, 10); s.Samples != 2 {
		t.Errorf("intake stored %d samples, want 2", s.Samples)
	}
}

// waitFor polls cond for the background writer (bounded, no fixed sleep).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestCloudDownQueueBoundedObserveFast(t *testing.T) {
	// A cloud that accepts the connection and never answers: Observe must
	// not wait for a send in progress.
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	defer hang.Close()
	defer close(release)
	clk := newClock()
	cfg := testConfig(t, nil, clk, t.TempDir(), Settings{Participation: true})
	cfg.Server = hang.URL
	p := newParticipation(t, cfg, zerolog.Nop())
	traffic(p, "192.0.2.1")
	clk.Add(time.Hour)
	ticked := make(chan error, 1)
	go func() { ticked <- p.Tick(context.Background()) }()
	<-arrived // the send is now stuck in the cloud, until release (or its own 30 s timeout)
	// Observe must finish while the send hangs. (The deadline only tells
	// "blocked" from "slow" on a loaded machine; it is not a speed budget:
	// speed is measured by the benchmarks.)
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for i := 0; i < 20_000; i++ {
			traffic(p, "192.0.2.1")
		}
	}()
	select {
	case <-observed:
	case <-time.After(time.Minute):
		t.Fatal("Observe waits for the hanging send")
	}
	if p.sendMu.TryLock() { // the send ended before Observe did: it waited
		p.sendMu.Unlock()
		t.Fatal("Observe finished only after the hanging send gave up")
	}
	select {
	case err := <-ticked:
		t.Fatalf("the hanging send returned early: %v", err)
	default:
	}
	release <- struct{}{}
	<-ticked

	// A cloud that is down: the queue stays bounded, drops are counted.
	down := startCloud(t)
	down.http.Close()
	cfg = testConfig(t, down, clk, t.TempDir(), Settings{Participation: true})
	p = newParticipation(t, cfg, zerolog.Nop())
	for i := 0; i < 10; i++ {
		traffic(p, "192.0.2.1")
		clk.Add(time.Hour)
		p.Tick(context.Background())
	}
	st := p.Status()
	if st.Queued != cfg.QueueMax || st.Dropped == 0 || st.LastError == "" {
		t.Errorf("status: got queued %d dropped %d error %q, want %d, >0, an error", st.Queued, st.Dropped, st.LastError, cfg.QueueMax)
	}
	// The back-off itself is TestSendBacksOff's.
}

// TestSendBacksOff: after a failed send the next try waits 10 s, then 20 s,
// 40 s... (doubling, at most the interval); ticks in between send nothing;
// a success empties the queue and starts the back-off again from 10 s. The
// cloud counts the tries, so a sender without back-off fails here (an
// earlier version of this check compared error texts, which a retry at
// every tick repeats identically).
func TestSendBacksOff(t *testing.T) {
	var tries atomic.Int32
	var healthy atomic.Bool
	cloud := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if r.URL.Path != reputation.PathStats {
			http.NotFound(w, r)
			return
		}
		tries.Add(1)
		if !healthy.Load() {
			http.Error(w, "try later", http.StatusServiceUnavailable)
		}
	}))
	defer cloud.Close()
	clk := newClock()
	cfg := testConfig(t, nil, clk, t.TempDir(), Settings{Participation: true})
	cfg.Server = cloud.URL
	p := newParticipation(t, cfg, zerolog.Nop())
	tick := func(advance time.Duration, wantTries int32, what string) {
		t.Helper()
		clk.Add(advance)
		p.Tick(context.Background())
		if got := tries.Load(); got != wantTries {
			t.Fatalf("%s: %d tries in all, want %d", what, got, wantTries)
		}
	}
	traffic(p, "192.0.2.1")
	tick(time.Hour, 1, "the interval's batch")
	if st := p.Status(); st.Queued != 1 || !strings.Contains(st.LastError, "503") {
		t.Fatalf("after a 503: got queued %d, error %q; want 1 and the 503", st.Queued, st.LastError)
	}
	tick(0, 1, "at once")
	tick(9*time.Second, 1, "9 s after the 1st failure")
	tick(time.Second, 2, "10 s after the 1st failure")
	tick(19*time.Second, 2, "19 s after the 2nd failure")
	tick(time.Second, 3, "20 s after the 2nd failure")
	tick(39*time.Second, 3, "39 s after the 3rd failure")
	tick(time.Second, 4, "40 s after the 3rd failure")
	tick(79*time.Second, 4, "79 s after the 4th failure")
	healthy.Store(true)
	tick(time.Second, 5, "80 s after the 4th failure")
	if st := p.Status(); st.Queued != 0 || st.LastError != "" {
		t.Fatalf("after a success: got queued %d, error %q; want 0 and none", st.Queued, st.LastError)
	}
	// A new failure backs off from 10 s again.
	healthy.Store(false)
	traffic(p, "192.0.2.1")
	tick(time.Hour, 6, "the next interval's batch")
	tick(9*time.Second, 6, "9 s after the new failure")
	tick(time.Second, 7, "10 s after the new failure")
}

// TestSetCloudToKPSNStopsSending: a reload into KPSN mode deletes the
// batch waiting for an unreachable cloud, and nothing is sent afterwards,
// not even when the cloud is reachable again.
func TestSetCloudToKPSNStopsSending(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true})
	cfg.Server = "http://127.0.0.1:9" // down
	p := newParticipation(t, cfg, zerolog.Nop())
	traffic(p, "192.0.2.1")
	clk.Add(time.Hour)
	p.Tick(context.Background())
	if st := p.Status(); st.Queued != 1 {
		t.Fatalf("cloud down: got %d batches queued, want 1", st.Queued)
	}
	p.SetCloud(Cloud{KSN: false, Server: c.http.URL, Token: "tok"}, "test")
	if st := p.Status(); st.Queued != 0 || st.Sending || st.Mode != "kpsn" {
		t.Errorf("after SetCloud into KPSN: got queued %d, sending %t, mode %s; want 0, false, kpsn", st.Queued, st.Sending, st.Mode)
	}
	traffic(p, "192.0.2.1")
	for i := 0; i < 2; i++ {
		clk.Add(time.Hour)
		p.Tick(context.Background())
	}
	if got := c.all(); len(got) != 0 {
		t.Errorf("KPSN after a reload: the cloud got %d requests, want none", len(got))
	}
}

func TestIntakeRefusesJunk(t *testing.T) {
	c := startCloud(t)
	for _, tc := range []struct {
		name, path, body, header string
	}{
		{"not a batch", reputation.PathStats, `{"client_ip":"1.2.3.4"}`, ""},
		{"sample hash mismatch", reputation.PathSamples, "MZ", `{"sha256":"` + strings.Repeat("00", 32) + `","type":"pe","size":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := httpRequest(c.http.URL+tc.path, tc.body, tc.header)
			resp, err := c.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("status: got %d, want 400", resp.StatusCode)
			}
		})
	}
}

// TestRestartDoesNotCountAClientTwice: minimum aggregation withholds a
// hash seen by fewer than min_clients distinct clients in an interval. A
// restart mid-interval keeps the count, not the digests (their key
// changes at every start), so the same client before and after the
// restart must not count as two: one person's file hash stays withheld.
func TestRestartDoesNotCountAClientTwice(t *testing.T) {
	c := startCloud(t)
	clk := newClock()
	cfg := testConfig(t, c, clk, t.TempDir(), Settings{Participation: true})
	cfg.MinClients = 2
	exe := exeHash("one person's build")
	download := func(p *Participation) {
		p.Observe(Event{Action: "allow", Verdict: "unknown", Source: "server", URL: "http://dl.example/mine.exe",
			Client: netip.MustParseAddr("192.0.2.7"), Scan: &Scan{Type: "pe", Result: "unknown", SHA256: exe, Size: 100, Executable: true}})
	}
	p, err := New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	download(p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p2 := newParticipation(t, cfg, zerolog.Nop())
	download(p2)
	clk.Add(time.Hour)
	if err := p2.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	got := c.paths(reputation.PathStats)
	if len(got) != 1 {
		t.Fatalf("batches: got %d, want 1", len(got))
	}
	if bytes.Contains(got[0].body, []byte(hex.EncodeToString(exe))) {
		t.Errorf("one client, before and after a restart: its file hash was sent, want it withheld:\n%s", got[0].body)
	}
}
