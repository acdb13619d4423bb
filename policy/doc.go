// Package policy is the administrator's rules: what the proxy does with a
// request, given who asks, what for and the verdicts.
//
// It knows nothing of goproxy or of the wire: the proxy hands it an Input
// and gets back a Decision. Host patterns (HostSet) are shared with the TLS
// inspection policy.
package policy
