package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/avtest"
	tf "github.com/picket-proxy/picket/internal/testfiles"
	"github.com/picket-proxy/picket/internal/testutil"
)

// eicarTestFile is the EICAR test file as a person would save it.
const eicarTestFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// upload sends body with method to u through c, chunked (no length) if
// asked, and returns the answer.
func upload(t *testing.T, c *http.Client, method, u, ctype string, body []byte, chunked bool) (*http.Response, string) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = struct{ io.Reader }{rd}
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// uploadOrigins starts a plain and a TLS sink, and returns the extra_roots
// line that makes Picket trust the TLS one.
func uploadOrigins(t *testing.T) (plain, tlsSink *testutil.Sink, plainURL, tlsURL, tlsSection string) {
	t.Helper()
	plain, tlsSink = testutil.NewSink(), testutil.NewSink()
	ps := httptest.NewServer(plain)
	t.Cleanup(ps.Close)
	ts := httptest.NewTLSServer(tlsSink)
	t.Cleanup(ts.Close)
	pemFile := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ts.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	return plain, tlsSink, ps.URL, ts.URL, fmt.Sprintf("[tls]\nextra_roots = [%q]\n", pemFile)
}

// TestUploadsThroughEngines uploads through Picket with clamd and with
// c-icap (REQMOD) as the engine: a file only the engine knows (a body
// signature inside a PE; a file by its MD5), as the body (Content-Length,
// chunked) and inside a form sent by curl -F, over plain HTTP and
// intercepted HTTPS, is
// blocked with the block page naming the engine and never reaches the
// origin; EICAR in a form is blocked by Picket's own check; clean files
// reach the origin byte for byte with their framing, from Go and from curl.
func TestUploadsThroughEngines(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (make test installs it): ", err)
	}
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
	ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
	plain, tlsSink, plainURL, tlsURL, tlsSection := uploadOrigins(t)
	dir := t.TempDir()
	infected := withAt(51, 300<<10, 100<<10)
	clean := peFile(52, 2<<20)
	files := map[string][]byte{"infected.exe": infected, "clean.exe": clean, "eicar.com": []byte(eicarTestFile),
		"detected.exe": engineDetected}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const threat = "Picket.Test.Body.UNOFFICIAL"

	for _, e := range []struct{ name, section string }{
		// uploads = "on" makes clamd scan uploads; a REQMOD service turns
		// them on by itself (uploads = "auto", the default).
		{"clamd", fmt.Sprintf("[scanner]\nsignatures = []\nuploads = \"on\"\n[scanner.clamd]\naddress = %q\n", "unix:"+d.Socket)},
		{"icap", fmt.Sprintf("[scanner]\nsignatures = []\n[scanner.icap]\nreqmod_url = %q\n", ic.URL)},
	} {
		t.Run(e.name, func(t *testing.T) {
			p := startPicket(t, tlsSection+e.section)
			c := p.client(t)
			n := 0
			check := func(t *testing.T, sink *testutil.Sink, path string, status int, page string, want []byte, chunked bool, threat, rule string) {
				t.Helper()
				l := p.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), path) })
				got, reached := sink.Received(path)
				if threat == "" {
					if status != 200 || !reached || !bytes.Equal(got.Body, want) || got.Chunked != chunked {
						t.Errorf("clean upload: %d %.200q; origin reached %v with %d bytes (want %d, identical %v, chunked %v want %v); access %v",
							status, page, reached, len(got.Body), len(want), bytes.Equal(got.Body, want), got.Chunked, chunked, l)
					}
					return
				}
				if reached {
					t.Errorf("the origin received the infected upload (%d bytes)", len(got.Body))
				}
				if status != 403 || !strings.Contains(page, threat) || !strings.Contains(page, fmt.Sprint(l["incident"])) {
					t.Errorf("got %d %.400q, want the block page naming %s and incident %v", status, page, threat, l["incident"])
				}
				if l["action"] != "block" || l["rule"] != rule || l["upload_threat"] != threat || l["upload_result"] != "malicious" {
					t.Errorf("access line %v, want a block by %s naming %s", l, rule, threat)
				}
			}
			for _, tc := range []struct {
				name    string
				base    string
				sink    *testutil.Sink
				body    []byte
				chunked bool
				threat  string
			}{
				{"plain, infected", plainURL, plain, infected, false, threat},
				{"plain, infected, chunked", plainURL, plain, infected, true, threat},
				{"intercepted, infected", tlsURL, tlsSink, infected, false, threat},
				{"intercepted, infected, chunked", tlsURL, tlsSink, infected, true, threat},
				{"plain, clean", plainURL, plain, clean, false, ""},
				{"intercepted, clean, chunked", tlsURL, tlsSink, clean, true, ""},
			} {
				t.Run("go "+tc.name, func(t *testing.T) {
					n++
					path := fmt.Sprintf("/%s/go/%d", e.name, n)
					resp, page := upload(t, c, http.MethodPut, tc.base+path, "application/octet-stream", tc.body, tc.chunked)
					check(t, tc.sink, path, resp.StatusCode, page, tc.body, tc.chunked, tc.threat, "scanner.upload."+e.name)
				})
			}
			for _, tc := range []struct {
				name   string
				base   string
				sink   *testutil.Sink
				args   []string
				want   []byte // the clean body the origin must get; nil for a form
				threat string
				rule   string
			}{
				{"-F infected", plainURL, plain, []string{"-F", "file=@" + filepath.Join(dir, "infected.exe")}, nil, threat, "scanner.upload." + e.name},
				// Known to the engine by its MD5 only: found because each file
				// of a form goes to the engine on its own.
				{"-F by MD5, intercepted", tlsURL, tlsSink, []string{"-F", "note=hello", "-F", "file=@" + filepath.Join(dir, "detected.exe")},
					nil, "Picket.Test.MD5.UNOFFICIAL", "scanner.upload." + e.name},
				{"-F eicar, intercepted", tlsURL, tlsSink, []string{"-F", "file=@" + filepath.Join(dir, "eicar.com")}, nil, "EICAR-Test-File", "scanner.upload.eicar"},
				{"--data-binary clean, chunked", plainURL, plain, []string{"--data-binary", "@" + filepath.Join(dir, "clean.exe"),
					"-H", "Transfer-Encoding: chunked", "-H", "Content-Type: application/octet-stream"}, clean, "", ""},
				{"--data-binary clean, intercepted", tlsURL, tlsSink, []string{"--data-binary", "@" + filepath.Join(dir, "clean.exe"),
					"-H", "Content-Type: application/octet-stream"}, clean, "", ""},
			} {
				t.Run("curl "+tc.name, func(t *testing.T) {
					n++
					path := fmt.Sprintf("/%s/curl/%d", e.name, n)
					args := append([]string{"-sS", "--max-time", "20", "--noproxy", "", "--cacert", p.caFile, "-x", "http://" + p.addr,
						"-o", "-", "-w", "\n%{http_code}"}, tc.args...)
					out, err := exec.Command(curl, append(args, tc.base+path)...).CombinedOutput()
					if err != nil {
						t.Fatalf("curl: %v: %s", err, out)
					}
					i := bytes.LastIndexByte(out, '\n')
					var status int
					fmt.Sscan(string(out[i+1:]), &status)
					check(t, tc.sink, path, status, string(out[:i]), tc.want, strings.Contains(strings.Join(tc.args, " "), "chunked"), tc.threat, tc.rule)
				})
			}
			if st := engineStatus(t, p, e.name); st["detections"].(float64) < 1 {
				t.Errorf("engine status %v, want the upload detections counted", st)
			}
		})
	}
}

