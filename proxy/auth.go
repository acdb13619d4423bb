package proxy

import (
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// RateLimited is the error an Authenticate func returns for a client that
// failed too often: it gets 429 and Retry-After instead of another prompt.
type RateLimited struct{ RetryAfter time.Duration }

func (e *RateLimited) Error() string { return "too many failed proxy logins" }

// ErrAuthUnavailable is the error (matched with errors.Is) an Authenticate
// func returns when it could not check the credentials, e.g. the directory
// that holds the passwords is down: the client gets 503 without a challenge,
// since typing the password again would not help.
var ErrAuthUnavailable = errors.New("proxy: the credentials cannot be checked now")

// identity is an authenticated user and the groups it belongs to.
type identity struct {
	user   string
	groups []string
}

// authenticate checks the request's credentials; on failure it answers and
// returns false. The error's text is never shown to the client.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request, client netip.Addr) (identity, bool) {
	user, groups, err := s.cfg.Authenticate(client, r.Header.Get("Proxy-Authorization"))
	if err == nil {
		return identity{user, groups}, true
	}
	var rl *RateLimited
	if errors.As(err, &rl) {
		secs := int(math.Ceil(rl.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		writePage(w, page{Status: http.StatusTooManyRequests, Title: "Too many attempts",
			Msg: "Too many failed logins from your address. Wait a moment and try again."})
		s.cfg.Log.Warn().Str(fClient, client.String()).Msg("proxy login rate-limited")
		return identity{}, false
	}
	if errors.Is(err, ErrAuthUnavailable) {
		writePage(w, page{Status: http.StatusServiceUnavailable, Title: "Sign-in unavailable",
			Msg: "The directory that checks passwords cannot be reached. Try again in a minute; if this goes on, tell your administrator."})
		s.cfg.Log.Warn().Str(fClient, client.String()).Str(fError, err.Error()).Msg("proxy login: the credentials cannot be checked")
		return identity{}, false
	}
	w.Header().Set("Proxy-Authenticate", s.cfg.AuthChallenge)
	writePage(w, page{Status: http.StatusProxyAuthRequired, Title: "Login required",
		Msg: "This proxy needs your user name and password."})
	return identity{}, false
}

// userOrDash is the user for the logs.
func userOrDash(u string) string {
	if u == "" {
		return "-"
	}
	return u
}
