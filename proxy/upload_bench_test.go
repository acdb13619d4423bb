package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"testing"

	"github.com/picket-proxy/picket/internal/avtest"
	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/clamd"
)

// BenchmarkProxyUpload is the cost of upload scanning: keep-alive POSTs
// through the proxy to an origin that discards them, with uploads not
// scanned, scanned by Picket's own checks, and also by a real clamd (when
// installed), at two body sizes. Compare the ns/op of the rows of one run.
func BenchmarkProxyUpload(b *testing.B) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	b.Cleanup(origin.Close)
	var engines []scanner.EngineConfig
	modes := []string{"off", "local"}
	if d := startBenchClamd(b); d != "" {
		c, err := clamd.New(clamd.Config{Address: d, HealthInterval: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		engines = []scanner.EngineConfig{{Engine: c}}
		modes = append(modes, "clamd")
	}
	for _, size := range []int{4 << 10, 1 << 20} {
		body, _ := io.ReadAll(randReader(uint64(size), int64(size)))
		for _, mode := range modes {
			b.Run(fmt.Sprintf("%dKiB/%s", size>>10, mode), func(b *testing.B) {
				cfg := scanner.Config{TempDir: b.TempDir(), CacheTTL: -1} // no verdict cache: every body is judged
				if mode == "clamd" {
					cfg.Engines = engines
				}
				sc, err := scanner.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				tp := startProxy(b, Config{Scanner: sc, ScanUploads: mode != "off"})
				tr := &http.Transport{Proxy: http.ProxyURL(tp.url), MaxIdleConnsPerHost: 8}
				defer tr.CloseIdleConnections()
				c := &http.Client{Transport: tr}
				b.ReportAllocs()
				b.SetBytes(int64(size))
				b.ResetTimer()
				for range b.N {
					resp, err := c.Post(origin.URL, "application/octet-stream", bytes.NewReader(body))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Fatalf("status %d", resp.StatusCode)
					}
				}
				b.StopTimer()
				st := sc.Stats()
				if mode != "off" && st.Scans < uint64(b.N) || mode == "clamd" && st.Engines[0].Scans < uint64(b.N) {
					b.Fatalf("%d bodies judged (%+v), want %d: the row did not measure scanning", st.Scans, st.Engines, b.N)
				}
			})
		}
	}
}

// startBenchClamd starts clamd with a signature database that matches
// nothing and returns its socket, or "" when clamd is not installed (the
// clamd rows are then left out, not the benchmark).
func startBenchClamd(b *testing.B) string {
	if _, err := exec.LookPath("clamd"); err != nil {
		if _, err := os.Stat("/usr/sbin/clamd"); err != nil {
			return ""
		}
	}
	d := avtest.StartClamd(b, avtest.ClamdOptions{Signatures: map[string]string{"none.ndb": avtest.NDB("Picket.Bench", []byte("PICKET-BENCH-NEVER-THERE"))}})
	return d.Socket
}
