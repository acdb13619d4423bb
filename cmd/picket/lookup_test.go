package main

import (
	"bytes"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/picket-proxy/picket/reputation/server"
	"github.com/rs/zerolog"
)

func writeLookupConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLookupDemoFeeds(t *testing.T) {
	feeds, _ := filepath.Abs("../../data/feeds")
	embedded := writeLookupConfig(t, fmt.Sprintf("[reputation.kpsn]\ndatabase = %q\n", feeds))

	srv, err := server.New(server.Config{Role: server.RoleCloud, Feeds: feeds, Poll: -1, Token: "tok"}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	ksn := writeLookupConfig(t, fmt.Sprintf("[reputation]\nmode = \"ksn\"\n[reputation.ksn]\nserver = %q\ntoken = \"tok\"\n", hs.URL))

	args := []string{"http://malware.picket.test/x.exe", "phishing.picket.test", "http://example.org/",
		"44d88612fea8a8f36de82e1278abb02f", "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"}
	want := []string{"\tmalware\t", "\tphishing\t", "\tunknown\t", "\tmalware\t", "\tmalware\t"}
	for name, tc := range map[string]struct{ cfg, source string }{
		"embedded": {embedded, "source=database"},
		"ksn":      {ksn, "source=server"},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"lookup", "-config", tc.cfg}, args...), &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, errb.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) != len(want) {
				t.Fatalf("got %d lines, want %d:\n%s", len(lines), len(want), out.String())
			}
			for i, l := range lines {
				if !strings.Contains(l, want[i]) || !strings.Contains(l, "\t"+tc.source) {
					t.Errorf("line %d = %q, want %q and %q", i, l, want[i], tc.source)
				}
			}
		})
	}
}

func TestLookupJSONAndErrors(t *testing.T) {
	feeds, _ := filepath.Abs("../../data/feeds")
	cfg := writeLookupConfig(t, fmt.Sprintf("[reputation.kpsn]\ndatabase = %q\n", feeds))
	var out, errb bytes.Buffer
	if code := run([]string{"lookup", "-config", cfg, "-json", "http://ads.picket.test/"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"verdict":"unwanted"`) {
		t.Errorf("JSON output %s", out.String())
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no arguments", []string{"lookup", "-config", cfg}, 2},
		{"bad flag", []string{"lookup", "-nope"}, 2},
		{"bad URL", []string{"lookup", "-config", cfg, "http://"}, 1},
		{"missing config", []string{"lookup", "-config", "/nonexistent/c.toml", "a.test"}, 1},
		{"repserver without role", []string{"repserver"}, 2},
		{"repserver cloud without feeds", []string{"repserver", "-role", "cloud"}, 2},
		{"repserver private without upstream", []string{"repserver", "-role", "private"}, 2},
		{"repserver cert without key", []string{"repserver", "-role", "cloud", "-feeds", feeds, "-tls-cert", "c.pem"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tt.args, &out, &errb); code != tt.want {
				t.Errorf("exit %d, want %d (stderr %s)", code, tt.want, errb.String())
			}
		})
	}
}
