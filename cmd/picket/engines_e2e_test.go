package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/avtest"
	tf "github.com/picket-proxy/picket/internal/testfiles"
)

// Test files for the engines: the .hdb names the whole detected file by
// MD5, the .ndb finds a byte pattern anywhere, also inside archives (clamd
// opens them; Picket's own checks know neither).
var (
	engineDetected = append(peFile(21, 30000), "picket engine test: detected by MD5"...)
	engineBodySig  = []byte("PICKET-E2E-BODY-SIGNATURE-5b7e")
)

func engineSignatures() map[string]string {
	return map[string]string{
		"test.hdb": avtest.HDB("Picket.Test.MD5", engineDetected),
		"test.ndb": avtest.NDB("Picket.Test.Body", engineBodySig),
	}
}

// withAt returns a PE of n bytes with the body signature at offset at.
func withAt(seed uint64, n, at int) []byte {
	b := peFile(seed, n)
	copy(b[at:], engineBodySig)
	return b
}

// TestEnginesBlock downloads through Picket with clamd and with c-icap as
// its engine, in buffer and trickle modes: detections by MD5 and by a body
// signature inside a zip (also gzip-encoded), a clean file passing intact,
// and files over clamd's StreamMaxLength (scanned up to it: a detection in
// the first part blocks, the rest passes marked partial).
func TestEnginesBlock(t *testing.T) {
	d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
	ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
	sigZip := tf.Zip(tf.Member{Name: "docs/readme.txt", Data: append([]byte("hello "), engineBodySig...)})
	objs := map[string]object{
		"/detected.exe": {engineDetected, "application/octet-stream", ""},
		"/sig.zip":      {sigZip, "application/zip", ""},
		"/sig-gz.zip":   {tf.Gzip("", sigZip), "application/zip", "gzip"},
		"/clean.exe":    {peFile(22, 2<<20), "application/octet-stream", ""},
		"/early.exe":    {withAt(23, 3<<20, 512<<10), "application/octet-stream", ""},
		"/late.exe":     {withAt(24, 3<<20, 2<<20), "application/octet-stream", ""},
	}
	origin := downloadOrigin(t, objs)
	defer origin.Close()

	type want struct {
		path    string
		blocked bool
		threat  string
		partial bool
	}
	engines := []struct {
		name, section string
		cases         []want
	}{
		{"clamd", fmt.Sprintf("[scanner.clamd]\naddress = %q\nstream_max_length = \"1MiB\"\n", "unix:"+d.Socket), []want{
			{"/detected.exe", true, "Picket.Test.MD5.UNOFFICIAL", false},
			{"/sig.zip", true, "Picket.Test.Body.UNOFFICIAL", false},
			{"/sig-gz.zip", true, "Picket.Test.Body.UNOFFICIAL", false},
			{"/clean.exe", false, "", true},
			{"/early.exe", true, "Picket.Test.Body.UNOFFICIAL", true},
			{"/late.exe", false, "", true},
		}},
		{"icap", fmt.Sprintf("[scanner.icap]\nurl = %q\n", ic.URL), []want{
			{"/detected.exe", true, "Picket.Test.MD5.UNOFFICIAL", false},
			{"/sig.zip", true, "Picket.Test.Body.UNOFFICIAL", false},
			{"/sig-gz.zip", true, "Picket.Test.Body.UNOFFICIAL", false},
			{"/clean.exe", false, "", false},
			{"/late.exe", true, "Picket.Test.Body.UNOFFICIAL", false},
		}},
	}
	for _, e := range engines {
		for _, mode := range []string{"buffer", "trickle"} {
			t.Run(e.name+"/"+mode, func(t *testing.T) {
				p := startPicket(t, fmt.Sprintf("[scanner]\nmode = %q\nsignatures = []\n%s", mode, e.section))
				c := p.client(t)
				for _, tc := range e.cases {
					t.Run(tc.path, func(t *testing.T) {
						resp, err := c.Get(origin.URL + tc.path)
						var body []byte
						if err == nil {
							body, err = io.ReadAll(resp.Body)
							resp.Body.Close()
						}
						want := objs[tc.path].body
						l := p.waitAccess(t, func(l map[string]any) bool {
							u, _ := l["url"].(string)
							return strings.HasSuffix(u, tc.path) && l["scan_result"] != nil
						})
						if !tc.blocked {
							if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, want) {
								t.Fatalf("clean download: status %v err %v, %d bytes (want %d, intact %v); access %v",
									statusOf(resp), err, len(body), len(want), bytes.Equal(body, want), l)
							}
							if l["action"] != "allow" || l["engine"] != nil || (l["scan_partial"] == true) != tc.partial {
								t.Errorf("access line %v, want allow without an engine, scan_partial %v", l, tc.partial)
							}
							return
						}
						if bytes.Equal(body, want) {
							t.Fatal("the client received the complete malicious file")
						}
						if mode == "buffer" {
							if err != nil || resp.StatusCode != 403 || !strings.Contains(string(body), tc.threat) ||
								!strings.Contains(string(body), l["incident"].(string)) || !strings.Contains(string(body), "found by "+e.name) {
								t.Errorf("want the block page naming %s, the engine and the incident %v; got %v %v %.600q", tc.threat, l["incident"], statusOf(resp), err, body)
							}
						} else if err == nil && resp.StatusCode == 200 {
							t.Errorf("trickle: the transfer ended without an error (%d of %d bytes)", len(body), len(want))
						}
						if l["action"] != "block" || l["threat"] != tc.threat || l["engine"] != e.name || l["rule"] != "scanner."+e.name {
							t.Errorf("access line %v, want action block, threat %s, engine and rule naming %s", l, tc.threat, e.name)
						}
					})
				}
				// The status counts the engine's work; a second download of
				// a file is judged from the verdict cache.
				st := engineStatus(t, p, e.name)
				if st["healthy"] != true || st["detections"].(float64) < 1 || st["scans"].(float64) < float64(len(e.cases)-1) {
					t.Errorf("engine status %v, want healthy with the scans and detections counted", st)
				}
				resp, err := c.Get(origin.URL + "/clean.exe")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if st2 := engineStatus(t, p, e.name); st2["cache_hits"].(float64) != st["cache_hits"].(float64)+1 || st2["scans"] != st["scans"] {
					t.Errorf("second download of a file: status %v, want a cache hit and no new scan", st2)
				}
				_, metrics := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/metrics", nil)
				for _, m := range []string{
					fmt.Sprintf("picket_scanner_engine_up{engine=%q,kind=%q} 1", e.name, e.name),
					fmt.Sprintf("picket_scanner_engine_detections_total{engine=%q}", e.name),
					fmt.Sprintf("picket_scanner_engine_duration_seconds_bucket{engine=%q,le=\"+Inf\"}", e.name),
				} {
					if !strings.Contains(metrics, m) {
						t.Errorf("metrics lack %s", m)
					}
				}
			})
		}
	}
}

