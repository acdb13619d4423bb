package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// parseScanner decodes a [scanner] section over the defaults and validates
// it, as Parse will once File.Scanner is a ScannerSection.
func parseScanner(t *testing.T, text string) (ScannerSection, error) {
	t.Helper()
	var doc struct {
		Scanner ScannerSection `toml:"scanner"`
	}
	doc.Scanner = ScannerDefaults()
	md, err := toml.Decode(text, &doc)
	if err != nil {
		return doc.Scanner, err
	}
	p := &problems{file: "t.toml", lines: keyLines([]byte(text))}
	for _, k := range md.Undecoded() {
		p.add(k.String(), "unknown key")
	}
	doc.Scanner.validate(p)
	return doc.Scanner, errors.Join(p.errs...)
}

func TestScannerDefaults(t *testing.T) {
	c, err := parseScanner(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled || c.Mode != "buffer" || c.MaxSize != 32<<20 || c.Oversize != "pass" || !c.BlockArchiveBombs {
		t.Errorf("got %+v, want enabled, buffer, 32MiB, pass, block bombs", c)
	}
	if c.Archive.MaxDepth != 3 || c.TrickleHold.Bytes != 64<<10 {
		t.Errorf("got archive %+v hold %+v, want depth 3 and 64KiB", c.Archive, c.TrickleHold)
	}
}

func TestScannerValues(t *testing.T) {
	c, err := parseScanner(t, `
[scanner]
mode = "trickle"
max_size = "100MiB"
oversize = "block"
memory_threshold = "1MiB"
memory_budget = "64MiB"
trickle_hold = "10%"
signatures = ["sigs/*.hsb", "sigs/local.fp"]

[scanner.archive]
max_depth = 5
max_expanded = "1GiB"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode != "trickle" || c.MaxSize != 100<<20 || c.TrickleHold.Percent != 10 || c.Archive.MaxDepth != 5 || c.Archive.MaxExpanded != 1<<30 {
		t.Errorf("got %+v", c)
	}
	c, err = parseScanner(t, "[scanner]\ntrickle_hold = 4096\n")
	if err != nil || c.TrickleHold.Bytes != 4096 {
		t.Errorf("trickle_hold = 4096: got %+v %v, want 4096 bytes", c.TrickleHold, err)
	}
}

func TestScannerInvalid(t *testing.T) {
	tests := []struct{ name, text, key string }{
		{"mode", `mode = "stream"`, "scanner.mode"},
		{"oversize", `oversize = "drop"`, "scanner.oversize"},
		{"max_size", `max_size = "10"`, "scanner.max_size"},
		{"budget under threshold", `memory_budget = "1MiB"`, "scanner.memory_budget"},
		{"signature kind", `signatures = ["rules/*.yar"]`, "scanner.signatures"},
		{"bad glob", `signatures = ["[.hsb"]`, "scanner.signatures"},
		{"hold percent", `trickle_hold = "150%"`, "scanner.trickle_hold"},
		{"depth", "[scanner.archive]\nmax_depth = 0", "scanner.archive.max_depth"},
		{"ratio", "[scanner.archive]\nmax_ratio = 2", "scanner.archive.max_ratio"},
		{"unknown key", `colour = "red"`, "scanner.colour"},
		{"uploads", `uploads = "yes"`, "scanner.uploads"},
		{"uploads without the scanner", "enabled = false\nuploads = \"on\"", "scanner.uploads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.text
			if !strings.HasPrefix(text, "[") {
				text = "[scanner]\n" + text
			}
			_, err := parseScanner(t, text)
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key || ce.Line == 0 {
				t.Errorf("got %v, want an error on %s with its line", err, tt.key)
			}
		})
	}
}

// TestScanUploads: uploads are scanned when asked, or by default when a
// REQMOD service is named; an existing configuration without one keeps
// forwarding uploads unscanned.
func TestScanUploads(t *testing.T) {
	tests := []struct {
		name, text string
		want       bool
	}{
		{"default", "", false},
		{"ICAP downloads only", "[scanner.icap]\nurl = \"icap://127.0.0.1/avscan\"", false},
		{"REQMOD service", "[scanner.icap]\nreqmod_url = \"icap://127.0.0.1/avscan\"", true},
		{"on", "[scanner]\nuploads = \"on\"", true},
		{"off despite REQMOD", "[scanner]\nuploads = \"off\"\n[scanner.icap]\nreqmod_url = \"icap://127.0.0.1/avscan\"", false},
		{"scanner off", "[scanner]\nenabled = false\n[scanner.icap]\nreqmod_url = \"icap://127.0.0.1/avscan\"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseScanner(t, tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.ScanUploads(); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
