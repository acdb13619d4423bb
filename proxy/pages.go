package proxy

import (
	"bytes"
	"html/template"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// page is the data of every page Picket itself answers with.
type page struct {
	Status int
	Title  string
	Msg    string
	Host   string
	Detail string
	Rule   string
}

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:40rem;margin:10vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.4rem;margin-top:0}code{background:#eef;padding:0 .2em;word-break:break-all}small{color:#667}</style>
</head><body><main>
<h1>{{.Title}}</h1>
<p>{{.Msg}}</p>
{{if .Host}}<p>Site: <code>{{.Host}}</code></p>{{end}}
{{if .Detail}}<p><small>{{.Detail}}</small></p>{{end}}
{{if .Rule}}<p><small>Rule: {{.Rule}}</small></p>{{end}}
<p><small>HTTP {{.Status}} · Picket filtering proxy</small></p>
</main></body></html>
`))

// pageResponse renders p as a complete response to req.
func pageResponse(req *http.Request, p page) *http.Response {
	var buf bytes.Buffer
	_ = pageTmpl.Execute(&buf, p)
	h := make(http.Header, 4)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	return &http.Response{
		Status:        strconv.Itoa(p.Status) + " " + http.StatusText(p.Status),
		StatusCode:    p.Status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(buf.Bytes())),
		ContentLength: int64(buf.Len()),
		Request:       req,
	}
}

// writePage writes p to w (for answers given before goproxy is involved).
func writePage(w http.ResponseWriter, p page) {
	var buf bytes.Buffer
	_ = pageTmpl.Execute(&buf, p)
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(p.Status)
	_, _ = w.Write(buf.Bytes())
}

// blockPage is what a blocked request gets.
func blockPage(x *exchange) page {
	d := x.decision
	msg := "Access to this site was blocked by your organisation's web filter."
	if d.Reason != "" {
		msg = d.Reason
	}
	detail := ""
	if d.Verdict != "" {
		detail = "Verdict: " + d.Verdict
		if d.Category != "" {
			detail += " (" + d.Category + ")"
		}
	}
	host := ""
	if x.req.URL != nil {
		host = x.req.URL.Hostname()
	}
	return page{Status: http.StatusForbidden, Title: "Blocked", Msg: msg, Host: host, Detail: detail, Rule: d.Rule}
}

// errorPage is what a request gets when the upstream failed.
func errorPage(e *upstreamError, host string) page {
	title := "Bad gateway"
	if e.Status == http.StatusGatewayTimeout {
		title = "Gateway timeout"
	}
	return page{Status: e.Status, Title: title, Msg: e.Msg + ".", Host: host, Detail: "Error class: " + e.Kind}
}

// localHandler serves requests addressed to the proxy itself (origin form):
// an info page at "/", 404 for the rest. Later features (CA download, PAC)
// register more paths on it.
func (s *Server) localHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, page{Status: http.StatusOK, Title: "Picket filtering proxy",
			Msg: "This is a web filtering proxy. Configure your browser to use it as its HTTP and HTTPS proxy, " +
				"or use a proxy auto-configuration file provided by your administrator."})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, page{Status: http.StatusNotFound, Title: "Not found",
			Msg: "This address is the proxy itself; it serves no page " + strings.TrimSpace(r.URL.Path) + "."})
	})
	return mux
}
