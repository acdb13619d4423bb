package admin

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

func TestLoadTokenGenerates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "admin.token")
	tok, generated, err := LoadToken(path)
	if err != nil || !generated {
		t.Fatalf("got %v, generated %v, want a new token", err, generated)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(tok) {
		t.Errorf("got %q, want 64 hex digits", tok)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode: got %s, want -rw-------", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode: got %s, want drwx------", di.Mode().Perm())
	}
	again, generated, err := LoadToken(path)
	if err != nil || generated || again != tok {
		t.Errorf("second start: got %q, %v, %v; want the same token, not generated", again, generated, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".admin-token-*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestLoadTokenRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name     string
		path     string
		insecure bool
	}{
		{"world readable", write("world", testToken, 0o644), true},
		{"group readable", write("group", testToken, 0o640), true},
		{"empty", write("empty", "", 0o600), false},
		{"short", write("short", "abc\n", 0o600), false},
		{"two words", write("words", "0123456789abcdef 0123456789abcdef\n", 0o600), false},
		{"a directory", dir, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadToken(tt.path)
			if err == nil {
				t.Fatal("got no error")
			}
			if got := errors.Is(err, ErrInsecureToken); got != tt.insecure {
				t.Errorf("got %v, want ErrInsecureToken: %v", err, tt.insecure)
			}
		})
	}
	if tok, _, err := LoadToken(write("ok", testToken+"\n", 0o600)); err != nil || tok != testToken {
		t.Errorf("got %q, %v, want the file's token", tok, err)
	}
}
