package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"unicode/utf8"
)

// maxHeader bounds the Proxy-Authorization header Check looks at, in bytes.
// bcrypt only reads 72 bytes of password anyway.
const maxHeader = 4096

// ParseBasic parses a Proxy-Authorization (or Authorization) header value
// of the Basic scheme (RFC 7617): the scheme name in any case, white space,
// then base64 of "user:password". The user may not be empty; neither may
// contain control characters or be invalid UTF-8.
func ParseBasic(header string) (user, password string, err error) {
	if len(header) > maxHeader {
		return "", "", errors.New("Proxy-Authorization header too long")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(header), " ")
	if !strings.EqualFold(scheme, "Basic") {
		return "", "", errors.New("not the Basic scheme")
	}
	token = strings.TrimSpace(token)
	raw, err := base64.StdEncoding.DecodeString(token)
	if err != nil {
		// Some clients leave out the padding.
		if raw, err = base64.RawStdEncoding.DecodeString(token); err != nil || token == "" {
			return "", "", errors.New("credentials are not base64")
		}
	}
	user, password, ok := strings.Cut(string(raw), ":")
	switch {
	case !ok:
		return "", "", errors.New("credentials without a colon")
	case user == "":
		return "", "", errors.New("empty user name")
	case !utf8.ValidString(user) || !utf8.ValidString(password):
		return "", "", errors.New("credentials are not UTF-8")
	case strings.ContainsFunc(user, isCTL) || strings.ContainsFunc(password, isCTL):
		return "", "", errors.New("control characters in the credentials")
	}
	return user, password, nil
}
