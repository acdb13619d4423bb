package pac

import "time"

// Config is what the PAC file says. The zero Config serves nothing: Enabled
// is false.
type Config struct {
	// Enabled serves the PAC file; when false the Handler answers 404.
	Enabled bool
	// Proxies are the proxy addresses ("host:port", "[2001:db8::1]:3128")
	// in failover order. Empty: the address the client reached Picket at,
	// taken per request from the Host header (the port from the listener
	// when the Host header has none).
	Proxies []string
	// FallbackDirect appends "DIRECT" after the proxies, so browsers go
	// direct when no proxy answers (and unfiltered). Default false.
	FallbackDirect bool
	// DirectPlainHosts sends host names without a dot ("intranet",
	// "localhost") direct.
	DirectPlainHosts bool
	// DirectHosts are host patterns, in the syntax of policy.CompileHosts
	// ("example.com", "*.corp.example", "192.0.2.7", "10.1.0.0/16"), sent
	// direct. A name pattern is matched against the host name as written;
	// an address or network pattern against IP-literal hosts only.
	DirectHosts []string
	// DirectNetworks are networks or addresses ("10.0.0.0/8", "fc00::/7")
	// sent direct. IP-literal hosts are matched without DNS; a host name
	// is resolved by the browser (dnsResolve, IPv4 only in most browsers)
	// when, and only when, there is an IPv4 network in the list.
	DirectNetworks []string
	// File, when not empty, is a PAC file served as it is instead of the
	// generated one; it is re-read when its modification time or size
	// changes. The other fields but Enabled and MaxAge are then ignored.
	File string
	// MaxAge is the Cache-Control max-age sent with the file, rounded
	// down to seconds; 0 sends max-age=0.
	MaxAge time.Duration
}

// MIME is the media type browsers expect of a PAC file.
const MIME = "application/x-ns-proxy-autoconfig"

// Paths are the URL paths the Handler answers: the PAC file under its two
// customary names.
var Paths = []string{"/proxy.pac", "/wpad.dat"}

// IsPath reports whether path is one of Paths.
func IsPath(path string) bool {
	for _, p := range Paths {
		if path == p {
			return true
		}
	}
	return false
}
