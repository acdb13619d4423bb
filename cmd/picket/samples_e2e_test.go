package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/admin"
	"github.com/picket-proxy/picket/config"
	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/stats"
)

// sampleFixture is a file downloaded through Picket in the samples test.
type sampleFixture struct {
	name   string
	data   []byte
	typ    string // the scanner's true type
	active string // the access log's active_content, "" for none
}

// sampleFixtures are generated afresh for each test (seed makes their
// hashes its own): two plain documents that must never leave, and five
// files that can attack.
func sampleFixtures(seed string) []sampleFixture {
	js := `<< /S /JavaScript /JS (app.alert\("` + seed + `"\)) >>`
	return []sampleFixture{
		{"statement.pdf", tf.PDF{Text: "Bank statement of A. Person, IBAN XX00 " + seed, Compressed: true}.Bytes(), "pdf", ""},
		{"contract.docx", tf.Docx{Text: "Employment contract of A. Person " + seed}.Bytes(), "ooxml", ""},
		{"invoice.pdf", tf.PDF{Text: "Invoice " + seed, Catalog: "/OpenAction 5 0 R", Objects: []string{js}}.Bytes(), "pdf",
			"pdf-javascript,pdf-openaction"},
		{"invoice.docm", tf.Docx{Text: "Invoice " + seed, Macros: true}.Bytes(), "ooxml", "macros"},
		{"letter.rtf", tf.RTF("Letter "+seed, true), "rtf", "rtf-object"},
		{"tools.zip", tf.Zip(tf.Member{Name: "readme.txt", Data: []byte("run setup " + seed)},
			tf.Member{Name: "setup.exe", Data: tf.PE("zipped "+seed, 3000)}), "zip", "archived-executable"},
		{"update.exe", tf.PE(seed, 5000), "pe", "executable"},
	}
}