// engineStatus returns the named engine's entry of GET /api/v1/status.
func engineStatus(t *testing.T, p *picketUnderTest, name string) map[string]any {
	t.Helper()
	_, body := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/api/v1/status", nil)
	var st struct {
		Scanner struct {
			Engines []map[string]any `json:"engines"`
		} `json:"scanner"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("status: %v: %s", err, body)
	}
	for _, e := range st.Scanner.Engines {
		if e["name"] == name {
			return e
		}
	}
	t.Fatalf("no engine %s in the status: %s", name, body)
	return nil
}

// slowOrigin serves one scannable file in two halves: the second only once
// release is closed.
func slowOrigin(t *testing.T, file []byte, release <-chan struct{}) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(file)))
		half := len(file) / 2
		w.Write(file[:half])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(30 * time.Second):
			return
		}
		w.Write(file[half:])
	}))
	t.Cleanup(s.Close)
	return s
}

// TestEngineKilledMidScan kills the engine (clamd, or c-icap) while a
// download streams into it, in trickle mode (the client has the first bytes
// already, so the engine had them too): fail open delivers the whole file,
// fail closed aborts the transfer; both within the engine's timeout.
func TestEngineKilledMidScan(t *testing.T) {
	file := peFile(31, 4<<20)
	for _, kind := range []string{"clamd", "icap"} {
		for _, fail := range []string{"open", "closed"} {
			t.Run(kind+"/fail "+fail, func(t *testing.T) {
				d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
				var section string
				var kill func()
				if kind == "clamd" {
					section = fmt.Sprintf("[scanner.clamd]\naddress = %q\ntimeout = \"5s\"\nfail = %q\n", d.Socket, fail)
					kill = d.Kill
				} else {
					ic := avtest.StartCICAP(t, d.Socket, avtest.CICAPOptions{})
					section = fmt.Sprintf("[scanner.icap]\nurl = %q\ntimeout = \"5s\"\nfail = %q\n", ic.URL, fail)
					kill = ic.Kill
				}
				release := make(chan struct{})
				origin := slowOrigin(t, file, release)
				p := startPicket(t, "[scanner]\nmode = \"trickle\"\nsignatures = []\n"+section)
				resp, err := p.client(t).Get(origin.URL + "/slow.exe")
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				first := make([]byte, 1)
				if _, err := io.ReadFull(resp.Body, first); err != nil {
					t.Fatal(err)
				}
				kill()
				close(release)
				start := time.Now()
				rest, err := io.ReadAll(resp.Body)
				el := time.Since(start)
				got := append(first, rest...)
				if fail == "open" {
					if err != nil || !bytes.Equal(got, file) {
						t.Fatalf("fail open: got %d of %d bytes (%v), want the whole file", len(got), len(file), err)
					}
				} else if err == nil || len(got) >= len(file) {
					t.Fatalf("fail closed: got %d of %d bytes and %v, want an aborted transfer", len(got), len(file), err)
				}
				if el > 5*time.Second {
					t.Errorf("the transfer ended %s after the origin's last byte, want within the 5s timeout", el)
				}
				l := p.waitAccess(t, func(l map[string]any) bool { return l["scan_result"] != nil })
				if fail == "closed" && (l["action"] != "block" || l["scan_result"] != "error" || l["engine"] != kind) {
					t.Errorf("access line %v, want a block by the failed engine %s", l, kind)
				}
				if fail == "open" && l["action"] != "allow" {
					t.Errorf("access line %v, want allow", l)
				}
			})
		}
	}
}

// TestEngineDownAndHung: with clamd stopped, Picket keeps serving (fail
// open) or blocks with its page (fail closed), and reports the engine
// unhealthy in the status and the metrics; a hung clamd (SIGSTOP) costs a
// download at most the timeout.
func TestEngineDownAndHung(t *testing.T) {
	for _, fail := range []string{"open", "closed"} {
		t.Run("stopped, fail "+fail, func(t *testing.T) {
			d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
			origin := downloadOrigin(t, map[string]object{"/a.exe": {peFile(41, 100000), "application/octet-stream", ""}})
			defer origin.Close()
			p := startPicket(t, fmt.Sprintf("[scanner]\nsignatures = []\n[scanner.clamd]\naddress = %q\ntimeout = \"5s\"\nhealth_interval = \"1s\"\nfail = %q\n", d.Socket, fail))
			if st := engineStatus(t, p, "clamd"); st["healthy"] != true || !strings.HasPrefix(st["version"].(string), "ClamAV ") {
				t.Fatalf("engine status at start %v, want healthy with ClamAV's version", st)
			}
			d.Kill()
			resp, body := fetch(t, p.client(t), origin.URL+"/a.exe", nil)
			if fail == "open" && (resp.StatusCode != 200 || len(body) != 100000) {
				t.Errorf("fail open with clamd down: got %d, %d bytes; want the file", resp.StatusCode, len(body))
			}
			if fail == "closed" && (resp.StatusCode != 403 || !strings.Contains(body, "could not be checked by the anti-virus engine (clamd)")) {
				t.Errorf("fail closed with clamd down: got %d %.300q, want the block page", resp.StatusCode, body)
			}
			deadline := time.Now().Add(20 * time.Second)
			for {
				st := engineStatus(t, p, "clamd")
				if st["healthy"] == false && st["error"] != "" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("engine status %v, want unhealthy with an error", st)
				}
				time.Sleep(50 * time.Millisecond)
			}
			_, metrics := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/metrics", nil)
			if !strings.Contains(metrics, `picket_scanner_engine_up{engine="clamd",kind="clamd"} 0`) ||
				!strings.Contains(metrics, `picket_scanner_engine_errors_total{engine="clamd"} 1`) {
				t.Errorf("metrics lack the engine down and its error")
			}
			// Other traffic is served as ever.
			if resp, body := fetch(t, p.client(t), origin.URL+"/missing", nil); resp.StatusCode != 404 {
				t.Errorf("a plain request with the engine down: %d %q", resp.StatusCode, body)
			}
		})
	}
	t.Run("hung, fail closed", func(t *testing.T) {
		d := avtest.StartClamd(t, avtest.ClamdOptions{Signatures: engineSignatures()})
		origin := downloadOrigin(t, map[string]object{"/a.exe": {peFile(42, 100000), "application/octet-stream", ""}})
		defer origin.Close()
		p := startPicket(t, fmt.Sprintf("[scanner]\nsignatures = []\n[scanner.clamd]\naddress = %q\ntimeout = \"2s\"\nfail = \"closed\"\n", d.Socket))
		d.Freeze()
		start := time.Now()
		resp, body := fetch(t, p.client(t), origin.URL+"/a.exe", nil)
		el := time.Since(start)
		if resp.StatusCode != 403 || !strings.Contains(body, "anti-virus engine (clamd)") {
			t.Errorf("got %d %.200q, want the block page", resp.StatusCode, body)
		}
		// The verdict is waited for as long as the 2s timeout, no longer
		// (the upper bound leaves room for a loaded machine).
		if el < 2*time.Second || el > 10*time.Second {
			t.Errorf("answered after %s, want after the 2s timeout", el)
		}
	})
}
