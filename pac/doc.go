// Package pac is the proxy auto-configuration file that tells browsers where
// Picket is: it writes the FindProxyForURL JavaScript from a Config (or
// serves a static file from disk) and answers /proxy.pac and /wpad.dat.
//
// The generated function decides in this order, cheapest first, and asks DNS
// only when nothing cheaper has decided:
//
//	host ──normalize──▶ IP literal? ──match the networks, no DNS──▶ DIRECT or proxies
//	          │
//	          ├─▶ plain name (no dot)? ──▶ DIRECT
//	          ├─▶ direct host pattern (exact / *.suffix)? ──▶ DIRECT
//	          └─▶ dnsResolve (only if there are IPv4 networks) in a network? ──▶ DIRECT
//	                                                              otherwise ──▶ proxies
//
// "proxies" is "PROXY a:3128; PROXY b:3128" in failover order, with "; DIRECT"
// appended when Config.FallbackDirect is set.
package pac