// clientFrom is a client through Picket whose connections come from the
// loopback address local (127.0.0.0/8 is all loopback), so Picket sees
// distinct clients.
func clientFrom(t *testing.T, p *picketUnderTest, local string) *http.Client {
	u, _ := url.Parse("http://" + p.addr)
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	tr := &http.Transport{Proxy: http.ProxyURL(u), DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// participationStatus is GET /api/v1/participation of the admin listener.
func participationStatus(t *testing.T, p *picketUnderTest) admin.Participation {
	t.Helper()
	resp, body := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/api/v1/participation", nil)
	var st admin.Participation
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &st) != nil {
		t.Fatalf("participation status: %d %s", resp.StatusCode, body)
	}
	return st
}

// TestSamplesOnlyWhatCanAttack is the acceptance test of samples: a real
// cloud (repserver with the intake, recording what it receives) and a
// Picket in KSN mode with participation and samples on. Seven generated
// files are downloaded through Picket by one client (twice each), then by
// a second. Only the files that can attack — the PDF with JavaScript, the
// .docm, the RTF with an object, the zip holding an .exe and the unknown
// PE — are received, whole, and only after the second client; the plain
// PDF and .docx never. With samples_min_clients = 1 the first download
// suffices, and the plain documents still never leave.
func TestSamplesOnlyWhatCanAttack(t *testing.T) {
	for _, tc := range []struct {
		name       string
		minClients int
	}{
		{"two clients", 2},
		{"one client", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := sampleFixtures(t.Name())
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				for _, f := range files {
					if r.URL.Path == "/files/"+f.name {
						w.Header().Set("Content-Type", "application/octet-stream")
						w.Write(f.data)
						return
					}
				}
				http.NotFound(w, r)
			}))
			defer origin.Close()
			cloud := startStatsCloud(t)
			p := startPicketAt(t, writeConfig(t, fmt.Sprintf(`[reputation]
mode = "ksn"
[reputation.ksn]
server = %q
participation = true
samples = "full-or-part"
samples_max_size = "64KiB"
samples_min_clients = %d
`, cloud.url, tc.minClients)))

			download := func(c *http.Client, who string) {
				t.Helper()
				for _, f := range files {
					resp, body := fetch(t, c, origin.URL+"/files/"+f.name, nil)
					if resp.StatusCode != 200 || body != string(f.data) {
						t.Fatalf("%s, %s: got %d and %d bytes, want 200 and the file (%d bytes)", who, f.name, resp.StatusCode, len(body), len(f.data))
					}
				}
			}
			first := clientFrom(t, p, "127.0.0.2")
			download(first, "first client")

			// The access log names each file's active content.
			for _, f := range files {
				l := p.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), "/"+f.name) })
				got, _ := l["active_content"].(string)
				if got != f.active || l["scan_type"] != f.typ || l["scan_result"] != "unknown" {
					t.Errorf("%s: access line has active_content %q, scan_type %v, scan_result %v; want %q, %s, unknown",
						f.name, got, l["scan_type"], l["scan_result"], f.active, f.typ)
				}
				if l["client"] != "127.0.0.2" {
					t.Errorf("%s: client %v, want 127.0.0.2", f.name, l["client"])
				}
			}

			if tc.minClients == 2 {
				download(first, "first client, again")
				// WantSample and OfferSample run before the body's end
				// reaches the client, so these counts are final: five
				// files wait for a second client, none was taken or is
				// being written, nothing was sent.
				st := participationStatus(t, p)
				if st.SamplesWaiting != 5 || st.SamplesTaken != 0 || st.SamplesInFlight != 0 || st.QueuedSamples != 0 {
					t.Fatalf("after the first client: %d waiting, %d taken, %d in flight, %d queued; want 5, 0, 0, 0",
						st.SamplesWaiting, st.SamplesTaken, st.SamplesInFlight, st.QueuedSamples)
				}
				if got := cloud.received(); len(got) != 0 {
					t.Fatalf("after the first client the cloud received %d samples, want none", len(got))
				}
				download(clientFrom(t, p, "127.0.0.3"), "second client")
			}

			// Every sample offered is now being written, queued or sent:
			// wait until all were sent, then the counts are final.
			st := participationStatus(t, p)
			for deadline := time.Now().Add(30 * time.Second); st.SamplesInFlight > 0 || st.QueuedSamples > 0 ||
				len(cloud.received()) < int(st.SamplesTaken); st = participationStatus(t, p) {
				if time.Now().After(deadline) {
					t.Fatalf("samples not sent: %+v, the cloud has %d", st, len(cloud.received()))
				}
				time.Sleep(20 * time.Millisecond)
			}
			if st.SamplesTaken != 5 || st.SamplesDropped != 0 || st.SamplesWaiting != 0 {
				t.Errorf("samples: %d taken, %d dropped, %d waiting; want 5, 0, 0", st.SamplesTaken, st.SamplesDropped, st.SamplesWaiting)
			}
			got := map[string]recordedSample{}
			for _, r := range cloud.received() {
				got[r.meta.SHA256] = r
			}
			var gotNames, wantNames []string
			for _, f := range files {
				sum := sha256.Sum256(f.data)
				r, ok := got[hex.EncodeToString(sum[:])]
				if ok {
					gotNames = append(gotNames, f.name)
				}
				if f.active == "" {
					continue
				}
				wantNames = append(wantNames, f.name)
				if !ok {
					continue
				}
				want := stats.SampleMeta{SHA256: hex.EncodeToString(sum[:]), Type: f.typ, Size: int64(len(f.data)), Reason: f.active}
				if r.meta != want || !bytes.Equal(r.body, f.data) {
					t.Errorf("%s: received %+v with %d bytes; want %+v and the whole file", f.name, r.meta, len(r.body), want)
				}
			}
			sort.Strings(gotNames)
			sort.Strings(wantNames)
			if strings.Join(gotNames, " ") != strings.Join(wantNames, " ") || len(cloud.received()) != len(wantNames) {
				t.Errorf("the cloud received %d samples %v, want %v", len(cloud.received()), gotNames, wantNames)
			}
		})
	}
}