// TestUploadEngineDown: with clamd stopped, an upload is forwarded intact
// under fail = "open" and blocked, never forwarded, under fail = "closed".
func TestUploadEngineDown(t *testing.T) {
	for _, fail := range []string{"open", "closed"} {
		t.Run("fail "+fail, func(t *testing.T) {
			d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
			plain, _, plainURL, _, _ := uploadOrigins(t)
			p := startPicket(t, fmt.Sprintf("[scanner]\nsignatures = []\nuploads = \"on\"\n[scanner.clamd]\naddress = %q\ntimeout = \"5s\"\nfail = %q\n", d.Socket, fail))
			d.Kill()
			body := peFile(53, 500<<10)
			resp, page := upload(t, p.client(t), http.MethodPost, plainURL+"/up", "application/octet-stream", body, false)
			got, reached := plain.Received("/up")
			l := p.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), "/up") })
			switch fail {
			case "open":
				if resp.StatusCode != 200 || !reached || !bytes.Equal(got.Body, body) {
					t.Errorf("fail open with clamd down: %d, origin reached %v with %d bytes; want the upload forwarded", resp.StatusCode, reached, len(got.Body))
				}
			case "closed":
				if resp.StatusCode != 403 || reached || !strings.Contains(page, "upload could not be checked by the anti-virus engine (clamd)") ||
					l["rule"] != "scanner.upload.clamd" || l["upload_result"] != "error" {
					t.Errorf("fail closed with clamd down: %d %.300q, origin reached %v, access %v; want the block page, nothing forwarded", resp.StatusCode, page, reached, l)
				}
			}
		})
	}
}

