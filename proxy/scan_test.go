package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/scanner"
)

// TestScanEICARSplitAcrossReads: the EICAR test file is recognised by its
// 68 characters whatever it is called, also when the origin sends them in
// two writes and the proxy's first read of the body has only the first
// ones, plain or gzip-encoded (the origin pauses between the writes; a
// whole first write is the control).
func TestScanEICARSplitAcrossReads(t *testing.T) {
	gz := tf.Gzip("", []byte(eicarFile))
	tests := []struct {
		name  string
		body  []byte
		enc   string
		split int
	}{
		{"whole", []byte(eicarFile), "", len(eicarFile)},
		{"20", []byte(eicarFile), "", 20},
		{"40", []byte(eicarFile), "", 40},
		{"67", []byte(eicarFile), "", 67},
		{"gzip whole", gz, "gzip", len(gz)},
		{"gzip 40", gz, "gzip", 40},
		{"gzip 60", gz, "gzip", 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", fmt.Sprint(len(tt.body)))
				if tt.enc != "" {
					w.Header().Set("Content-Encoding", tt.enc)
				}
				w.Write(tt.body[:tt.split])
				w.(http.Flusher).Flush()
				select {
				case <-time.After(300 * time.Millisecond):
				case <-r.Context().Done():
				}
				w.Write(tt.body[tt.split:])
			}))
			defer origin.Close()
			sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			tp := startProxy(t, Config{Scanner: sc})
			resp, err := tp.client(t).Get(origin.URL + "/notes.txt")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "EICAR-STANDARD") {
				t.Errorf("got %d %q, want the block page", resp.StatusCode, body)
			}
		})
	}
}

// TestScanAnyStatus: a download is scanned whatever the status that
// carries it. A client saves the body of any 2xx (and curl -o that of any
// status), so an origin that answers 203, or 206 to a Range request (here
// http.ServeContent's, the whole file for "bytes=0-"), must not get a file
// past the scanner.
func TestScanAnyStatus(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/range/eicar.com" {
			http.ServeContent(w, r, "eicar.com", time.Time{}, strings.NewReader(eicarFile))
			return
		}
		var status int
		fmt.Sscan(strings.TrimPrefix(r.URL.Path, "/status/"), &status)
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(eicarFile)))
		w.WriteHeader(status)
		io.WriteString(w, eicarFile)
	}))
	defer origin.Close()
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, Config{Scanner: sc})
	tests := []struct {
		name, path, rng string
		status          int // the origin's
	}{
		{"200", "/status/200", "", 200},
		{"201", "/status/201", "", 201},
		{"203", "/status/203", "", 203},
		{"404", "/status/404", "", 404},
		{"500", "/status/500", "", 500},
		{"206 whole", "/range/eicar.com", "bytes=0-", 206},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, origin.URL+tt.path, nil)
			if tt.rng != "" {
				req.Header.Set("Range", tt.rng)
			}
			resp, err := tp.client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "EICAR-STANDARD") {
				t.Errorf("origin's %d: got %d %q, want the block page", tt.status, resp.StatusCode, body)
			}
		})
	}
}

// TestScanPartialContentNoSample: a 206's body is scanned, but a part of a
// file is never offered as a sample (samples are whole files); the whole
// file, in a 200, is.
func TestScanPartialContentNoSample(t *testing.T) {
	pe, _ := io.ReadAll(randReader(9, 20000))
	copy(pe, "MZ\x90\x00")
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "setup.exe", time.Time{}, bytes.NewReader(pe))
	}))
	defer origin.Close()
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var offered []int64
	for _, m := range []struct {
		name string
		mode ScanMode
	}{{"buffer", ScanBuffer}, {"trickle", ScanTrickle}} {
		tp := startProxy(t, Config{Scanner: sc, ScanMode: m.mode,
			WantSample: func(netip.Addr, ScanEvent) bool { return true },
			OfferSample: func(e ScanEvent, r io.Reader) {
				n, _ := io.Copy(io.Discard, r)
				mu.Lock()
				offered = append(offered, n)
				mu.Unlock()
			}})
		for _, rng := range []string{"bytes=0-999", ""} {
			t.Run(m.name+"/"+rng, func(t *testing.T) {
				mu.Lock()
				offered = nil
				mu.Unlock()
				req, _ := http.NewRequest(http.MethodGet, origin.URL+"/setup.exe", nil)
				if rng != "" {
					req.Header.Set("Range", rng)
				}
				resp, err := tp.client(t).Do(req)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				l := tp.waitAccess(t, func(l map[string]any) bool { return l[fScanResult] != nil && l[fStatus] == float64(resp.StatusCode) })
				if l[fScanResult] != "unknown" {
					t.Errorf("access line: got %v, want scan_result unknown", l)
				}
				mu.Lock()
				defer mu.Unlock()
				want := []int64{int64(len(pe))}
				if rng != "" {
					want = nil
				}
				if fmt.Sprint(offered) != fmt.Sprint(want) {
					t.Errorf("status %d: offered samples of %v bytes, want %v", resp.StatusCode, offered, want)
				}
			})
		}
	}
}
