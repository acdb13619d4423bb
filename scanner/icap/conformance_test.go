package icap

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeReq is a RESPMOD or REQMOD as the fake server read it, checked
// against RFC 3507 on the way (see readRequest).
type fakeReq struct {
	method, url string
	header      textproto.MIMEHeader
	httpReq     *http.Request
	httpResp    *http.Response
	preview     []byte
	hasPreview  bool
	ieof        bool
	body        []byte // the whole body once read
}

// fakeICAP is a scripted ICAP server on a raw socket: it answers OPTIONS
// with opts and asks onPreview (after a preview: "" sends 100 Continue) and
// onBody (after the whole body) for the final answer.
type fakeICAP struct {
	t         *testing.T
	ln        net.Listener
	opts      string
	onPreview func(*fakeReq) string
	onBody    func(*fakeReq) string
	wg        sync.WaitGroup

	mu      sync.Mutex
	reqs    []*fakeReq
	options int
	conns   int
	errs    []error
}

func newFake(t *testing.T, opts string) *fakeICAP {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeICAP{t: t, ln: ln, opts: opts, onBody: func(*fakeReq) string { return "ICAP/1.0 204 No Content\r\nISTag: \"fake-1\"\r\n\r\n" }}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(func() {
		ln.Close()
		f.wg.Wait()
		for _, err := range f.errs {
			t.Errorf("fake ICAP server: %v", err)
		}
	})
	return f
}

func (f *fakeICAP) url() string { return "icap://" + f.ln.Addr().String() + "/av" }

func (f *fakeICAP) serve() {
	defer f.wg.Done()
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		f.mu.Lock()
		f.conns++
		f.mu.Unlock()
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(conn)
			for {
				if err := f.one(conn, br); err != nil {
					if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
						f.mu.Lock()
						f.errs = append(f.errs, err)
						f.mu.Unlock()
					}
					return
				}
			}
		}()
	}
}

// one serves one request on the connection.
func (f *fakeICAP) one(conn net.Conn, br *bufio.Reader) error {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return io.EOF
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return fmt.Errorf("request headers: %v", err)
	}
	method, rest, _ := strings.Cut(line, " ")
	u, proto, _ := strings.Cut(rest, " ")
	if proto != "ICAP/1.0" || h.Get("Host") == "" {
		return fmt.Errorf("bad request line %q or no Host", line)
	}
	if method == "OPTIONS" {
		f.mu.Lock()
		f.options++
		f.mu.Unlock()
		_, err := io.WriteString(conn, "ICAP/1.0 200 OK\r\n"+f.opts+"Encapsulated: null-body=0\r\n\r\n")
		return err
	}
	r := &fakeReq{method: method, url: u, header: h}
	if err := readRequest(br, r); err != nil {
		return err
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	if r.hasPreview {
		if f.onPreview != nil {
			if ans := f.onPreview(r); ans != "" {
				_, err := io.WriteString(conn, ans)
				return err
			}
		}
		if r.ieof {
			r.body = r.preview
		} else {
			if _, err := io.WriteString(conn, "ICAP/1.0 100 Continue\r\n\r\n"); err != nil {
				return err
			}
			rest, _, err := chunks(br)
			if err != nil {
				return err
			}
			r.body = append(bytes.Clone(r.preview), rest...)
		}
	} else {
		body, ieof, err := chunks(br)
		if err != nil {
			return err
		}
		if ieof {
			return errors.New("ieof without a preview")
		}
		r.body = body
	}
	if r.httpResp != nil && r.httpResp.ContentLength >= 0 && r.httpResp.ContentLength != int64(len(r.body)) {
		return fmt.Errorf("Content-Length %d, body %d bytes", r.httpResp.ContentLength, len(r.body))
	}
	_, err = io.WriteString(conn, f.onBody(r))
	return err
}

