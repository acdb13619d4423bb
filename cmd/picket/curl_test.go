package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/internal/testutil"
)

// TestCurlThroughPicket is the README's promise with a real curl: plain
// HTTP through the proxy, and HTTPS intercepted with the exported CA trusted
// by curl and the origin's certificate trusted by Picket via extra_roots.
func TestCurlThroughPicket(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed (make test installs it): ", err)
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "plain origin")
	}))
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls origin")
	}))
	defer tlsOrigin.Close()

	dir := t.TempDir()
	originPEM := filepath.Join(dir, "origin.pem")
	os.WriteFile(originPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsOrigin.Certificate().Raw}), 0o644)
	path := writeConfig(t, "[tls]\nextra_roots = [\""+originPEM+"\"]\nca_cert = \""+filepath.Join(dir, "ca.pem")+
		"\"\nca_key = \""+filepath.Join(dir, "ca.key")+"\"\n")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	var stdout, stderr testutil.SyncBuffer
	go func() { done <- serve(ctx, path, &stdout, &stderr, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	// picket ca export writes the CA that serve generated.
	var caPEM, errb bytes.Buffer
	if code := run([]string{"ca", "export", "-config", path}, &caPEM, &errb); code != 0 {
		t.Fatalf("ca export: exit %d: %s", code, errb.String())
	}
	caFile := filepath.Join(dir, "exported-ca.pem")
	os.WriteFile(caFile, caPEM.Bytes(), 0o644)

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"plain HTTP", []string{"-x", "http://" + addr, origin.URL}, "plain origin"},
		{"HTTPS intercepted", []string{"--cacert", caFile, "-x", "http://" + addr, tlsOrigin.URL}, "tls origin"},
		{"CA download page", []string{"-x", "http://" + addr, "http://" + addr + "/picket-ca.pem"}, caPEM.String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(curl, append([]string{"-sS", "--max-time", "10", "--noproxy", ""}, tc.args...)...).CombinedOutput()
			if err != nil || string(out) != tc.want {
				t.Errorf("curl: got %q (%v), want %q", out, err, tc.want)
			}
		})
	}
	// Without the CA, curl must refuse the minted certificate.
	out, err := exec.Command(curl, "-sS", "--max-time", "10", "--noproxy", "", "-x", "http://"+addr, tlsOrigin.URL).CombinedOutput()
	if err == nil || strings.Contains(string(out), "tls origin") {
		t.Errorf("curl without the Picket CA: got %q, want a certificate error", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}
