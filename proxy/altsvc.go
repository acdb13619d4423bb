package proxy

import (
	"net/http"
	"net/url"
	"strings"
)

// No side door through QUIC. An origin's Alt-Svc header (RFC 7838) tells
// browsers where else the same site is served, and with "h3" it sends them
// to QUIC over UDP: past an explicit proxy, and past a transparent gateway
// that redirects only TCP. Inspecting gateways therefore remove those
// alternatives; Picket keeps only the ones that run over TCP (h2, http/1.1),
// whatever new UDP protocol an origin names. Administrators of transparent
// gateways also drop UDP/443 (docs/deployment.md), since browsers learn h3
// from DNS HTTPS records too.

// tcpAlternatives are the ALPN protocol IDs of Alt-Svc alternatives that
// are kept.
var tcpAlternatives = map[string]bool{"h2": true, "http/1.1": true}

// stripQUIC removes every Alt-Svc alternative that is not HTTP over TCP,
// and the header when none is left. "clear" stays.
func stripQUIC(h http.Header) {
	vs, ok := h["Alt-Svc"]
	if !ok {
		return
	}
	var kept []string
	for _, v := range vs {
		if strings.TrimSpace(v) == "clear" {
			kept = append(kept, "clear")
			continue
		}
		var out []string
		for _, alt := range splitAltSvc(v) {
			if tcpAlternatives[altProtocol(alt)] {
				out = append(out, alt)
			}
		}
		if len(out) > 0 {
			kept = append(kept, strings.Join(out, ", "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Alt-Svc")
		return
	}
	h["Alt-Svc"] = kept
}

// splitAltSvc splits an Alt-Svc value at the commas between alternatives
// (not those inside quoted strings) and trims each.
func splitAltSvc(v string) []string {
	var out []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case c == ',' && !quoted:
			if s := strings.TrimSpace(v[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// altProtocol returns the ALPN protocol ID of one alternative
// (protocol-id "=" alt-authority *(";" parameter)), percent-decoded, or ""
// when it is malformed.
func altProtocol(alt string) string {
	id, _, ok := strings.Cut(alt, "=")
	if !ok {
		return ""
	}
	id = strings.TrimSpace(id)
	if !isToken(id) {
		return ""
	}
	dec, err := url.PathUnescape(id)
	if err != nil {
		return ""
	}
	return dec
}