// TestUploadsNeverSampled: with participation and samples on (KSN mode,
// samples_min_clients = 1), an infected upload and an unknown executable
// uploaded by two clients are never sent as samples, and their hashes are
// never looked up: no request to the cloud carries their prefix. The same
// kind of executable downloaded is looked up and sent, so the recorder
// sees what would leak.
func TestUploadsNeverSampled(t *testing.T) {
	cloud := startStatsCloud(t)
	plain, _, plainURL, _, _ := uploadOrigins(t)
	downloaded := tf.PE("downloaded "+t.Name(), 5000)
	dl := downloadOrigin(t, map[string]object{"/update.exe": {downloaded, "application/octet-stream", ""}})
	defer dl.Close()
	p := startPicketAt(t, writeConfig(t, fmt.Sprintf(`[scanner]
uploads = "on"
[reputation]
mode = "ksn"
[reputation.ksn]
server = %q
participation = true
samples = "full-or-part"
samples_max_size = "64KiB"
samples_min_clients = 1
`, cloud.url)))
	uploaded := tf.PE("uploaded "+t.Name(), 5000)
	form, formType := multipartOf(t, "tool.exe", uploaded)
	for i, local := range []string{"127.0.0.2", "127.0.0.3"} {
		c := clientFrom(t, p, local)
		for j, u := range []struct {
			body        []byte
			ctype       string
			wantBlocked bool
		}{{[]byte(eicarTestFile), "application/octet-stream", true}, {uploaded, "application/octet-stream", false}, {form, formType, false}} {
			path := fmt.Sprintf("/up/%d/%d", i, j)
			resp, _ := upload(t, c, http.MethodPost, plainURL+path, u.ctype, u.body, false)
			if _, reached := plain.Received(path); (resp.StatusCode == 403) != u.wantBlocked || reached == u.wantBlocked {
				t.Fatalf("upload %s: %d, reached the origin %v; want blocked %v", path, resp.StatusCode, reached, u.wantBlocked)
			}
		}
		if resp, body := fetch(t, c, dl.URL+"/update.exe", nil); resp.StatusCode != 200 || body != string(downloaded) {
			t.Fatalf("download: %d", resp.StatusCode)
		}
	}
	// The download's sample shows the pipeline works; wait for it.
	dsum := sha256.Sum256(downloaded)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if got := cloud.received(); len(got) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the downloaded executable was never sent as a sample: the test cannot see samples")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range cloud.received() {
		if r.meta.SHA256 != hex.EncodeToString(dsum[:]) {
			t.Errorf("the cloud received a sample %+v, want only the download's", r.meta)
		}
	}
	cloud.mu.Lock()
	reqs := strings.Join(cloud.reqs, "\n")
	cloud.mu.Unlock()
	if !strings.Contains(reqs, hex.EncodeToString(dsum[:4])) {
		t.Errorf("no lookup of the download's hash prefix %x: the test cannot see lookups", dsum[:4])
	}
	for name, b := range map[string][]byte{"eicar": []byte(eicarTestFile), "uploaded executable": uploaded, "form": form} {
		sum := sha256.Sum256(b)
		if strings.Contains(reqs, hex.EncodeToString(sum[:4])) {
			t.Errorf("a request to the cloud carries the %s upload's hash prefix %x", name, sum[:4])
		}
	}
}

// multipartOf is a multipart/form-data body with one file, and its type.
func multipartOf(t *testing.T, name string, data []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	fw, err := w.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}
