package main

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tf "github.com/picket-proxy/picket/internal/testfiles"
)

const eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// peFile is a small file with PE magic and pseudo-random content.
func peFile(seed uint64, n int) []byte {
	var s [32]byte
	s[0] = byte(seed)
	b := make([]byte, n)
	rand.NewChaCha8(s).Read(b)
	copy(b, "MZ\x90\x00")
	return b
}

// downloadOrigin serves fixed objects, some Content-Encoded.
type object struct {
	body     []byte
	ctype    string
	encoding string
}

func downloadOrigin(t *testing.T, objs map[string]object) *httptest.Server {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, ok := objs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", o.ctype)
		if o.encoding != "" {
			w.Header().Set("Content-Encoding", o.encoding)
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(o.body)))
		w.Write(o.body)
	})
	return httptest.NewServer(h)
}

// TestDownloadScanning runs Picket's scanner on real downloads over HTTP and
// over intercepted HTTPS, in buffer and trickle modes.
func TestDownloadScanning(t *testing.T) {
	detected := peFile(1, 50000)
	cleared := peFile(2, 40000)
	reputationClean := peFile(3, 30000)
	renamed := peFile(4, 20000)
	sigDir := t.TempDir()
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
	os.WriteFile(filepath.Join(sigDir, "test.hsb"), []byte(fmt.Sprintf("%s:%d:Test.Detected\n%s:%d:Test.Cleared\n%s:%d:Test.RepClean\n%s:%d:Test.Renamed\n",
		sum(detected), len(detected), sum(cleared), len(cleared), sum(reputationClean), len(reputationClean), sum(renamed), len(renamed))), 0o644)
	os.WriteFile(filepath.Join(sigDir, "test.fp"), []byte(fmt.Sprintf("%s:%d:Test.KnownGood\n", sum(cleared), len(cleared))), 0o644)

	objs := map[string]object{
		"/eicar.com":        {[]byte(eicar), "application/octet-stream", ""},
		"/eicar.zip":        {tf.Zip(tf.Member{Name: "eicar.com", Data: []byte(eicar)}), "application/zip", ""},
		"/eicar-nested.zip": {tf.Zip(tf.Member{Name: "inner.zip", Data: tf.Zip(tf.Member{Name: "eicar.com", Data: []byte(eicar)})}), "application/zip", ""},
		"/eicar-gz.txt":     {tf.Gzip("", []byte(eicar)), "text/plain", "gzip"},
		"/detected.exe":     {detected, "application/octet-stream", ""},
		"/cleared.exe":      {cleared, "application/octet-stream", ""},
		"/repclean.exe":     {reputationClean, "application/octet-stream", ""},
		"/holiday.jpg":      {renamed, "image/jpeg", ""},
		"/page.html":        {[]byte("<!doctype html><p>" + eicar + "</p>"), "text/html", ""},
	}
	origin := downloadOrigin(t, objs)
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(origin.Config.Handler)
	defer tlsOrigin.Close()
	originPEM := filepath.Join(t.TempDir(), "origin.pem")
	os.WriteFile(originPEM, pemOf(tlsOrigin.Certificate()), 0o644)

	for _, mode := range []string{"buffer", "trickle"} {
		t.Run(mode, func(t *testing.T) {
			p := startPicket(t, fmt.Sprintf(`[tls]
extra_roots = [%q]
[scanner]
mode = %q
signatures = [%q, %q]
[reputation]
allow = [%q]
`, originPEM, mode, filepath.Join(sigDir, "*.hsb"), filepath.Join(sigDir, "*.fp"), sum(reputationClean)))
			c := p.client(t)
			for _, base := range []string{origin.URL, tlsOrigin.URL} {
				for _, tc := range []struct {
					path    string
					blocked bool
					threat  string
				}{
					{"/eicar.com", true, "EICAR"},
					{"/eicar.zip", true, "EICAR"},
					{"/eicar-nested.zip", true, "EICAR"},
					{"/eicar-gz.txt", true, "EICAR"},
					{"/detected.exe", true, "Test.Detected"},
					{"/holiday.jpg", true, "Test.Renamed"},
					{"/cleared.exe", false, ""},
					{"/repclean.exe", false, ""},
					{"/page.html", false, ""},
				} {
					t.Run(strings.TrimPrefix(base, "http")+tc.path, func(t *testing.T) {
						resp, err := c.Get(base + tc.path)
						var body []byte
						if err == nil {
							body, err = io.ReadAll(resp.Body)
							resp.Body.Close()
						}
						want := objs[tc.path].body
						if !tc.blocked {
							if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
								t.Fatalf("clean download: status %v err %v, %d bytes (want %d, intact %v)",
									statusOf(resp), err, len(body), len(want), bytes.Equal(body, want))
							}
							return
						}
						if bytes.Equal(body, want) {
							t.Fatalf("the client received the complete malicious file (mode %s)", mode)
						}
						switch {
						case mode == "buffer":
							if err != nil || resp.StatusCode != 403 || !strings.Contains(string(body), "malware") {
								t.Errorf("want the block page, got %v %v %q", statusOf(resp), err, body)
							}
						case err == nil && resp.StatusCode == 200:
							t.Errorf("trickle: the transfer ended without an error (%d of %d bytes)", len(body), len(want))
						}
						l := p.waitAccess(t, func(l map[string]any) bool {
							u, _ := l["url"].(string)
							return strings.HasSuffix(u, tc.path) && strings.HasPrefix(u, base) && l["scan_result"] != nil
						})
						if th, _ := l["threat"].(string); !strings.Contains(th, tc.threat) || l["action"] != "block" {
							t.Errorf("access line: %v, want action block and threat %s", l, tc.threat)
						}
					})
				}
			}
		})
	}
}