// TestStatsPreviewListsSamples: "picket stats preview" lists the queued
// samples (hash, type, size, whole or first bytes, reason) on stderr, never
// their content, and stdout stays the batch byte for byte.
func TestStatsPreviewListsSamples(t *testing.T) {
	c := startStatsCloud(t)
	path := filepath.Join(t.TempDir(), "config.toml")
	body := fmt.Sprintf("[reputation]\nmode = \"ksn\"\n[reputation.ksn]\nserver = %q\nparticipation = true\nsamples = \"full\"\n", c.url)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	clk := testutil.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	part := startParticipation(t, f, clk)
	docm := tf.Docx{Text: "secret-body-text", Macros: true}.Bytes()
	sum := sha256.Sum256(docm)
	e := proxy.ScanEvent{Type: "ooxml", Result: "unknown", SHA256: sum[:], Size: int64(len(docm)), Active: "macros"}
	for _, a := range []string{"10.0.0.5", "10.0.0.6"} {
		part.WantSample(sampleOf(netip.MustParseAddr(a), e))
	}
	part.OfferSample(sampleOf(netip.Addr{}, e), bytes.NewReader(docm))
	deadline := time.Now().Add(10 * time.Second)
	for part.Status().QueuedSamples != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"stats", "preview", "-config", path}, &out, &errb); code != 0 {
		t.Fatalf("stats preview: exit %d: %s", code, errb.String())
	}
	want := fmt.Sprintf("%x  ooxml  %d  whole  macros", sum, len(docm))
	if !strings.Contains(errb.String(), "1 samples queued") || !strings.Contains(strings.Join(strings.Fields(errb.String()), "  "), want) {
		t.Errorf("preview's sample list: want %q in\n%s", want, errb.String())
	}
	if strings.Contains(out.String()+errb.String(), "secret-body-text") || strings.Contains(out.String(), hex.EncodeToString(sum[:])) {
		t.Errorf("preview shows the sample's content, or lists it in the batch:\n%s\n%s", out.String(), errb.String())
	}
	if err := part.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := c.received(); len(got) != 1 || !bytes.Equal(got[0].body, docm) {
		t.Errorf("sent samples: got %d, want the .docm", len(got))
	}
}

// TestReloadToKPSNSendsNothing: a Picket in KSN mode with participation
// and samples on is reloaded into KPSN mode (the reload applies
// [reputation], the mode included). From then on nothing may leave: an
// unknown executable downloaded afterwards is not sampled, and the
// participation status no longer says it is sending.
func TestReloadToKPSNSendsNothing(t *testing.T) {
	exe := tf.PE(t.Name(), 5000)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(exe)
	}))
	defer origin.Close()
	cloud := startStatsCloud(t)
	ksn := fmt.Sprintf("[reputation.ksn]\nserver = %q\nparticipation = true\nsamples = \"full\"\nsamples_max_size = \"64KiB\"\nsamples_min_clients = 1\n", cloud.url)
	path := writeConfig(t, "[reputation]\nmode = \"ksn\"\n"+ksn)
	p := startPicketAt(t, path)
	if st := participationStatus(t, p); !st.Sending {
		t.Fatalf("KSN with participation on: status %+v, want sending", st)
	}

	// The same file, in KPSN mode.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(`mode = "ksn"`), []byte(`mode = "kpsn"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := os.ReadFile(filepath.Join(p.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := post(t, "http://"+adminAddr(t, p)+"/api/v1/reload", strings.TrimSpace(string(tok))); resp.StatusCode != 200 {
		t.Fatalf("reload: got %d %s", resp.StatusCode, body)
	}
	var status admin.Status
	if _, body := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/api/v1/status", nil); json.Unmarshal([]byte(body), &status) != nil || !strings.HasPrefix(status.Mode, "kpsn ") {
		t.Errorf("status after the reload into KPSN mode: mode %q, want kpsn (...)", status.Mode)
	}

	resp, body := fetch(t, clientFrom(t, p, "127.0.0.2"), origin.URL+"/update.exe", nil)
	if resp.StatusCode != 200 || body != string(exe) {
		t.Fatalf("download: got %d and %d bytes, want 200 and %d", resp.StatusCode, len(body), len(exe))
	}
	p.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), "/update.exe") })
	// WantSample and OfferSample ran before the body reached the client:
	// wait for anything taken to be written and sent.
	st := participationStatus(t, p)
	for deadline := time.Now().Add(10 * time.Second); st.SamplesInFlight > 0 || st.QueuedSamples > 0 ||
		len(cloud.received()) < int(st.SamplesTaken); st = participationStatus(t, p) {
		if time.Now().After(deadline) {
			t.Fatalf("samples not settled: %+v", st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := cloud.received(); len(got) != 0 || st.SamplesTaken != 0 {
		t.Errorf("after the reload into KPSN mode: %d samples taken, the KSN cloud received %d; want none", st.SamplesTaken, len(got))
	}
	if st.Sending {
		t.Errorf("after the reload into KPSN mode: status says sending")
	}
}
