package icap

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/avtest"
	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/scanner"
)

var (
	detected = []byte("Picket ICAP test: a harmless file that the test's .hdb detects.\n")
	bodySig  = []byte("PICKET-ICAP-BODY-SIGNATURE-0d9e")
)

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = -1
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// scan streams data in pieces of at most piece bytes.
func scan(t testing.TB, c *Client, m scanner.EngineMeta, data []byte, piece int) (scanner.EngineResult, error) {
	t.Helper()
	if m.Size == 0 {
		m.Size = int64(len(data))
	}
	st := c.Open(m)
	defer st.Close()
	for len(data) > 0 {
		k := min(piece, len(data))
		if _, err := st.Write(data[:k]); err != nil {
			return scanner.EngineResult{}, err
		}
		data = data[k:]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return st.Finish(ctx)
}

// TestCICAP scans through Debian's c-icap (virus_scan backed by clamd):
// detections by preview and by the whole body, inside a zip, clean files
// answered 204 in the preview and after it, uploads by REQMOD.
func TestCICAP(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: map[string]string{
		"test.hdb": avtest.HDB("Picket.Test.MD5", detected),
		"test.ndb": avtest.NDB("Picket.Test.Body", bodySig),
	}})
	ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
	c := newClient(t, Config{URL: ic.URL, ReqmodURL: ic.URL, Timeout: 20 * time.Second})

	o, err := c.Options(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if o.Preview != 1024 || !o.Allow204 || o.ISTag == "" || !o.has("RESPMOD") || !o.has("REQMOD") || o.TTL != time.Hour {
		t.Fatalf("OPTIONS: got %+v, want Preview 1024, Allow 204, an ISTag, RESPMOD and REQMOD, TTL 1h", o)
	}
	filler := bytes.Repeat([]byte("harmless filler line\n"), 100000) // ~2 MiB
	large := append(append(bytes.Clone(filler), bodySig...), filler...)
	for _, tc := range []struct {
		name   string
		m      scanner.EngineMeta
		data   []byte
		piece  int
		threat string
	}{
		{"detected, whole body in the preview (ieof)", get("a.txt"), detected, 10, "Picket.Test.MD5.UNOFFICIAL"},
		{"clean, 204 to the preview", get("b.txt"), []byte("nothing here\n"), 3, ""},
		{"empty body", get("empty.bin"), nil, 1, ""},
		{"signature after the preview, 2 MiB", get("big.bin"), large, 32 << 10, "Picket.Test.Body.UNOFFICIAL"},
		{"clean 2 MiB, 204 after 100 Continue", get("clean.bin"), filler, 64 << 10, ""},
		{"inside a zip", get("x.zip"), tf.Zip(tf.Member{Name: "docs/readme.txt", Data: append([]byte("hi "), bodySig...)}), 100, "Picket.Test.Body.UNOFFICIAL"},
		{"upload by REQMOD, detected", upload("up.txt"), detected, 1000, "Picket.Test.MD5.UNOFFICIAL"},
		{"upload by REQMOD, clean", upload("ok.txt"), filler[:5000], 1000, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.m.Size = int64(len(tc.data))
			res, err := scan(t, c, tc.m, tc.data, tc.piece)
			if err != nil {
				t.Fatalf("got %v, want a verdict", err)
			}
			if res.Threat != tc.threat || res.Scanned != int64(len(tc.data)) || res.Skipped != "" {
				t.Fatalf("got %+v, want threat %q, %d bytes", res, tc.threat, len(tc.data))
			}
		})
	}
	if n := c.respmod.pool.Open(); n != 1 {
		t.Errorf("RESPMOD: got %d open connections after sequential requests, want 1 (reused)", n)
	}
	if c.Tag() == "" {
		t.Error("no ISTag as the engine's tag")
	}
	if err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	if h := c.Health(); !h.Healthy || h.Signatures != o.ISTag || !strings.Contains(h.Version, "C-ICAP") {
		t.Errorf("health %+v, want healthy with the ISTag and c-icap's Service", h)
	}

	// A client of the REQMOD service alone scans uploads and skips
	// downloads, healthy and tagged by that service.
	up := newClient(t, Config{ReqmodURL: ic.URL, Timeout: 20 * time.Second})
	if err := up.Check(context.Background()); err != nil || up.Tag() == "" || !up.Health().Healthy {
		t.Fatalf("REQMOD only: check %v, tag %q, health %+v; want healthy with an ISTag", err, up.Tag(), up.Health())
	}
	if res, err := scan(t, up, upload("up.txt"), detected, 1000); err != nil || res.Threat != "Picket.Test.MD5.UNOFFICIAL" {
		t.Errorf("REQMOD only, upload: got %+v %v, want the detection", res, err)
	}
	if res, err := scan(t, up, get("a.txt"), detected, 1000); err != nil || res.Threat != "" || res.Skipped == "" {
		t.Errorf("REQMOD only, download: got %+v %v, want it skipped", res, err)
	}

	// With clamd gone, c-icap answers an error: a clear error here, and an
	// unhealthy engine.
	d.Kill()
	_, err = scan(t, c, get("after.bin"), filler[:4096], 4096)
	if err == nil {
		t.Fatal("got a verdict from c-icap without its clamd")
	}
	if !strings.Contains(err.Error(), "icap") || c.Health().Healthy {
		t.Errorf("got %v (health %+v), want an icap error and an unhealthy engine", err, c.Health())
	}
}