func statusOf(resp *http.Response) any {
	if resp == nil {
		return nil
	}
	return resp.StatusCode
}

// zipBomb is a zip whose one member inflates 64 MiB of zeros from ~64 KiB.
func zipBomb(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, err := zw.Create("zeros.bin")
	if err != nil {
		t.Fatal(err)
	}
	zero := make([]byte, 1<<20)
	for range 64 {
		w.Write(zero)
	}
	zw.Close()
	return b.Bytes()
}

// TestLargeAndHostileDownloads: a 200 MiB scannable download passes intact
// in both modes (beyond max_size it is passed on unscanned, as configured),
// and a zip bomb is blocked without being expanded.
func TestLargeAndHostileDownloads(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 400 MiB")
	}
	const size = 200 << 20
	// 1 MiB of pseudo-random bytes repeated, each copy stamped with its
	// index so that a misplaced block would change the hash.
	big := bytes.Repeat(peFile(9, 1<<20), size>>20)
	for i := 1; i < size>>20; i++ {
		copy(big[i<<20:], fmt.Sprintf("block %d", i))
	}
	want := sha256.Sum256(big)
	bomb := zipBomb(t)
	origin := downloadOrigin(t, map[string]object{
		"/big.exe":  {big, "application/octet-stream", ""},
		"/bomb.zip": {bomb, "application/zip", ""},
	})
	defer origin.Close()
	for _, mode := range []string{"buffer", "trickle"} {
		t.Run(mode, func(t *testing.T) {
			p := startPicket(t, fmt.Sprintf("[scanner]\nmode = %q\n", mode))
			c := p.client(t)
			resp, err := c.Get(origin.URL + "/big.exe")
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			n, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			if err != nil || n != size || [32]byte(h.Sum(nil)) != want {
				t.Fatalf("200 MiB download: %d bytes, err %v, intact %v", n, err, [32]byte(h.Sum(nil)) == want)
			}
			resp, err = c.Get(origin.URL + "/bomb.zip")
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if rerr == nil && resp.StatusCode == 200 && bytes.Equal(b, bomb) {
					t.Fatalf("the archive bomb was delivered")
				}
			}
			l := p.waitAccess(t, func(l map[string]any) bool {
				u, _ := l["url"].(string)
				return strings.HasSuffix(u, "/bomb.zip")
			})
			if l["scan_result"] != "bomb" || l["action"] != "block" {
				t.Errorf("bomb access line: %v", l)
			}
		})
	}
}
