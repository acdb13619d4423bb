package proxy

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

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
			resp, body := get(t, tp.client(t), origin.URL+"/notes.txt", nil)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "EICAR-STANDARD") {
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
			var hdr map[string]string
			if tt.rng != "" {
				hdr = map[string]string{"Range": tt.rng}
			}
			resp, body := get(t, tp.client(t), origin.URL+tt.path, hdr)
			if resp.StatusCode != http.StatusForbidden || strings.Contains(body, "EICAR-STANDARD") {
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

// TestScanZstdEncoded: browsers send "Accept-Encoding: gzip, deflate, br,
// zstd", and a zstd body reaches them decoded; the scanner must see the
// file inside, as for gzip and br. The file is EICAR named notes.txt
// (classified from its decoded head) and, larger than the first bytes the
// proxy reads, a PE named "download" that a hash signature detects.
func TestScanZstdEncoded(t *testing.T) {
	pe, _ := io.ReadAll(randReader(11, 300<<10))
	copy(pe, "MZ\x90\x00")
	pe = append(pe, bytes.Repeat([]byte("padding that compresses "), 20000)...)
	zstdOf := func(b []byte) []byte {
		zw, _ := zstd.NewWriter(nil)
		defer zw.Close()
		return zw.EncodeAll(b, nil)
	}
	objs := map[string][]byte{"/notes.txt": zstdOf([]byte(eicarFile)), "/download": zstdOf(pe)}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "zstd") {
			w.Header().Set("Content-Encoding", "zstd")
			w.Write(objs[r.URL.Path])
			return
		}
		t.Errorf("%s: the origin was not offered zstd", r.URL.Path)
	}))
	defer origin.Close()
	sigs := &scanner.Signatures{}
	var rep scanner.SignatureReport
	if err := sigs.Parse("t.hsb", scanner.Detections, strings.NewReader(fmt.Sprintf("%x:%d:Test.PE\n", sha256.Sum256(pe), len(pe))), &rep); err != nil {
		t.Fatal(err)
	}
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir(), Signatures: sigs})
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, Config{Scanner: sc})
	for _, path := range []string{"/notes.txt", "/download"} {
		t.Run(path, func(t *testing.T) {
			resp, body := get(t, tp.client(t), origin.URL+path, map[string]string{"Accept-Encoding": "gzip, deflate, br, zstd"})
			if resp.StatusCode != http.StatusForbidden {
				zr, _ := zstd.NewReader(strings.NewReader(body))
				defer zr.Close()
				got, _ := io.ReadAll(zr)
				t.Errorf("got %d %s, %d bytes that decode to %d (the file intact: %v), want the block page",
					resp.StatusCode, resp.Header.Get("Content-Encoding"), len(body), len(got), bytes.Equal(got, objsPlain(path, pe)))
			}
		})
	}
}

// objsPlain is TestScanZstdEncoded's file at path, before encoding.
func objsPlain(path string, pe []byte) []byte {
	if path == "/download" {
		return pe
	}
	return []byte(eicarFile)
}

// TestScanGzipPaddedHeader: a gzip body whose header carries a long file
// name, comment or extra field decodes in curl (zlib) as in browsers, but
// not in Go's compress/gzip, and its first decoded byte may lie past the
// bytes the proxy reads to classify it. The download is scanned all the
// same: blocked, the EICAR file inside named notes.txt.
func TestScanGzipPaddedHeader(t *testing.T) {
	gzipWith := func(name, comment string, extra []byte) []byte {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Name, zw.Comment, zw.Extra = name, comment, extra
		zw.Write([]byte(eicarFile))
		zw.Close()
		return b.Bytes()
	}
	bodies := map[string][]byte{
		"/name/notes.txt":    gzipWith(strings.Repeat("n", 10000), "", nil),
		"/comment/notes.txt": gzipWith("", strings.Repeat("c", 20000), nil),
		"/extra/notes.txt":   gzipWith("", "", bytes.Repeat([]byte("XY\x04\x00abcd"), 6000)),
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(bodies[r.URL.Path])
	}))
	defer origin.Close()
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, Config{Scanner: sc})
	for path := range bodies {
		t.Run(path, func(t *testing.T) {
			// A real client decodes it: curl --compressed, straight from
			// the origin, gets the file.
			if curl, err := exec.LookPath("curl"); err != nil {
				t.Fatalf("curl: %v", err)
			} else if out, err := exec.Command(curl, "-sS", "--compressed", "--noproxy", "*", origin.URL+path).Output(); err != nil || !strings.Contains(string(out), "EICAR-STANDARD") {
				t.Fatalf("curl --compressed straight from the origin: %v, %q (want the EICAR file)", err, out)
			}
			resp, body := get(t, tp.client(t), origin.URL+path, map[string]string{"Accept-Encoding": "gzip"})
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("through the proxy: got %d, %d bytes, want the block page", resp.StatusCode, len(body))
			}
		})
	}
}
