package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRequestTrailersForwarded: a chunked request's trailer fields reach
// the origin with their values, plain and inside an intercepted tunnel.
func TestRequestTrailersForwarded(t *testing.T) {
	for _, tlsOn := range []bool{false, true} {
		got := make(chan string, 1)
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got <- string(b) + "|" + r.Trailer.Get("X-Sum")
		})
		var origin *httptest.Server
		var cfg Config
		tr := &http.Transport{}
		if tlsOn {
			origin = httptest.NewTLSServer(h)
			ca := testCA(t)
			cfg = Config{Decider: interceptAll, RootCAs: poolOf(origin.Certificate()),
				Intercept: func(host string) (*tls.Config, error) { return ca.TLSConfig(host), nil }}
			tr.TLSClientConfig = &tls.Config{RootCAs: poolOf(ca.Certificate())}
		} else {
			origin = httptest.NewServer(h)
		}
		defer origin.Close()
		tp := startProxy(t, cfg)
		tr.Proxy = http.ProxyURL(tp.url)
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest("POST", origin.URL+"/up", nil)
		req.Trailer = http.Header{"X-Sum": nil} // no length: chunked, with the trailer
		req.Body = &trailerSetter{Reader: strings.NewReader("hello"), tr: req.Trailer}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("tls %v: %v", tlsOn, err)
		}
		resp.Body.Close()
		if g := <-got; g != "hello|42" {
			t.Errorf("tls %v: origin got body|trailer %q, want %q", tlsOn, g, "hello|42")
		}
	}
}

// trailerSetter sets the trailer's value when its body ends, as a client
// computing a checksum would.
type trailerSetter struct {
	io.Reader
	tr http.Header
}

func (s *trailerSetter) Read(p []byte) (int, error) {
	n, err := s.Reader.Read(p)
	if err == io.EOF {
		s.tr.Set("X-Sum", "42")
	}
	return n, err
}
func (s *trailerSetter) Close() error { return nil }

// TestResponseTrailersToHTTP1Client: an HTTP/2 origin may send a body of
// known length and then trailers; an HTTP/1.1 client can only get trailers
// in chunked encoding, so the response reaches it chunked with the trailer
// fields, on the fast path (GET) and through net/http (POST) alike.
func TestResponseTrailersToHTTP1Client(t *testing.T) {
	origin, _ := h2Origin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body") // ends before a flush: sent with content-length: 4
		w.Header().Set("X-Sum", "42")
	}))
	ca := testCA(t)
	_, c := startIntercepting(t, ca, origin.Certificate())
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, origin.URL+"/t", strings.NewReader(""))
		if method == http.MethodGet {
			req.Body = nil
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 1 || string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("%s: got %s %q with trailer %v, want HTTP/1.1 %q with X-Sum: 42", method, resp.Proto, b, resp.Trailer, "body")
		}
	}
}
