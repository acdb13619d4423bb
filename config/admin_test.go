package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// parseAdmin decodes an [admin] section with AdminExtra embedded, as Parse
// will once config.Admin embeds it, and validates it.
func parseAdmin(t *testing.T, text string) (AdminExtra, error) {
	t.Helper()
	var doc struct {
		Admin struct {
			Listen string `toml:"listen"`
			AdminExtra
		} `toml:"admin"`
	}
	doc.Admin.AdminExtra = AdminDefaults()
	md, err := toml.Decode(text, &doc)
	if err != nil {
		return doc.Admin.AdminExtra, err
	}
	p := &problems{file: "t.toml", lines: keyLines([]byte(text))}
	for _, k := range md.Undecoded() {
		p.add(k.String(), "unknown key")
	}
	doc.Admin.AdminExtra.validate(p)
	return doc.Admin.AdminExtra, errors.Join(p.errs...)
}

func TestAdminDefaults(t *testing.T) {
	c, err := parseAdmin(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "" || c.TokenFile != "data/admin.token" || c.Recent != 1000 || c.History.D().Hours() != 6 {
		t.Errorf("got %+v, want no token, data/admin.token, 1000 recent, 6h history", c)
	}
}

func TestAdminKeys(t *testing.T) {
	c, err := parseAdmin(t, `[admin]
listen = "127.0.0.1:9090"
token = "0123456789abcdef0123"
allow_clients = ["10.0.0.0/8"]
recent = 50
history = "2h"
`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != "0123456789abcdef0123" || len(c.AllowClients) != 1 || c.Recent != 50 || c.History.D().Hours() != 2 {
		t.Errorf("got %+v", c)
	}
}

func TestAdminInvalid(t *testing.T) {
	tests := []struct {
		name, text, key string
	}{
		{"short token", `token = "abc"`, "admin.token"},
		{"token with space", `token = "0123456789 abcdef0123"`, "admin.token"},
		{"no token file", `token_file = ""`, "admin.token_file"},
		{"bad network", `allow_clients = ["10.0.0.0/33"]`, "admin.allow_clients"},
		{"recent zero", `recent = 0`, "admin.recent"},
		{"recent huge", `recent = 1000000`, "admin.recent"},
		{"history short", `history = "1m"`, "admin.history"},
		{"history long", `history = "200h"`, "admin.history"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAdmin(t, "[admin]\n"+tt.text+"\n")
			if err == nil {
				t.Fatalf("got no error, want one naming %s", tt.key)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key {
				t.Errorf("got %v, want an error naming %s", err, tt.key)
			}
			if ce != nil && ce.Line != 2 && !strings.Contains(tt.text, "token_file") {
				t.Errorf("got line %d, want 2", ce.Line)
			}
		})
	}
}
