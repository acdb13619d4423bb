package reputation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Backend answers hash-prefix lookups. Remote asks a reputation server; the
// embedded database (package reputation/db) answers in-process.
type Backend interface {
	// FindPrefixes returns every full hash the backend knows under the given
	// prefixes. An error means the backend could not answer.
	FindPrefixes(ctx context.Context, prefixes []Prefix) (Answer, error)
}

// InMemory is implemented by a Backend that answers from memory in the
// caller's goroutine and never waits (the embedded database). The Client
// asks it directly: the goroutine, channel and timer that bound a remote
// backend's latency cost more than its answer does (about a third of a
// 20 µs lookup that misses the caches).
type InMemory interface {
	Backend
	InMemory()
}

// Answer is a Backend's reply to one batch of prefixes.
type Answer struct {
	// Matches are the full hashes known under the asked prefixes, each with
	// its verdict; Verdict.TTL is how long it may be cached.
	Matches []Match
	// NegativeTTL is how long the asked prefixes may be taken to hold no
	// other full hashes than Matches.
	NegativeTTL time.Duration
	// Source is SourceServer or SourceDatabase.
	Source Source
}

// Match is one full hash with its verdict.
type Match struct {
	Hash    Hash
	Verdict Verdict
}

// Wire types of the lookup protocol (docs/protocol.md).

// Paths of the protocol's endpoints.
const (
	PathLookup  = "/v1/lookup"
	PathUpdate  = "/v1/update"
	PathHealth  = "/healthz"
	PathStats   = "/v1/stats"   // participation statistics (docs/privacy.md), cloud role only
	PathSamples = "/v1/samples" // participation samples (docs/privacy.md), cloud role only
)

// MaxPrefixesPerRequest bounds a lookup request.
const MaxPrefixesPerRequest = 256

// LookupRequest is the body of POST /v1/lookup.
type LookupRequest struct {
	// Prefixes are 8 hex digits each: the first 4 bytes of SHA-256 hashes.
	Prefixes []string `json:"prefixes"`
}

// LookupResponse is the reply to POST /v1/lookup.
type LookupResponse struct {
	Matches []WireMatch `json:"matches"`
	// NegativeTTL is in seconds.
	NegativeTTL int64 `json:"negative_ttl"`
}

// WireMatch is one full hash in a LookupResponse or an update.
type WireMatch struct {
	Hash     string `json:"hash"` // 64 hex digits
	Verdict  Kind   `json:"verdict"`
	Category string `json:"category,omitempty"`
	Threat   string `json:"threat,omitempty"`
	TTL      int64  `json:"ttl,omitempty"` // seconds; lookups only
}

// ErrorResponse is the body of every 4xx and 5xx reply.
type ErrorResponse struct {
	Error string `json:"error"`
}

// RemoteConfig configures a Remote.
type RemoteConfig struct {
	// Server is the base URL, e.g. "https://kpsn.example.org:8443".
	Server string
	// Token, if set, is sent as "Authorization: Bearer <token>".
	Token string
	// HTTPClient is used for requests; nil means a client with sane
	// transport timeouts. The per-lookup deadline comes from the context.
	HTTPClient *http.Client
}

// Remote is the Backend of a reputation server (KSN cloud or KPSN private).
type Remote struct {
	endpoint string
	token    string
	hc       *http.Client
}

var _ Backend = (*Remote)(nil)

// maxResponseBytes bounds a lookup response body.
const maxResponseBytes = 4 << 20

// NewRemote checks the server URL and returns a Remote.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("reputation: invalid server URL %q: want http(s)://host[:port]", cfg.Server)
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{
			Proxy:                 nil, // never send lookups through a proxy (it may be us)
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 10 * time.Second,
			ForceAttemptHTTP2:     true,
		}}
	}
	return &Remote{endpoint: strings.TrimRight(cfg.Server, "/") + PathLookup, token: cfg.Token, hc: KeepTokenHome(hc)}, nil
}

// KeepTokenHome returns a copy of hc whose redirects carry no
// Authorization header to another origin: another host or port, or from
// https to plain http. (Go's client keeps it for the same host name
// whatever the port or scheme.) hc's own CheckRedirect still runs.
func KeepTokenHome(hc *http.Client) *http.Client {
	c := *hc
	check := hc.CheckRedirect
	c.CheckRedirect = func(r *http.Request, via []*http.Request) error {
		if LeavesOrigin(via[0].URL, r.URL) {
			r.Header.Del("Authorization")
		}
		if check != nil {
			return check(r, via)
		}
		if len(via) >= 10 { // the default policy
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &c
}

// LeavesOrigin reports whether a redirect from from to to goes to another
// host or port, or down from https to plain http: where credentials sent
// to from must not follow.
func LeavesOrigin(from, to *url.URL) bool {
	return to.Host != from.Host || (to.Scheme != from.Scheme && to.Scheme != "https")
}

// FindPrefixes sends the prefixes in one POST request.
func (r *Remote) FindPrefixes(ctx context.Context, prefixes []Prefix) (Answer, error) {
	req := LookupRequest{Prefixes: make([]string, len(prefixes))}
	for i, p := range prefixes {
		req.Prefixes[i] = p.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Answer{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if r.token != "" {
		hr.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.hc.Do(hr)
	if err != nil {
		return Answer{}, fmt.Errorf("reputation: lookup: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Answer{}, fmt.Errorf("reputation: lookup: reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e ErrorResponse
		_ = json.Unmarshal(data, &e)
		return Answer{}, &StatusError{Code: resp.StatusCode, Msg: e.Error}
	}
	if len(data) > maxResponseBytes {
		return Answer{}, errors.New("reputation: lookup: response too large")
	}
	return DecodeLookupResponse(data)
}

// StatusError is a non-200 reply from a reputation server.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("reputation: server replied %d %s: %s", e.Code, http.StatusText(e.Code), e.Msg)
}

// DecodeLookupResponse parses and checks a LookupResponse body.
func DecodeLookupResponse(data []byte) (Answer, error) {
	var lr LookupResponse
	if err := json.Unmarshal(data, &lr); err != nil {
		return Answer{}, fmt.Errorf("reputation: bad lookup response: %w", err)
	}
	if lr.NegativeTTL < 0 {
		return Answer{}, errors.New("reputation: bad lookup response: negative TTL")
	}
	a := Answer{NegativeTTL: time.Duration(lr.NegativeTTL) * time.Second, Source: SourceServer}
	a.Matches = make([]Match, 0, len(lr.Matches))
	for _, m := range lr.Matches {
		h, err := ParseHash(m.Hash)
		if err != nil {
			return Answer{}, fmt.Errorf("reputation: bad lookup response: %w", err)
		}
		if m.TTL < 0 {
			return Answer{}, errors.New("reputation: bad lookup response: negative TTL")
		}
		if m.Verdict > KindMalware {
			return Answer{}, fmt.Errorf("reputation: bad lookup response: unknown verdict %d", m.Verdict)
		}
		a.Matches = append(a.Matches, Match{Hash: h, Verdict: Verdict{
			Kind: m.Verdict, Category: m.Category, ThreatName: m.Threat,
			TTL: time.Duration(m.TTL) * time.Second, Source: SourceServer,
		}})
	}
	return a, nil
}