// readRequest reads the encapsulated parts at the offsets the Encapsulated
// header names, checking each against the HTTP grammar, and the preview.
func readRequest(br *bufio.Reader, r *fakeReq) error {
	var secs []section
	for part := range strings.SplitSeq(r.header.Get("Encapsulated"), ",") {
		name, num, _ := strings.Cut(strings.TrimSpace(part), "=")
		off, err := strconv.Atoi(num)
		if err != nil {
			return fmt.Errorf("Encapsulated %q", r.header.Get("Encapsulated"))
		}
		secs = append(secs, section{name, off})
	}
	want := map[string]string{"RESPMOD": "req-hdr,res-hdr,res-body", "REQMOD": "req-hdr,req-body"}[r.method]
	var names []string
	for _, s := range secs {
		names = append(names, s.name)
	}
	if strings.Join(names, ",") != want {
		return fmt.Errorf("%s with Encapsulated %q, want parts %s", r.method, r.header.Get("Encapsulated"), want)
	}
	for i := 0; i < len(secs)-1; i++ {
		raw := make([]byte, secs[i+1].off-secs[i].off)
		if _, err := io.ReadFull(br, raw); err != nil {
			return err
		}
		rb := bufio.NewReader(bytes.NewReader(raw))
		var err error
		if secs[i].name == "req-hdr" {
			r.httpReq, err = http.ReadRequest(rb)
		} else {
			r.httpResp, err = http.ReadResponse(rb, nil)
		}
		if err != nil || rb.Buffered() != 0 {
			return fmt.Errorf("%s at the wrong offset or malformed (%v): %q", secs[i].name, err, raw)
		}
	}
	if p := r.header.Get("Preview"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("Preview %q", p)
		}
		r.hasPreview = true
		if r.preview, r.ieof, err = chunks(br); err != nil {
			return err
		}
		if len(r.preview) != n {
			return fmt.Errorf("Preview: %d but %d bytes previewed", n, len(r.preview))
		}
	}
	return nil
}

// chunks reads a chunked body and whether it ended with ieof.
func chunks(br *bufio.Reader) ([]byte, bool, error) {
	var out bytes.Buffer
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, false, err
		}
		if !strings.HasSuffix(line, "\r\n") {
			return nil, false, fmt.Errorf("chunk line without CRLF %q", line)
		}
		sz, ext, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		n, err := strconv.ParseInt(sz, 16, 64)
		if err != nil {
			return nil, false, fmt.Errorf("chunk size %q", line)
		}
		if n == 0 {
			end, err := br.ReadString('\n')
			if err != nil || end != "\r\n" {
				return nil, false, fmt.Errorf("last chunk not followed by CRLF: %q", end)
			}
			return out.Bytes(), strings.TrimSpace(ext) == "ieof", nil
		}
		if n == 0 || n > 1<<24 {
			return nil, false, fmt.Errorf("chunk size %d", n)
		}
		if _, err := io.CopyN(&out, br, n); err != nil {
			return nil, false, err
		}
		if crlf, err := br.ReadString('\n'); err != nil || crlf != "\r\n" {
			return nil, false, fmt.Errorf("chunk data not followed by CRLF")
		}
	}
}

