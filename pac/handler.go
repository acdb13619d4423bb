package pac

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/internal/netaddr"
)

// Handler serves the PAC file at /proxy.pac and /wpad.dat (Paths) to GET and
// HEAD, with the PAC media type, Cache-Control max-age and an ETag that
// If-None-Match turns into 304. Other paths get 404, other methods 405.
type Handler struct {
	enabled bool
	maxAge  string // "max-age=600"
	log     zerolog.Logger

	script *Script
	fixed  *body // the file, when it does not depend on the request

	path   string // static file, "" when generated
	mu     sync.Mutex
	static fileState
	warned bool // a read error has been logged
}

// body is one version of the file with its entity tag.
type body struct {
	data []byte
	etag string
}

func newBody(data []byte) *body {
	sum := sha256.Sum256(data)
	return &body{data: data, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// fileState is the static file as last read.
type fileState struct {
	body    *body
	modTime time.Time
	size    int64
}

// NewHandler checks cfg and builds the handler. With cfg.File it reads the
// file now, so a missing file is an error at start-up; later read errors
// keep the last good version and are logged.
func NewHandler(cfg Config, log zerolog.Logger) (*Handler, error) {
	h := &Handler{
		enabled: cfg.Enabled,
		maxAge:  "max-age=" + strconv.FormatInt(int64(max(cfg.MaxAge, 0)/time.Second), 10),
		log:     log,
	}
	if !cfg.Enabled {
		return h, nil
	}
	if cfg.File != "" {
		h.path = cfg.File
		st, err := readFile(cfg.File)
		if err != nil {
			return nil, err
		}
		h.static = st
		return h, nil
	}
	s, err := Compile(cfg)
	if err != nil {
		return nil, fmt.Errorf("pac: %w", err)
	}
	h.script = s
	if len(cfg.Proxies) > 0 {
		proxies := make([]string, len(cfg.Proxies))
		for i, p := range cfg.Proxies {
			if proxies[i], err = ParseProxy(p); err != nil {
				return nil, fmt.Errorf("pac: %w", err)
			}
		}
		h.fixed = newBody(s.Render(proxies))
	}
	return h, nil
}

func readFile(path string) (fileState, error) {
	f, err := os.Open(path)
	if err != nil {
		return fileState{}, fmt.Errorf("pac: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fileState{}, fmt.Errorf("pac: %w", err)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(f); err != nil {
		return fileState{}, fmt.Errorf("pac: %s: %w", path, err)
	}
	return fileState{body: newBody(buf.Bytes()), modTime: st.ModTime(), size: st.Size()}, nil
}

// ServeHTTP answers a request for the PAC file.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// 1. Only the PAC paths, only when enabled.
	if !h.enabled || !IsPath(r.URL.Path) {
		http.NotFound(w, r)
		return
	}
	// 2. Only reads.
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// 3. The file: static, fixed or written for the address the client used.
	b, dynamic := h.body(r)
	if b == nil {
		http.Error(w, "cannot tell the proxy's address: set [pac] proxies", http.StatusInternalServerError)
		return
	}
	// 4. Headers; ServeContent answers If-None-Match with 304 and HEAD
	// without a body.
	hd := w.Header()
	hd.Set("Content-Type", MIME)
	hd.Set("Cache-Control", h.maxAge)
	hd.Set("ETag", b.etag)
	hd.Set("X-Content-Type-Options", "nosniff")
	if dynamic {
		hd.Set("Vary", "Host")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b.data))
}

// body returns the file to serve and whether it depends on the request's
// Host header; nil when the proxy address cannot be told.
func (h *Handler) body(r *http.Request) (*body, bool) {
	switch {
	case h.path != "":
		return h.staticBody(), false
	case h.fixed != nil:
		return h.fixed, false
	}
	proxy, ok := requestProxy(r)
	if !ok {
		return nil, true
	}
	return newBody(h.script.Render([]string{proxy})), true
}

// staticBody returns the static file, re-read when it changed on disk.
func (h *Handler) staticBody() *body {
	h.mu.Lock()
	defer h.mu.Unlock()
	fi, err := os.Stat(h.path)
	if err == nil && (!fi.ModTime().Equal(h.static.modTime) || fi.Size() != h.static.size) {
		var st fileState
		if st, err = readFile(h.path); err == nil {
			h.static = st
		}
	}
	switch {
	case err == nil:
		h.warned = false
	case !h.warned:
		h.warned = true
		h.log.Warn().Str(LogFile, h.path).Str(LogError, err.Error()).Msg("pac: cannot read the PAC file, serving the last good version")
	}
	return h.static.body
}

// requestProxy is the proxy address as the client reached it: the Host
// header, with the listener's port when the header has none, or else the
// listener's address.
func requestProxy(r *http.Request) (string, bool) {
	var local *net.TCPAddr
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		local, _ = a.(*net.TCPAddr)
	}
	host := r.Host
	if h, port, err := netaddr.SplitHostPort(host); err == nil && port == "" && h != "" {
		port = "80"
		if local != nil {
			port = strconv.Itoa(local.Port)
		}
		host = net.JoinHostPort(strings.Trim(h, "[]"), port)
	}
	if p, err := ParseProxy(host); err == nil {
		return p, true
	}
	if local != nil && local.IP != nil && !local.IP.IsUnspecified() {
		if p, err := ParseProxy(local.String()); err == nil {
			return p, true
		}
	}
	return "", false
}
