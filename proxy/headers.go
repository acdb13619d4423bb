package proxy

import (
	"net/http"
	"strings"
)

// hopHeaders are the hop-by-hop headers of RFC 9110 §7.6.1 plus the
// Proxy-* headers clients send to us; they are never forwarded.
var hopHeaders = []string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// removeHopHeaders deletes the hop-by-hop headers and every header that
// Connection names. With keepUpgrade (a request, or a 101 answering one),
// an upgrade (WebSocket) keeps "Connection: Upgrade" and its Upgrade
// header, which the next hop needs to switch protocols; on any other
// response they only offered the origin's own connection an upgrade.
func removeHopHeaders(h http.Header, keepUpgrade bool) {
	var upgrade string
	if keepUpgrade {
		upgrade = upgradeType(h)
	}
	for _, v := range h["Connection"] {
		for _, name := range strings.Split(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				h.Del(name)
			}
		}
	}
	// Parsed headers have canonical keys and hopHeaders are canonical:
	// plain map deletes, no per-call canonicalization on the hot path.
	for _, name := range hopHeaders {
		delete(h, name)
	}
	if upgrade != "" {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = []string{upgrade}
	}
}

// upgradeType returns the protocol requested by "Connection: upgrade" plus
// Upgrade, or "".
func upgradeType(h http.Header) string {
	if !headerHasToken(h, "Connection", "upgrade") {
		return ""
	}
	return h.Get("Upgrade")
}

// headerHasToken reports whether the comma-separated header name contains
// token, case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// addVia appends this proxy to the Via header for a message of protocol
// version major.minor.
func addVia(h http.Header, major, minor int, pseudonym string) {
	if pseudonym == "" {
		return
	}
	v := "1.1 " + pseudonym
	if major == 1 && minor == 0 {
		v = "1.0 " + pseudonym
	} else if major == 2 {
		v = "2 " + pseudonym
	}
	h.Add("Via", v)
}
