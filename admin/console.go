package admin

import (
	"embed"
	"net/http"
	"strings"
)

// The console is one page with its script and style sheet, embedded, so
// that it needs nothing from outside the admin listener. The token stays in
// the tab's sessionStorage and goes out as an Authorization header; there
// are no cookies, so a cross-site page has nothing to ride on.
//
//go:embed console/index.html console/console.js console/console.css
var consoleFS embed.FS

var consoleFiles = []struct{ name, file, ctype string }{
	{"", "console/index.html", "text/html; charset=utf-8"},
	{"console.js", "console/console.js", "text/javascript; charset=utf-8"},
	{"console.css", "console/console.css", "text/css; charset=utf-8"},
}

// consoleCSP allows the page its own script, style and API and nothing else.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	for _, f := range consoleFiles {
		if f.name != name {
			continue
		}
		b, err := consoleFS.ReadFile(f.file)
		if err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", f.ctype)
		w.Header().Set("Content-Security-Policy", consoleCSP)
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(b)
		}
		return
	}
	writeError(w, http.StatusNotFound, "no such endpoint")
}
