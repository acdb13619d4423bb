package main

import (
	"context"
	"strings"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/proxy"
	"github.com/picket-proxy/picket/reputation"
)

// decider adapts the policy engine in force to the proxy's Decider seam.
type decider struct {
	filters *filters
	log     zerolog.Logger
}

var _ proxy.Decider = decider{}

// Decide asks the engine and translates its decision.
func (d decider) Decide(ctx context.Context, r *proxy.Request) (proxy.Decision, error) {
	pd, err := d.filters.current().engine.Decide(ctx, &policy.Input{Client: r.Client, Method: r.Method, URL: r.URL, Connect: r.Connect,
		User: r.User, Groups: r.Groups})
	if err != nil {
		return proxy.Decision{}, err
	}
	return toProxyDecision(pd), nil
}

// toProxyDecision maps a policy decision onto the proxy's.
func toProxyDecision(pd policy.Decision) proxy.Decision {
	out := proxy.Decision{
		Action:    pd.Action, // one type: proxy.Action is policy.Action
		Intercept: pd.Intercept,
		Bypass:    pd.Bypass,
		Rule:      pd.Rule,
		Reason:    pd.Reason,
	}
	if pd.Stage != policy.StageNone {
		out.Stage = pd.Stage.String()
	}
	if v := pd.Verdict; v.Source != reputation.SourceNone {
		out.Verdict = v.Kind.String()
		out.Category = v.Category
		out.Threat = v.ThreatName
		out.VerdictSource = v.Source.String()
		out.VerdictCached = v.Cached
	}
	// The protection table's reasons are short phrases; the proxy words the
	// verdict's reason for people itself. Rules and the administrator's
	// lists keep theirs.
	if strings.HasPrefix(pd.Rule, "protection.") {
		out.Reason = ""
	}
	return out
}

// noteHandshakeFailure feeds the pinned-app auto-bypass and logs when it
// starts tunnelling a host.
func (d decider) noteHandshakeFailure(host string) {
	if d.filters.current().engine.NoteHandshakeFailure(host) {
		d.log.Warn().Str("host", host).
			Msg("clients keep refusing the interception certificate (pinned app?): tunnelling this host untouched for a while; add it to tls.bypass to make it permanent")
	}
}
