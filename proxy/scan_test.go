package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
