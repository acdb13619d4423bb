package proxy

import (
	"log"
	"strings"

	"github.com/rs/zerolog"
)

// newStdLogger adapts zerolog for the standard library's and goproxy's
// loggers (http.Server errors, goproxy warnings) at debug level: they are
// per-connection noise such as TLS handshake errors from clients.
func newStdLogger(l zerolog.Logger) *log.Logger {
	return log.New(stdWriter{l}, "", 0)
}

type stdWriter struct{ l zerolog.Logger }

func (w stdWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(strings.TrimSpace(string(p)))
	return len(p), nil
}