// get describes a download of name (its size is set by scan).
func get(name string) scanner.EngineMeta {
	return scanner.EngineMeta{Method: "GET", URL: "http://downloads.example/files/" + name, Name: name, ContentType: "application/octet-stream"}
}

func upload(name string) scanner.EngineMeta {
	return scanner.EngineMeta{Method: "POST", URL: "http://uploads.example/form", Name: name, ContentType: "application/octet-stream", Upload: true}
}

// TestCICAPEmptyWrite: an empty Write in the middle of a body (io.Writer
// allows it) sends nothing. A zero-length chunk is the chunked body's end:
// c-icap judged the first bytes alone and the signature after them passed.
func TestCICAPEmptyWrite(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: map[string]string{"test.ndb": avtest.NDB("Picket.Test.Body", bodySig)}})
	ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
	c := newClient(t, Config{URL: ic.URL, Timeout: 20 * time.Second})
	data := append(bytes.Repeat([]byte("harmless filler line\n"), 200), bodySig...) // past the 1024-byte preview
	m := get("late.bin")
	m.Size = int64(len(data))
	st := c.Open(m)
	defer st.Close()
	for _, p := range [][]byte{data[:2000], nil, data[2000:]} {
		if _, err := st.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := st.Finish(ctx)
	if err != nil || res.Threat != "Picket.Test.Body.UNOFFICIAL" || res.Scanned != int64(len(data)) {
		t.Fatalf("got %+v, %v; want Picket.Test.Body.UNOFFICIAL, %d bytes", res, err, len(data))
	}
}

// TestCICAPHealthWhileBusy: with every pooled connection held by a
// download in progress, a health check still asks c-icap (on a connection
// of its own, as clamd's does) instead of waiting for a free one, timing
// out, and calling a working server down.
func TestCICAPHealthWhileBusy(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: map[string]string{"test.ndb": avtest.NDB("Picket.Test.Body", bodySig)}})
	ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
	c := newClient(t, Config{URL: ic.URL, Timeout: 2 * time.Second, MaxConnections: 2})
	data := bytes.Repeat([]byte("harmless filler line\n"), 200) // past the preview: c-icap waits for the rest
	for range 2 {
		st := c.Open(get("slow.bin"))
		defer st.Close()
		if _, err := st.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("health check with the pool busy: got %v, want c-icap's answer", err)
	}
	if h := c.Health(); !h.Healthy {
		t.Errorf("got %+v, want healthy", h)
	}
	if n := c.respmod.pool.Open(); n != 2 {
		t.Errorf("got %d pooled connections open, want the 2 downloads'", n)
	}
}
