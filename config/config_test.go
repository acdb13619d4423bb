package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestShippedConfigLoads(t *testing.T) {
	f, err := Load("../config.toml")
	if err != nil {
		t.Fatalf("shipped config.toml: %v", err)
	}
	if f.Proxy.Listen != "127.0.0.1:3128" {
		t.Errorf("proxy.listen: got %q, want 127.0.0.1:3128", f.Proxy.Listen)
	}
	if f.Admin.Listen != "127.0.0.1:9090" {
		t.Errorf("admin.listen: got %q, want 127.0.0.1:9090", f.Admin.Listen)
	}
}

func TestDefaults(t *testing.T) {
	f, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := f.Proxy.Listen, "127.0.0.1:3128"; got != want {
		t.Errorf("proxy.listen: got %q, want %q", got, want)
	}
	if got, want := f.Proxy.ResponseHeaderTimeout.D(), 60*time.Second; got != want {
		t.Errorf("proxy.response_header_timeout: got %v, want %v", got, want)
	}
	if f.Proxy.ForwardedFor {
		t.Errorf("proxy.forwarded_for: got true, want false (privacy)")
	}
	if f.Log.AccessLogQuery {
		t.Errorf("log.access_log_query: got true, want false (privacy)")
	}
}

func TestValuesParsed(t *testing.T) {
	f, err := Parse("t.toml", []byte(`
[proxy]
listen = "0.0.0.0:8080"
max_header_bytes = "32KiB"
dial_timeout = "1.5s"
allow_clients = ["10.1.0.0/16", "192.0.2.7"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Proxy.MaxHeaderBytes != 32<<10 {
		t.Errorf("max_header_bytes: got %d, want %d", f.Proxy.MaxHeaderBytes, 32<<10)
	}
	if f.Proxy.DialTimeout.D() != 1500*time.Millisecond {
		t.Errorf("dial_timeout: got %v, want 1.5s", f.Proxy.DialTimeout.D())
	}
}

func TestInvalidConfigs(t *testing.T) {
	for _, tc := range []struct {
		name string
		toml string
		want []string // substrings of the error, in order of importance
	}{
		{"syntax error names the line", "[proxy]\nlisten = \"a\"\nvia = \n", []string{"bad.toml:3"}},
		{"unknown key names key and line", "[proxy]\n\nlisen = \"127.0.0.1:1\"\n", []string{"bad.toml:3", "proxy.lisen", "unknown key"}},
		{"unknown section", "[proxxy]\nlisten = \"x\"\n", []string{"proxxy", "unknown key"}},
		{"bad listen address", "[proxy]\nlisten = \"localhost\"\n", []string{"bad.toml:2", "proxy.listen", "invalid listen address"}},
		{"bad listen port", "[proxy]\nlisten = \"127.0.0.1:99999\"\n", []string{"proxy.listen", "port"}},
		{"bad admin listen", "[admin]\nlisten = \"nohost:x\"\n", []string{"admin.listen"}},
		{"negative size", "[proxy]\nmax_header_bytes = \"-5KiB\"\n", []string{"bad.toml:2", "max_header_bytes", "negative"}},
		{"size not a size", "[proxy]\nmax_header_bytes = \"lots\"\n", []string{"bad.toml:2", "max_header_bytes", "invalid size"}},
		{"size out of range", "[proxy]\nmax_header_bytes = \"2GiB\"\n", []string{"proxy.max_header_bytes", "between"}},
		{"bad duration", "[proxy]\ndial_timeout = \"soon\"\n", []string{"bad.toml:2", "dial_timeout", "invalid duration"}},
		{"negative duration", "[proxy]\ndial_timeout = \"-1s\"\n", []string{"dial_timeout", "negative"}},
		{"zero duration", "[proxy]\nidle_timeout = \"0s\"\n", []string{"proxy.idle_timeout", "positive"}},
		{"unknown enum", "[log]\nlevel = \"loud\"\n", []string{"bad.toml:2", "log.level", "unknown level"}},
		{"unknown format", "[log]\nformat = \"xml\"\n", []string{"log.format"}},
		{"every fixed set said one way", "[log]\naccess_format = \"csv\"\n[scanner]\nmode = \"fast\"\n[reputation]\nfail = \"maybe\"\n",
			[]string{`bad.toml:2: log.access_format: unknown format "csv" (want "json" or "squid")`,
				`scanner.mode: unknown mode "fast" (want "buffer" or "trickle")`,
				`reputation.fail: unknown policy "maybe" (want "open" or "closed")`}},
		{"three or more values", "[log]\nlevel = \"loud\"\n", []string{`unknown level "loud" (want "debug", "info", "warn" or "error")`}},
		{"bad client network", "[proxy]\nallow_clients = [\"10.0.0.0/33\"]\n", []string{"proxy.allow_clients", "10.0.0.0/33"}},
		{"bad destination", "[proxy]\ndeny_destinations = [\"nope\"]\n", []string{"proxy.deny_destinations", "nope"}},
		{"bad port range", "[proxy]\nallow_ports = [\"443\", \"9000-80\"]\n", []string{"proxy.allow_ports", "9000-80"}},
		{"wrong type", "[proxy]\nforwarded_for = \"yes\"\n", []string{"bad.toml:2: proxy.forwarded_for: incompatible types"}},
		{"wrong type in a table", "[proxy]\nlisten = \"127.0.0.1:1\"\n\n[log]\nlevel = 3\n", []string{"bad.toml:5: log.level: incompatible types"}},
		{"drain delay too long", "[proxy]\ndrain_delay = \"10m\"\n", []string{"bad.toml:2", "proxy.drain_delay", "at most 5m"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(tc.toml))
			if err == nil {
				t.Fatalf("got no error, want one containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q: want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	_, err := Parse("bad.toml", []byte("[proxy]\nlisten = \"x\"\nbogus = 1\n[log]\nlevel = \"loud\"\n"))
	var all []*Error
	for _, e := range unjoin(err) {
		var ce *Error
		if errors.As(e, &ce) {
			all = append(all, ce)
		}
	}
	keys := map[string]int{}
	for _, e := range all {
		keys[e.Key] = e.Line
	}
	want := map[string]int{"proxy.listen": 2, "proxy.bogus": 3, "log.level": 5}
	for k, line := range want {
		if got, ok := keys[k]; !ok || got != line {
			t.Errorf("problem %s: got line %d (present %v), want line %d; all: %v", k, got, ok, line, err)
		}
	}
}

// TestUnknownKeyInRules: an unknown key in one [[rules]] entry is named
// by the entry and points at its own line, also when an earlier entry has
// the same unknown key.
func TestUnknownKeyInRules(t *testing.T) {
	_, err := Parse("bad.toml", []byte(`[[rules]]
name = "a"
action = "block"
hosts = ["a.example"]
colour = "red"

[[rules]]
name = "b"
action = "block"
hosts = ["b.example"]
colour = "blue"
`))
	var got []string
	for _, e := range unjoin(err) {
		var ce *Error
		if errors.As(e, &ce) {
			got = append(got, fmt.Sprintf("%d %s", ce.Line, ce.Key))
		}
	}
	if want := []string{"5 rules[0].colour", "11 rules[1].colour"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q (all: %v)", got, want, err)
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.toml") {
		t.Errorf("got %v, want a not-exist error naming the file", err)
	}
}

func TestResolve(t *testing.T) {
	f := &File{Dir: "/etc/picket"}
	for _, tc := range []struct{ in, want string }{
		{"data/ca.pem", "/etc/picket/data/ca.pem"},
		{"/abs/ca.pem", "/abs/ca.pem"},
		{"", ""},
	} {
		if got := f.Resolve(tc.in); got != tc.want {
			t.Errorf("Resolve(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		ok   bool
	}{
		{"512", 512, true}, {"64KiB", 64 << 10, true}, {"32MiB", 32 << 20, true}, {"1GB", 1e9, true},
		{"2 MiB", 2 << 20, true}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"", 0, false}, {"99999999999TiB", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q): got %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../config.toml")
	f.Add(data)
	f.Add([]byte("[proxy]\nlisten = \"x\"\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse("fuzz.toml", b)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}
