package proxy

import (
	"context"
	"net/netip"
	"net/url"

	"github.com/picket-proxy/picket/policy"
)

// Action is what the pipeline does with a request or a tunnel: policy's
// Action, so that one value means one thing from the rules to the access
// log (least severe first: Allow, Warn, Block).
type Action = policy.Action

// The actions.
const (
	// Allow forwards the request (or opens the tunnel).
	Allow = policy.Allow
	// Warn shows a warning page whose "continue" link allows the host for
	// that client for a while (Config.WarnFor).
	Warn = policy.Warn
	// Block answers with a block page (or 403 to a CONNECT) and forwards nothing.
	Block = policy.Block
)

// Request is what a Decider sees of a request. It is read-only for the
// decider.
type Request struct {
	// Client is the address of the client that sent the request.
	Client netip.Addr
	// Method is the HTTP method ("CONNECT" for a tunnel).
	Method string
	// URL is the full URL of a plain or intercepted request. For a CONNECT it
	// holds only Scheme "https" and Host "host:port".
	URL *url.URL
	// Connect is true for the host-level decision taken when a CONNECT
	// arrives, before anything inside the tunnel is seen.
	Connect bool
	// Intercepted is true for a request read inside an intercepted tunnel.
	Intercepted bool
	// User and Groups are the authenticated user ("" without proxy
	// authentication) and the groups the user belongs to.
	User   string
	Groups []string
}

// Decision is the outcome of a Decider: a typed action and why, never an
// error. Block pages and the access log show it.
type Decision struct {
	Action Action
	// Intercept asks for TLS interception of a CONNECT tunnel; ignored for
	// other requests and when the proxy has no certificate authority.
	Intercept bool
	// Bypass marks traffic that is neither intercepted, looked up nor
	// scanned.
	Bypass bool
	// Verdict is the reputation verdict behind the decision ("" if none).
	Verdict string
	// VerdictSource says who gave the verdict (local, database, server,
	// failure), also when the reputation cache answered.
	VerdictSource string
	// VerdictCached is true when the reputation client's cache answered.
	VerdictCached bool
	// Category is the verdict's category, shown on block pages.
	Category string
	// Threat is the threat name of the verdict, if any.
	Threat string
	// Rule names the rule or list that decided ("" for the default).
	Rule string
	// Stage is the policy stage that decided (bypass, access, protection).
	Stage string
	// Reason is a short human-readable explanation for block pages and logs.
	Reason string
}

// Decider decides what happens to a request. An error means "could not
// decide" (the pipeline answers 503); a block is a Decision.
type Decider interface {
	Decide(ctx context.Context, r *Request) (Decision, error)
}

// DeciderFunc adapts a function to the Decider interface.
type DeciderFunc func(ctx context.Context, r *Request) (Decision, error)

// Decide calls f.
func (f DeciderFunc) Decide(ctx context.Context, r *Request) (Decision, error) { return f(ctx, r) }

// allowAll is the Decider used when none is configured: forward everything,
// tunnel CONNECTs untouched.
var allowAll = DeciderFunc(func(context.Context, *Request) (Decision, error) {
	return Decision{Action: Allow}, nil
})
