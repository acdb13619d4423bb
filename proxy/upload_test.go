package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/picket-proxy/picket/scanner"
)

// eicarFile is the EICAR test file, as uploaded.
const eicarFile = `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// formBody is a multipart/form-data body with a field and one file.
func formBody(t *testing.T, name string, data []byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	w.WriteField("title", "my file")
	fw, err := w.CreateFormFile("file", name)
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(data)
	w.Close()
	return b.Bytes(), w.FormDataContentType()
}

// onlyReader hides a body's length, so the client sends it chunked.
type onlyReader struct{ io.Reader }

// TestUploadScanning sends uploads through the proxy on each path that
// carries request bodies — absolute-form HTTP (goproxy), HTTP/1.1 and
// HTTP/2 inside intercepted tunnels — with Content-Length and chunked:
// clean ones reach the origin byte for byte with the client's framing;
// infected ones (EICAR as the body, in a form, chunked) get the block page
// naming the upload, its access-log line and event, and the origin never
// sees them.
func TestUploadScanning(t *testing.T) {
	clean, _ := io.ReadAll(randReader(7, 3<<20+123)) // spills past the memory threshold in tests below
	form, formType := formBody(t, "eicar.com", []byte(eicarFile))
	cleanForm, cleanFormType := formBody(t, "report.bin", clean[:100000])
	bodies := []struct {
		name    string
		body    []byte
		ctype   string
		chunked bool
		threat  string // "" for a clean upload
		member  string
	}{
		{"clean", clean, "application/octet-stream", false, "", ""},
		{"clean chunked", clean, "application/octet-stream", true, "", ""},
		{"clean form", cleanForm, cleanFormType, false, "", ""},
		{"eicar", []byte(eicarFile), "application/octet-stream", false, scanner.EICARName, ""},
		{"eicar chunked", []byte(eicarFile), "application/octet-stream", true, scanner.EICARName, ""},
		{"eicar in a form", form, formType, true, scanner.EICARName, "eicar.com"},
	}

	plain := testutil.NewSink()
	plainSrv := httptest.NewServer(plain)
	defer plainSrv.Close()
	tlsOrigin := testutil.NewSink()
	tlsSrv := httptest.NewTLSServer(tlsOrigin)
	defer tlsSrv.Close()

	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir(), MemoryThreshold: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA(t)
	var events sync.Map
	tp := startInterceptingWith(t, ca, Config{Scanner: sc, ScanUploads: true,
		Observe: func(e Event) { events.Store(e.URL, e) }}, tlsSrv.Certificate())
	paths := []struct {
		name   string
		client *http.Client
		origin *testutil.Sink
		base   string
		proto  int
	}{
		{"plain", tp.client(t), plain, plainSrv.URL, 1},
		{"intercepted", func() *http.Client {
			c := tp.client(t)
			c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: poolOf(ca.Certificate())}
			return c
		}(), tlsOrigin, tlsSrv.URL, 1},
		{"intercepted h2", h2Client(t, tp, ca), tlsOrigin, tlsSrv.URL, 2},
	}
	for _, p := range paths {
		for i, b := range bodies {
			t.Run(p.name+"/"+b.name, func(t *testing.T) {
				path := fmt.Sprintf("/upload/%s/%d", strings.ReplaceAll(p.name, " ", "-"), i)
				var rd io.Reader = bytes.NewReader(b.body)
				if b.chunked {
					rd = onlyReader{rd}
				}
				req, _ := http.NewRequest(http.MethodPost, p.base+path, rd)
				req.Header.Set("Content-Type", b.ctype)
				resp, err := p.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				page, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.ProtoMajor != p.proto {
					t.Errorf("client side: got %s, want HTTP/%d", resp.Proto, p.proto)
				}
				l := tp.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), path) })
				got, reached := p.origin.Received(path)
				if b.threat == "" {
					if resp.StatusCode != 200 || !reached || !bytes.Equal(got.Body, b.body) || got.Err != nil {
						t.Fatalf("clean upload: status %d (%.200s), origin reached %v with %d bytes (want %d, identical %v, err %v)",
							resp.StatusCode, page, reached, len(got.Body), len(b.body), bytes.Equal(got.Body, b.body), got.Err)
					}
					wantCL := int64(len(b.body))
					if b.chunked {
						wantCL = -1
					}
					if got.ContentLength != wantCL || got.Chunked != b.chunked {
						t.Errorf("origin framing: Content-Length %d chunked %v, want %d %v", got.ContentLength, got.Chunked, wantCL, b.chunked)
					}
					if l["action"] != "allow" || l["upload_result"] != "unknown" || l["bytes_in"] != float64(len(b.body)) {
						t.Errorf("access line %v, want allow, upload_result unknown, bytes_in %d", l, len(b.body))
					}
					return
				}
				if reached {
					t.Fatalf("the origin received the infected upload (%d bytes)", len(got.Body))
				}
				inc, _ := l["incident"].(string)
				if resp.StatusCode != 403 || inc == "" || !strings.Contains(string(page), inc) || !strings.Contains(string(page), b.threat) ||
					!strings.Contains(string(page), "upload") || (b.member != "" && !strings.Contains(string(page), b.member)) {
					t.Errorf("want the block page naming the upload, %s and the incident %q; got %d %.800s", b.threat, inc, resp.StatusCode, page)
				}
				if l["action"] != "block" || l["rule"] != "scanner.upload.eicar" || l["stage"] != "scan" || l["verdict"] != "malware" ||
					l["upload_result"] != "malicious" || l["upload_threat"] != b.threat || l["scan_result"] != nil {
					t.Errorf("access line %v, want a block by rule scanner.upload.eicar with the upload's threat", l)
				}
				v, ok := events.Load(fmt.Sprint(l["url"]))
				if e, _ := v.(Event); !ok || e.Action != "block" || e.Upload == nil || !e.Upload.Upload || e.Upload.Threat != b.threat || e.Scan != nil {
					t.Errorf("event %+v, want a block with the upload's scan", v)
				}
			})
		}
	}
	if n := sc.Stats().Malicious; n != 9 {
		t.Errorf("scanner counted %d malicious bodies, want 9", n)
	}
}

// TestUploadOversize: an upload over max_size is held up to max_size, then
// either forwarded whole and intact (oversize = pass: the held bytes, then
// the rest as it comes, with the client's framing) or blocked without a
// byte reaching the origin (oversize = block). With uploads off, even
// EICAR goes through.
func TestUploadOversize(t *testing.T) {
	big, _ := io.ReadAll(randReader(9, 200<<10+17))
	origin := testutil.NewSink()
	srv := httptest.NewServer(origin)
	defer srv.Close()
	tests := []struct {
		name        string
		scan        bool
		block       bool
		body        []byte
		chunked     bool
		wantForward bool
	}{
		{"pass", true, false, big, false, true},
		{"pass chunked", true, false, big, true, true},
		{"block", true, true, big, false, false},
		{"block chunked", true, true, big, true, false},
		{"uploads off", false, false, []byte(eicarFile), false, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, err := scanner.New(scanner.Config{TempDir: t.TempDir(), MaxSize: 64 << 10, BlockOversize: tt.block})
			if err != nil {
				t.Fatal(err)
			}
			tp := startProxy(t, Config{Scanner: sc, ScanUploads: tt.scan})
			var rd io.Reader = bytes.NewReader(tt.body)
			if tt.chunked {
				rd = onlyReader{rd}
			}
			path := fmt.Sprintf("/big/%d", i)
			resp, err := tp.client(t).Post(srv.URL+path, "application/octet-stream", rd)
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			l := tp.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), path) })
			got, reached := origin.Received(path)
			if !tt.wantForward {
				if reached || resp.StatusCode != 403 || !strings.Contains(string(page), "larger than your organisation allows") ||
					l["upload_result"] != "oversize" || l["rule"] != "scanner.upload.limits" {
					t.Errorf("oversize upload: reached the origin %v, status %d, access %v; want 403, not forwarded", reached, resp.StatusCode, l)
				}
				return
			}
			if resp.StatusCode != 200 || !reached || !bytes.Equal(got.Body, tt.body) || got.Chunked != tt.chunked {
				t.Fatalf("got %d, origin reached %v with %d bytes (identical %v, chunked %v); want 200 and the %d bytes, chunked %v",
					resp.StatusCode, reached, len(got.Body), bytes.Equal(got.Body, tt.body), got.Chunked, len(tt.body), tt.chunked)
			}
			wantResult := any("oversize")
			if !tt.scan {
				wantResult = nil
			}
			if l["upload_result"] != wantResult || l["bytes_in"] != float64(len(tt.body)) {
				t.Errorf("access line %v, want upload_result %v and bytes_in %d", l, wantResult, len(tt.body))
			}
		})
	}
}

// TestUploadBodyCloseWhileRead: the transport may close a request body
// while another goroutine reads it (HTTP/2); the scan's memory is freed
// only between reads, and reads after Close fail (run with -race).
func TestUploadBodyCloseWhileRead(t *testing.T) {
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(randReader(3, 4<<20))
	for range 20 {
		st := sc.NewScan(scanner.Meta{Size: -1, Upload: true})
		if _, err := st.Write(data); err != nil {
			t.Fatal(err)
		}
		b := &uploadBody{st: st, held: st.Reader(), rest: io.NopCloser(strings.NewReader("rest"))}
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 1024)
			for {
				if _, err := b.Read(buf); err != nil {
					done <- err
					return
				}
			}
		}()
		b.Close()
		if err := <-done; err != errUploadClosed && err != io.EOF {
			t.Fatalf("read after Close: got %v, want %v (or the end)", err, errUploadClosed)
		}
	}
}

// TestUploadBadBody: an upload whose chunked body is malformed, or that
// ends before its Content-Length, is answered 400 (if the client still
// listens) and nothing of it reaches the origin.
func TestUploadBadBody(t *testing.T) {
	origin := testutil.NewSink()
	srv := httptest.NewServer(origin)
	defer srv.Close()
	sc, err := scanner.New(scanner.Config{TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	tp := startProxy(t, Config{Scanner: sc, ScanUploads: true})
	for _, tc := range []struct{ name, head, body, kind string }{
		{"bad chunk size", "Transfer-Encoding: chunked", "5\r\nhello\r\nzz\r\n", "client-body"},
		// The client closed its side: net/http cancels the request.
		{"short body", "Content-Length: 100", "only this", "canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/bad/" + strings.ReplaceAll(tc.name, " ", "-")
			raw := "POST " + srv.URL + path + " HTTP/1.1\r\nHost: " + strings.TrimPrefix(srv.URL, "http://") + "\r\n" + tc.head + "\r\n\r\n" + tc.body
			c, err := net.Dial("tcp", tp.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, raw)
			if cw, ok := c.(*net.TCPConn); ok {
				cw.CloseWrite() // the body ends here
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if _, reached := origin.Received(path); resp.StatusCode != 400 || reached {
				t.Errorf("got %d, origin reached %v; want 400 and nothing forwarded", resp.StatusCode, reached)
			}
			l := tp.waitAccess(t, func(l map[string]any) bool { return strings.HasSuffix(fmt.Sprint(l["url"]), path) })
			if l["error"] != tc.kind {
				t.Errorf("access line %v, want error %s", l, tc.kind)
			}
		})
	}
}
