package proxy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"html/template"
	"io"
	"net/http"
	"path"
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

// errorPage is what a request gets when the upstream failed.
func errorPage(e *upstreamError, host string) page {
	title := "Bad gateway"
	switch e.Status {
	case http.StatusGatewayTimeout:
		title = "Gateway timeout"
	case http.StatusForbidden:
		title = "Destination not allowed"
	}
	return page{Status: e.Status, Title: title, Msg: e.Msg + ".", Host: host, Detail: "Error class: " + string(e.Kind)}
}

// localHandler serves requests addressed to the proxy itself (origin form):
// an info page at "/", the CA certificate and its install page, 404 for the
// rest.
func (s *Server) localHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, page{Status: http.StatusOK, Title: "Picket filtering proxy",
			Msg: "This is a web filtering proxy. Configure your browser to use it as its HTTP and HTTPS proxy, " +
				"or use a proxy auto-configuration file provided by your administrator."})
	})
	if s.cfg.PAC != nil {
		mux.Handle("/proxy.pac", s.cfg.PAC)
		mux.Handle("/wpad.dat", s.cfg.PAC)
	}
	if ca := s.cfg.CACert; ca != nil {
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})
		serve := func(body []byte, ctype string) http.HandlerFunc {
			return func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", ctype)
				w.Header().Set("Content-Disposition", `attachment; filename="`+path.Base(r.URL.Path)+`"`)
				w.Header().Set("Cache-Control", "no-cache")
				w.Header().Set("Content-Length", strconv.Itoa(len(body)))
				if r.Method != http.MethodHead {
					_, _ = w.Write(body)
				}
			}
		}
		mux.HandleFunc("GET /picket-ca.pem", serve(pemBytes, "application/x-pem-file"))
		mux.HandleFunc("GET /picket-ca.crt", serve(pemBytes, "application/x-x509-ca-cert"))
		mux.HandleFunc("GET /picket-ca.der", serve(ca.Raw, "application/x-x509-ca-cert"))
		sum := sha256.Sum256(ca.Raw)
		fp := strings.ToUpper(hex.EncodeToString(sum[:]))
		var b strings.Builder
		for i := 0; i < len(fp); i += 2 {
			if i > 0 {
				b.WriteByte(':')
			}
			b.WriteString(fp[i : i+2])
		}
		data := installData{Name: ca.Subject.CommonName, Fingerprint: b.String(), NotAfter: ca.NotAfter.Format("2006-01-02")}
		mux.HandleFunc("GET /ca", func(w http.ResponseWriter, r *http.Request) {
			var buf bytes.Buffer
			_ = installTmpl.Execute(&buf, data)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Header().Set("Cache-Control", "no-cache")
			_, _ = w.Write(buf.Bytes())
		})
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writePage(w, page{Status: http.StatusNotFound, Title: "Not found",
			Msg: "This address is the proxy itself; it serves no page " + strings.TrimSpace(r.URL.Path) + "."})
	})
	return mux
}

type installData struct{ Name, Fingerprint, NotAfter string }

var installTmpl = template.Must(template.New("install").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>Install the Picket certificate</title>
<style>body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
main{max-width:46rem;margin:5vh auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}
h1{font-size:1.4rem;margin-top:0}h2{font-size:1.1rem;margin-bottom:.3rem}
code,pre{background:#eef;padding:0 .2em;word-break:break-all;white-space:pre-wrap}a.btn{display:inline-block;background:#2456c9;color:#fff;padding:.4rem .9rem;border-radius:4px;text-decoration:none;margin:.2rem .4rem .2rem 0}</style>
</head><body><main>
<h1>Trust your organisation's web filter</h1>
<p>Your organisation inspects secure (HTTPS) traffic to protect you from malware and phishing. Your device must trust
the certificate of <strong>{{.Name}}</strong> for secure sites to open without warnings.</p>
<p><a class="btn" href="/picket-ca.pem">Download (PEM)</a><a class="btn" href="/picket-ca.der">Download (DER)</a></p>
<p>Before installing, check the SHA-256 fingerprint with your administrator:<br><code>{{.Fingerprint}}</code><br>
Valid until {{.NotAfter}}.</p>
<h2>Chromium and Chrome on Linux</h2>
<pre>certutil -d sql:$HOME/.pki/nssdb -A -t "C,," -n picket -i picket-ca.pem</pre>
<h2>Firefox</h2>
<p>Settings → Privacy &amp; Security → Certificates → View Certificates → Authorities → Import, choose the file and
tick "Trust this CA to identify websites". Or set <code>security.enterprise_roots.enabled</code> to use the system store.</p>
<h2>Windows</h2>
<pre>certutil -addstore -f Root picket-ca.der</pre>
<p>(as administrator; or double-click the file → Install Certificate → Local Machine → Trusted Root Certification Authorities)</p>
<h2>macOS</h2>
<pre>sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain picket-ca.pem</pre>
<h2>Linux system store (Debian, Ubuntu)</h2>
<pre>sudo cp picket-ca.pem /usr/local/share/ca-certificates/picket-ca.crt &amp;&amp; sudo update-ca-certificates</pre>
<h2>Linux system store (Fedora, RHEL)</h2>
<pre>sudo cp picket-ca.pem /etc/pki/ca-trust/source/anchors/ &amp;&amp; sudo update-ca-trust</pre>
</main></body></html>
`))