// encap200 is a 200 answer carrying an HTTP response with status and body.
func encap200(headers string, status int, body []byte) string {
	hdr := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/html\r\n\r\n", status, http.StatusText(status))
	var b strings.Builder
	fmt.Fprintf(&b, "ICAP/1.0 200 OK\r\nISTag: \"fake-1\"\r\n%sEncapsulated: res-hdr=0, res-body=%d\r\n\r\n%s", headers, len(hdr), hdr)
	if len(body) > 0 {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

const stdOpts = "Methods: RESPMOD, REQMOD\r\nISTag: \"fake-1\"\r\nService: Fake AV 1.0\r\nAllow: 204\r\nPreview: 4\r\nTransfer-Preview: *\r\nOptions-TTL: 600\r\n"

func TestConformance(t *testing.T) {
	body := []byte("0123456789abcdef")
	t.Run("preview, 100 Continue, 204, connection reused", func(t *testing.T) {
		f := newFake(t, stdOpts)
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		for i := range 3 {
			res, err := scan(t, c, get("a.bin"), body, 3)
			if err != nil || res.Threat != "" || res.Scanned != int64(len(body)) {
				t.Fatalf("scan %d: got %+v, %v, want clean", i, res, err)
			}
		}
		r := f.reqs[0]
		if !bytes.Equal(r.preview, body[:4]) || r.ieof || !bytes.Equal(r.body, body) || r.header.Get("Allow") != "204" {
			t.Errorf("got preview %q ieof %v body %q Allow %q, want the first 4 bytes, then the rest, Allow: 204", r.preview, r.ieof, r.body, r.header.Get("Allow"))
		}
		if r.httpReq.Method != "GET" || r.httpReq.Host != "downloads.example" || r.httpReq.URL.Path != "/files/a.bin" ||
			r.httpResp.StatusCode != 200 || r.httpResp.ContentLength != int64(len(body)) {
			t.Errorf("encapsulated: %v %v %v, %v %v", r.httpReq.Method, r.httpReq.Host, r.httpReq.URL, r.httpResp.StatusCode, r.httpResp.ContentLength)
		}
		if f.conns != 1 || f.options != 1 {
			t.Errorf("got %d connections and %d OPTIONS for 3 scans, want 1 and 1", f.conns, f.options)
		}
	})
	t.Run("204 to the preview: the rest is not sent", func(t *testing.T) {
		f := newFake(t, stdOpts)
		f.onPreview = func(*fakeReq) string { return "ICAP/1.0 204 No Content\r\nISTag: \"fake-1\"\r\n\r\n" }
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		for range 2 { // the second request on the same connection proves nothing stray was sent
			if res, err := scan(t, c, get("a.bin"), bytes.Repeat(body, 100), 5); err != nil || res.Threat != "" {
				t.Fatalf("got %+v, %v, want clean", res, err)
			}
		}
		if f.conns != 1 || len(f.reqs) != 2 {
			t.Errorf("got %d connections, %d requests, want 1 and 2", f.conns, len(f.reqs))
		}
	})
	t.Run("unknown length: no Content-Length", func(t *testing.T) {
		f := newFake(t, stdOpts)
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		m := get("a.bin")
		m.Size = -1
		if _, err := scan(t, c, m, body, 5); err != nil {
			t.Fatal(err)
		}
		if r := f.reqs[0]; r.httpResp.ContentLength != -1 || !bytes.Equal(r.body, body) {
			t.Errorf("got Content-Length %d, body %q", r.httpResp.ContentLength, r.body)
		}
	})
	t.Run("a short body goes whole in the preview with ieof", func(t *testing.T) {
		f := newFake(t, stdOpts)
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		if _, err := scan(t, c, get("a.bin"), body[:3], 1); err != nil {
			t.Fatal(err)
		}
		if r := f.reqs[0]; !r.ieof || r.header.Get("Preview") != "3" || string(r.preview) != "012" {
			t.Errorf("got Preview %q ieof %v %q, want Preview: 3 and ieof", r.header.Get("Preview"), r.ieof, r.preview)
		}
	})
	t.Run("Transfer-Ignore, Transfer-Complete, Max-Connections", func(t *testing.T) {
		f := newFake(t, "Methods: RESPMOD\r\nISTag: x\r\nPreview: 4\r\nAllow: 204\r\nTransfer-Preview: *\r\nTransfer-Ignore: jpg, exe\r\nTransfer-Complete: zip\r\nMax-Connections: 1\r\n")
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		res, err := scan(t, c, get("setup.EXE"), body, 4)
		if err != nil || res.Skipped == "" {
			t.Fatalf("exe: got %+v, %v, want skipped", res, err)
		}
		if _, err := scan(t, c, get("a.zip"), body, 4); err != nil {
			t.Fatal(err)
		}
		if len(f.reqs) != 1 || f.reqs[0].hasPreview || !bytes.Equal(f.reqs[0].body, body) {
			t.Errorf("got %d requests (zip previewed: %v), want only the zip's, whole, without a preview", len(f.reqs), len(f.reqs) > 0 && f.reqs[0].hasPreview)
		}
		if m := c.respmod.pool.Max(); m != 1 {
			t.Errorf("pool bound %d, want the server's Max-Connections 1", m)
		}
	})
	t.Run("Options-TTL", func(t *testing.T) {
		f := newFake(t, stdOpts)
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		scan(t, c, get("a"), body, 16)
		scan(t, c, get("a"), body, 16)
		c.respmod.mu.Lock()
		c.respmod.opts.Fetched = time.Now().Add(-601 * time.Second)
		c.respmod.mu.Unlock()
		scan(t, c, get("a"), body, 16)
		if f.options != 2 {
			t.Errorf("got %d OPTIONS, want 2 (cached for Options-TTL, then asked again)", f.options)
		}
	})
	t.Run("ISTag change", func(t *testing.T) {
		f := newFake(t, stdOpts)
		f.onBody = func(*fakeReq) string { return "ICAP/1.0 204 No Content\r\nISTag: \"fake-2\"\r\n\r\n" }
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		if _, err := c.Options(context.Background()); err != nil || c.Tag() != "fake-1" {
			t.Fatalf("tag %q (%v), want fake-1", c.Tag(), err)
		}
		scan(t, c, get("a"), body, 16)
		if c.Tag() != "fake-2" {
			t.Errorf("tag %q after an answer with ISTag fake-2", c.Tag())
		}
	})
	for _, tc := range []struct {
		name, opts string
		answer     func(r *fakeReq) string
		threat     string
	}{
		{"200 echo without Allow: 204 is clean", "Methods: RESPMOD\r\nISTag: x\r\n",
			func(r *fakeReq) string { return encap200("", 200, r.body) }, ""},
		{"200 with a modified body", "Methods: RESPMOD\r\nISTag: x\r\n",
			func(r *fakeReq) string { return encap200("", 200, []byte("something else")) }, "modified by the ICAP service"},
		{"X-Infection-Found", stdOpts,
			func(r *fakeReq) string {
				return encap200("X-Infection-Found: Type=0; Resolution=2; Threat=Win.Test.One;\r\n", 403, []byte("<p>blocked"))
			}, "Win.Test.One"},
		{"X-Virus-ID", stdOpts,
			func(r *fakeReq) string {
				return encap200("X-Virus-ID: HEUR:Trojan.Win32.Generic\r\n", 403, []byte("<p>blocked"))
			}, "HEUR:Trojan.Win32.Generic"},
		{"X-Violations-Found, folded", stdOpts,
			func(r *fakeReq) string {
				return encap200("X-Violations-Found: 1\r\n\tsetup.exe\r\n\tW97M.Test\r\n\t1234\r\n\t2\r\n", 403, nil)
			}, "W97M.Test"},
		{"a block page without infection headers", stdOpts,
			func(r *fakeReq) string { return encap200("", 403, []byte("<p>no")) }, "blocked by the ICAP service (HTTP 403)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(t, tc.opts)
			f.onBody = tc.answer
			c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
			for range 2 {
				res, err := scan(t, c, get("a.bin"), body, 7)
				if err != nil || res.Threat != tc.threat {
					t.Fatalf("got %+v, %v, want threat %q", res, err, tc.threat)
				}
			}
			if f.conns != 1 {
				t.Errorf("got %d connections for 2 scans, want 1 (reused after reading the whole answer)", f.conns)
			}
		})
	}
	t.Run("an early answer while the body streams", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		done := make(chan struct{})
		go func() {
			defer close(done)
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			tp := textproto.NewReader(br)
			tp.ReadLine()
			tp.ReadMIMEHeader()
			io.WriteString(conn, "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: e\r\nEncapsulated: null-body=0\r\n\r\n")
			tp.ReadLine() // the RESPMOD
			tp.ReadMIMEHeader()
			io.WriteString(conn, encap200("X-Virus-ID: Early.Bird\r\n", 403, nil))
			io.Copy(io.Discard, br)
		}()
		c := newClient(t, Config{URL: "icap://" + ln.Addr().String() + "/av", Timeout: 5 * time.Second})
		res, err := scan(t, c, get("a.bin"), bytes.Repeat([]byte("x"), 8<<20), 64<<10)
		if err != nil || res.Threat != "Early.Bird" {
			t.Fatalf("got %+v, %v, want Early.Bird", res, err)
		}
		c.Close()
		<-done
	})
	t.Run("a service without RESPMOD", func(t *testing.T) {
		f := newFake(t, "Methods: REQMOD\r\nISTag: x\r\n")
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		if _, err := scan(t, c, get("a"), body, 16); err == nil || !strings.Contains(err.Error(), "does not offer RESPMOD") {
			t.Fatalf("got %v, want an error naming the missing method", err)
		}
	})
	t.Run("server errors", func(t *testing.T) {
		f := newFake(t, stdOpts)
		f.onBody = func(*fakeReq) string { return "ICAP/1.0 500 Server Error\r\nISTag: x\r\n\r\n" }
		c := newClient(t, Config{URL: f.url(), Timeout: 5 * time.Second})
		if _, err := scan(t, c, get("a"), body, 16); err == nil || !strings.Contains(err.Error(), "500") {
			t.Fatalf("got %v, want an error naming 500", err)
		}
		if c.Health().Healthy {
			t.Error("healthy after a 500")
		}
	})
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct{ in, host, path string }{
		{"icap://127.0.0.1:1344/avscan", "127.0.0.1:1344", "/avscan"},
		{"icap://av.example/srv_clamav", "av.example:1344", "/srv_clamav"},
		{"icap://[::1]:11344/virus_scan?allow204=on", "[::1]:11344", "/virus_scan?allow204=on"},
		{"http://av.example/avscan", "", ""},
		{"icap://av.example", "", ""},
		{"icap://av.example:0/x", "", ""},
		{"icap://user@av.example/x", "", ""},
	} {
		h, p, err := ParseURL(tc.in)
		if h != tc.host || p != tc.path || (err != nil) != (tc.host == "") {
			t.Errorf("%q: got %q %q %v, want %q %q", tc.in, h, p, err, tc.host, tc.path)
		}
	}
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestGarbage: servers that answer garbage, too much, or nothing give a
// clear error within the timeout, and leave no goroutine or descriptor
// behind.
func TestGarbage(t *testing.T) {
	okOptions := "ICAP/1.0 200 OK\r\nMethods: RESPMOD\r\nISTag: g\r\nPreview: 0\r\nAllow: 204\r\nEncapsulated: null-body=0\r\n\r\n"
	cases := []struct {
		name    string
		options string // the answer to OPTIONS ("" answers it well)
		answer  string // the answer to RESPMOD
		want    string
	}{
		{"HTTP instead of ICAP", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", "", "not an ICAP status line"},
		{"binary noise", "\x00\x01\x02\xff\xfe garbage\r\n\r\n", "", "not an ICAP status line"},
		{"a status line over 8 KiB", "ICAP/1.0 200 " + strings.Repeat("A", 20000) + "\r\n", "", "line too long"},
		{"endless headers", "ICAP/1.0 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 5000), "", "more than"},
		{"closed without an answer", "close", "", "closed the connection"},
		{"no answer at all", "hang", "", "timeout"},
		{"garbage verdict", "", "ICAP/1.0 2x0 OK\r\n\r\n", "bad status code"},
		{"bad Encapsulated", "", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=zero\r\n\r\n", "bad Encapsulated"},
		{"bad chunk size", "", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 403 No\r\n\r\nzz\r\n", "bad chunk size"},
		{"truncated encapsulated head", "", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=500\r\n\r\nHTTP/1.1 403", "encapsulated res-hdr"},
		{"a verdict that never ends", "", "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body=19\r\n\r\nHTTP/1.1 403 No\r\n\r\n10\r\n0123", "timeout"},
		{"garbage header line", "", "ICAP/1.0 204 OK\r\nno colon here\r\n\r\n", "bad header line"},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	current := cases[0]
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			tc := current
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(conn)
				tp := textproto.NewReader(br)
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					if _, err := tp.ReadMIMEHeader(); err != nil {
						return
					}
					if strings.HasPrefix(line, "OPTIONS") {
						switch tc.options {
						case "":
							io.WriteString(conn, okOptions)
							continue
						case "close":
							return
						case "hang":
							io.Copy(io.Discard, br)
							return
						}
						io.WriteString(conn, tc.options)
						io.Copy(io.Discard, br)
						return
					}
					io.WriteString(conn, tc.answer)
					io.Copy(io.Discard, br)
					return
				}
			}()
		}
	}()
	defer func() { ln.Close(); wg.Wait() }()

	g0, fd0 := runtime.NumGoroutine(), openFDs(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			current = tc
			mu.Unlock()
			c, err := New(Config{URL: "icap://" + ln.Addr().String() + "/av", Timeout: 500 * time.Millisecond, HealthInterval: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			_, err = scan(t, c, get("a.bin"), []byte("some body"), 4)
			if el := time.Since(start); el > 5*time.Second {
				t.Errorf("took %s, want the error within the 500ms timeout (or at once)", el)
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "icap") {
				t.Fatalf("got %v, want an icap error containing %q", err, tc.want)
			}
			if c.Health().Healthy {
				t.Error("healthy after garbage")
			}
		})
	}
	// Every connection of the client is closed: the server's handlers end
	// (they read until EOF), and the goroutine and descriptor counts return.
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), openFDs(t)
		if g <= g0+0 && fd <= fd0 {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("leak: goroutines %d -> %d, descriptors %d -> %d\n%s", g0, g, fd0, fd, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}
