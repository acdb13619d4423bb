package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestScanCommand(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	eicar := write("eicar.com", `X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`)
	clean := write("notes.txt", "nothing to see\n")
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"clean", []string{"scan", "-local", clean}, 0, "unknown"},
		{"eicar", []string{"scan", "-local", clean, eicar}, 1, "threat=EICAR-Test-File"},
		{"json", []string{"scan", "-local", "-json", eicar}, 1, `"verdict":"malicious"`},
		{"missing file", []string{"scan", "-local", filepath.Join(dir, "nope")}, 1, "error:"},
		{"no files", []string{"scan"}, 2, ""},
		{"bad flag", []string{"scan", "-bogus", clean}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.code {
				t.Fatalf("exit: got %d, want %d (stderr %s)", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.out) {
				t.Errorf("stdout: got %q, want it to contain %q", stdout.String(), tt.out)
			}
		})
	}
	var stdout bytes.Buffer
	run([]string{"scan", "-local", "-json", eicar}, &stdout, &bytes.Buffer{})
	var line map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &line); err != nil || line["file"] != eicar || line["blocked"] != true {
		t.Errorf("json line: got %v (%v)", line, err)
	}
}
