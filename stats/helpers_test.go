package stats

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/reputation/server"
)

// received is one request a test cloud server got, body decompressed.
type received struct {
	path   string
	header http.Header
	body   []byte
}

// cloud is a real cloud repserver on loopback with an Intake, recording
// every request it receives.
type cloud struct {
	http   *httptest.Server
	intake *Intake
	dir    string
	mu     sync.Mutex
	reqs   []received
}

func (c *cloud) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]received(nil), c.reqs...)
}

func (c *cloud) paths(path string) []received {
	var out []received
	for _, r := range c.all() {
		if r.path == path {
			out = append(out, r)
		}
	}
	return out
}

func startCloud(t testing.TB) *cloud {
	t.Helper()
	c := &cloud{dir: t.TempDir()}
	var err error
	if c.intake, err = NewIntake(IntakeConfig{Dir: c.dir}, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Role: server.RoleCloud, Feeds: testutil.CopyFeeds(t), Poll: -1, Intake: c.intake, Token: "tok"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	h := srv.Handler()
	c.http = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		body := raw
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(raw))
			if err == nil {
				body, _ = io.ReadAll(zr)
			}
		}
		c.mu.Lock()
		c.reqs = append(c.reqs, received{r.URL.Path, r.Header.Clone(), body})
		c.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(raw))
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(c.http.Close)
	return c
}

// newClock is the tests' clock, stopped at a fixed time.
func newClock() *testutil.Clock {
	return testutil.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
}

// testConfig is a KSN configuration against c with participation as given.
func testConfig(t testing.TB, c *cloud, clk *testutil.Clock, dir string, file Settings) Config {
	cfg := Config{KSN: true, Token: "tok", File: file, Interval: time.Hour, QueueDir: filepath.Join(dir, "participation"),
		StateFile: filepath.Join(dir, "participation.json"), QueueMax: 4, MinClients: 1, Version: "test", Now: clk.Now,
		SamplesMaxSize: 1024, SamplesMinClients: 1}
	if c != nil {
		cfg.Server = c.http.URL
	}
	return cfg
}

func newParticipation(t testing.TB, cfg Config, log zerolog.Logger) *Participation {
	t.Helper()
	p, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func httpRequest(url, body, sample string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer tok")
	if sample != "" {
		req.Header.Set(HeaderSample, sample)
	}
	return req, nil
}
