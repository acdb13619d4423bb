package config

import (
	"errors"
	"testing"
	"time"
)

func parseAuth(t *testing.T, text string) (Auth, error) {
	t.Helper()
	var doc struct {
		Auth Auth `toml:"auth"`
	}
	doc.Auth.defaults()
	err := decodeSection(t, text, &doc, doc.Auth.validate)
	return doc.Auth, err
}

func TestAuthDefaults(t *testing.T) {
	c, err := parseAuth(t, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Enabled() || c.Realm != "Picket" || c.MaxFailures != 10 || c.FailureWindow.D() != time.Minute || c.CacheTTL.D() != 5*time.Minute {
		t.Errorf("got %+v, want off, realm Picket, 10 failures a minute, 5m cache", c)
	}
}

func TestAuthKeys(t *testing.T) {
	c, err := parseAuth(t, `[auth]
htpasswd = "htpasswd"
groups = "groups"
realm = "Corp proxy"
max_failures = 5
failure_window = "10m"
cache_ttl = "0s"
`)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Enabled() || c.Groups != "groups" || c.Realm != "Corp proxy" || c.MaxFailures != 5 || c.FailureWindow.D() != 10*time.Minute || c.CacheTTL != 0 {
		t.Errorf("got %+v", c)
	}
}

func TestAuthInvalid(t *testing.T) {
	tests := []struct {
		name, text, key string
	}{
		{"groups without users", `groups = "groups"`, "auth.groups"},
		{"empty realm", `realm = ""`, "auth.realm"},
		{"realm with a newline", `realm = "a\nb"`, "auth.realm"},
		{"no failures allowed", `max_failures = 0`, "auth.max_failures"},
		{"window too short", `failure_window = "100ms"`, "auth.failure_window"},
		{"window too long", `failure_window = "48h"`, "auth.failure_window"},
		{"cache too long", `cache_ttl = "2h"`, "auth.cache_ttl"},
		{"negative duration", `cache_ttl = "-1s"`, ""},
		{"unknown key", `passwords = "x"`, "auth.passwords"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseAuth(t, "[auth]\n"+tt.text+"\n")
			if err == nil {
				t.Fatalf("got no error, want one naming %s", tt.key)
			}
			if tt.key == "" {
				return // refused by the decoder
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Key != tt.key || ce.Line != 2 {
				t.Errorf("got %v, want an error naming %s on line 2", err, tt.key)
			}
		})
	}
}
