package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-proxy/picket/reputation"
)

// offsetClock is the wall clock moved forward by the test.
type offsetClock struct{ offset atomic.Int64 }

func (c *offsetClock) now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *offsetClock) advance(d time.Duration) { c.offset.Add(int64(d)) }

// useReputationClock makes the reputation clients of the Pickets this test
// starts use clk; serve reads it when it builds them.
func useReputationClock(t *testing.T, clk *offsetClock) {
	reputationClock = clk.now
	t.Cleanup(func() { reputationClock = nil }) // runs after the Pickets stopped
}

// TestBlockListBlocksEveryTime is the repro: with the host on the
// administrator's block list, every one of 20 requests gets the block page
// (rule reputation.block), not only the first (the later ones used to be
// answered by the verdict cache as an ordinary "unwanted" verdict: a warn
// page the user could click through).
func TestBlockListBlocksEveryTime(t *testing.T) {
	p := startPicket(t, "[reputation]\nblock = [\"reload-test.example\"]\n")
	c := p.client(t)
	const u = "http://reload-test.example/"
	for i := 1; i <= 20; i++ {
		resp, body := fetch(t, c, u, map[string]string{"Accept": "text/html"})
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access blocked") {
			t.Errorf("request %d: got %d %.80q, want 403 and the block page", i, resp.StatusCode, body)
		}
		l := p.nthAccess(t, i, func(l map[string]any) bool { return l["url"] == u })
		if l["action"] != "block" || l["rule"] != "reputation.block" || l["source"] != "local" || (l["cached"] == true) != (i > 1) {
			t.Errorf("request %d: access line %v, want action block, rule reputation.block, source local, cached %v", i, l, i > 1)
		}
	}
}

// nthAccess waits for the n-th access-log line matching pred (1-based).
func (p *picketUnderTest) nthAccess(t *testing.T, n int, pred func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var seen []map[string]any
		for _, l := range p.accessLines() {
			if pred(l) {
				seen = append(seen, l)
			}
		}
		if len(seen) >= n {
			return seen[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d matching access lines, want %d, in:\n%s", len(seen), n, p.stdout.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// provenanceRow is one giver of verdicts in TestVerdictProvenance.
type provenanceRow struct {
	name string
	// reputation is the [reputation] section; %[1]s is the list of hosts
	// under test, %[2]s the feed directory, %[3]s the reputation server.
	reputation string
	feedKind   string // the verdict the service's feed gives the hosts
	action     string // block, allow or warn
	rule       string
	source     string
	cached     bool // the 2nd request is answered by the verdict cache
}

// provenanceColumn is one way a request reaches the decision.
type provenanceColumn struct {
	name string
	// do sends the request of this column to Picket and checks what the
	// client got; it returns the access line of the request (the n-th).
	do func(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any
	// action maps the row's action to the logged one (CONNECT: tunnel,
	// intercept).
	action func(string) string
}

// provenanceEnv is one row's Pickets and the origins they reach.
type provenanceEnv struct {
	a, b     *picketUnderTest // a intercepts, b only tunnels (CONNECT decisions)
	origin   string           // http://127.0.0.1:port
	tlsHost  string           // 127.0.0.1:port of the TLS origin
	tunnel   string           // 127.0.0.1:port of the raw TCP origin
	gw       *gateway
	gwOrigin string // 10.x.y.1:port
	httpsC   *http.Client
	plainC   *http.Client
}

// TestVerdictProvenance is the table of issue 20: whoever gave the verdict
// — the administrator's block list, the allow list, fail = "closed", or
// the reputation service — the decision is the same on every path (fast
// path GET, net/http POST and HTTP/1.0, intercepted HTTPS, the CONNECT
// decision with and without interception, transparent HTTP) on the 1st
// request, the 2nd (answered by the verdict cache), after the cache
// entries' TTL (an injected clock, no sleeping) and after a reload; the
// lists win over the protection table and over the service, whichever
// cache answered. Each row is a real Picket (two: one intercepting, one
// only tunnelling) on a real embedded database or a reputation server that
// is down.
func TestVerdictProvenance(t *testing.T) {
	clk := &offsetClock{}
	useReputationClock(t, clk)

	page := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "origin saw %s %s", r.Method, r.URL.Path)
	})
	origin := httptest.NewServer(page)
	defer origin.Close()
	tlsOrigin := httptest.NewTLSServer(page) // its certificate names 127.0.0.1
	defer tlsOrigin.Close()
	rootFile := filepath.Join(t.TempDir(), "origin.pem")
	if err := os.WriteFile(rootFile, pemOf(tlsOrigin.Certificate()), 0o644); err != nil {
		t.Fatal(err)
	}
	tunnel := greeter(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
		}
	}))
	defer down.Close()

	hosts := []string{"127.0.0.1"}
	gw, why := newGateway(t)
	gwOrigin := ""
	if gw != nil {
		ln, err := net.Listen("tcp", gw.gw+":0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: page}}
		srv.Start()
		defer srv.Close()
		gwOrigin = ln.Addr().String()
		hosts = append(hosts, gw.gw)
	}
	quoted := make([]string, len(hosts))
	for i, h := range hosts {
		quoted[i] = strconv.Quote(h)
	}
	list := "[" + strings.Join(quoted, ", ") + "]"

	rows := []provenanceRow{
		{"block list", "block = %[1]s\n[reputation.kpsn]\ndatabase = %[2]q\n", "malware", "block", "reputation.block", "local", true},
		{"allow list", "allow = %[1]s\n[reputation.kpsn]\ndatabase = %[2]q\n", "malware", "allow", "reputation.allow", "local", true},
		{"fail closed", "mode = \"ksn\"\nfail = \"closed\"\n[reputation.ksn]\nserver = %[3]q\n", "", "block", "reputation.fail", "failure", false},
		{"service verdict", "[reputation.kpsn]\ndatabase = %[2]q\n", "unwanted", "warn", "protection.unwanted", "database", true},
	}
	// The intercepted column comes first: its CONNECT looks up the bare
	// host, so that no other column's lookup has filled the prefix cache
	// for it and every 1st request is a cache miss.
	columns := []provenanceColumn{
		{"intercepted HTTPS", intercepted, same},
		{"CONNECT decision, intercepting", connectLine, func(a string) string {
			if a == "allow" {
				return "intercept"
			}
			return a
		}},
		{"intercepted HTTPS POST", interceptedPOST, same},
		{"fast path GET", fastGET, same},
		{"net/http POST", netPOST, same},
		{"net/http HTTP/1.0", http10, same},
		{"CONNECT decision, tunnel", connectTunnel, func(a string) string {
			if a == "allow" {
				return "tunnel"
			}
			return a
		}},
		{"transparent HTTP", transparentHTTP, same},
	}
	steps := []struct {
		name   string
		before func(t *testing.T, env *provenanceEnv)
	}{
		{"1st", nil},
		{"2nd", nil},
		{"after TTL", func(t *testing.T, env *provenanceEnv) {
			clk.advance(reputation.LocalTTL + time.Minute) // the longest TTL: the lists'
		}},
		{"after reload", func(t *testing.T, env *provenanceEnv) {
			reloadViaAdmin(t, env.a)
			reloadViaAdmin(t, env.b)
		}},
	}

	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			feeds := ""
			if row.feedKind != "" {
				feeds = writeFeed(t, row.feedKind, hosts)
			}
			rep := "[reputation]\n" + fmt.Sprintf(row.reputation, list, feeds, down.URL)
			env := &provenanceEnv{origin: origin.URL, tlsHost: tlsOrigin.Listener.Addr().String(), tunnel: tunnel,
				gw: gw, gwOrigin: gwOrigin}
			transparent := ""
			if gw != nil {
				transparent = fmt.Sprintf("[transparent]\nhttp_listen = %q\n", gw.gw+":0")
			}
			env.a = startPicketAt(t, provenanceConfig(t, gw, rootFile, true, transparent+rep))
			env.b = startPicketAt(t, provenanceConfig(t, gw, rootFile, false, rep))
			if gw != nil {
				_, port, _ := net.SplitHostPort(gwOrigin)
				op, _ := strconv.Atoi(port)
				gw.redirect(t, op, listenerPort(t, env.a, "transparent-http"))
			}
			env.plainC = env.a.client(t)
			env.httpsC = env.a.client(t)
			env.httpsC.Transport.(*http.Transport).DisableKeepAlives = true // a CONNECT, and a decision, per request

			for n, step := range steps {
				if step.before != nil {
					step.before(t, env)
				}
				wantCached := row.cached && step.name == "2nd"
				for _, col := range columns {
					if col.name == "transparent HTTP" && gw == nil {
						if n == 0 {
							t.Logf("%s: skipped: %s", col.name, why)
						}
						continue
					}
					l := col.do(t, env, row, n+1)
					want := col.action(row.action)
					got := fmt.Sprintf("action=%v rule=%v source=%v cached=%v", l["action"], l["rule"], l["source"], l["cached"] == true)
					exp := fmt.Sprintf("action=%v rule=%v source=%v cached=%v", want, row.rule, row.source, wantCached)
					if got != exp {
						t.Errorf("%s, %s: got %s, want %s", col.name, step.name, got, exp)
					} else if testing.Verbose() {
						t.Logf("%-31s %-12s %s", col.name, step.name, got)
					}
				}
			}
		})
	}
}

func same(a string) string { return a }

// provenanceConfig writes a Picket config for TestVerdictProvenance.
func provenanceConfig(t *testing.T, gw *gateway, root string, intercept bool, extra string) string {
	t.Helper()
	dests := `"127.0.0.0/8"`
	if gw != nil {
		dests += fmt.Sprintf(", %q", gw.subnet)
	}
	cfg := fmt.Sprintf(`[proxy]
listen = "127.0.0.1:0"
shutdown_grace = "2s"
allow_destinations = [%s]
allow_ports = ["1-65535"]
[admin]
listen = "127.0.0.1:0"
[tls]
intercept = %v
block_page_intercept = %v
extra_roots = [%q]
`, dests, intercept, intercept, root) + extra
	path := filepath.Join(t.TempDir(), "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFeed writes an embedded database that gives hosts the verdict kind.
func writeFeed(t *testing.T, kind string, hosts []string) string {
	t.Helper()
	dir := t.TempDir()
	toml := fmt.Sprintf("[[source]]\npath = \"hosts.txt\"\nformat = \"urls\"\nverdict = %q\ncategory = \"table-test\"\n", kind)
	if err := os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts.txt"), []byte(strings.Join(hosts, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// greeter is a raw TCP origin that says hello and closes: the far end of
// a tunnel.
func greeter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the tunnel's far end\n")
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// listenerPort finds a listener's port in the application log.
func listenerPort(t *testing.T, p *picketUnderTest, name string) int {
	t.Helper()
	i := strings.Index(p.stderr.String(), `"listener":"`+name+`","listen":"`)
	if i < 0 {
		t.Fatalf("no %s listener in the log:\n%s", name, p.stderr.String())
	}
	rest := p.stderr.String()[i+len(`"listener":"`+name+`","listen":"`):]
	_, port, err := net.SplitHostPort(rest[:strings.IndexByte(rest, '"')])
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}

// reloadViaAdmin reloads p's configuration through the admin API.
func reloadViaAdmin(t *testing.T, p *picketUnderTest) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(p.dir, "data", "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, b := post(t, "http://"+adminAddr(t, p)+"/api/v1/reload", strings.TrimSpace(string(tok))); resp.StatusCode != 200 {
		t.Fatalf("reload: got %d %s", resp.StatusCode, b)
	}
}

// checkPage checks what an HTTP client got for the row's action.
func checkPage(t *testing.T, what string, row provenanceRow, status int, body, path string) {
	t.Helper()
	var ok bool
	switch row.action {
	case "block":
		ok = status == http.StatusForbidden && strings.Contains(body, "Access blocked")
	case "warn":
		ok = status == http.StatusOK && strings.Contains(body, "Warning: think before you continue")
	case "allow":
		ok = status == http.StatusOK && strings.Contains(body, "origin saw") && strings.HasSuffix(body, path)
	}
	if !ok {
		t.Errorf("%s: got %d %.100q, want the %s answer", what, status, body, row.action)
	}
}

var html = map[string]string{"Accept": "text/html"}

func intercepted(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	u := "https://" + env.tlsHost + "/intercepted"
	resp, body := fetch(t, env.httpsC, u, html)
	checkPage(t, "intercepted HTTPS", row, resp.StatusCode, body, "/intercepted")
	return env.a.nthAccess(t, n, func(l map[string]any) bool { return l["method"] == "GET" && l["url"] == u })
}

// connectLine is the CONNECT decision of the intercepted GET's tunnel (its
// own access line; what the client saw is checked there). Each step opens
// two tunnels, the GET's first.
func connectLine(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	return env.a.nthAccess(t, 2*n-1, func(l map[string]any) bool {
		return l["method"] == "CONNECT" && strings.Contains(fmt.Sprint(l["url"]), env.tlsHost)
	})
}

func fastGET(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	u := env.origin + "/fast"
	resp, body := fetch(t, env.plainC, u, html)
	checkPage(t, "fast path GET", row, resp.StatusCode, body, "/fast")
	return env.a.nthAccess(t, n, func(l map[string]any) bool { return l["method"] == "GET" && l["url"] == u })
}

func netPOST(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	return postTo(t, env, env.plainC, row, n, env.origin+"/post", "net/http POST")
}

// interceptedPOST is a request inside an intercepted tunnel that the fast
// path declines (it has a body): net/http serves it.
func interceptedPOST(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	l := postTo(t, env, env.httpsC, row, n, "https://"+env.tlsHost+"/intercepted-post", "intercepted HTTPS POST")
	// Its tunnel's CONNECT line is the step's second: wait for it, so that
	// connectLine counts right at the next step.
	env.a.nthAccess(t, 2*n, func(l map[string]any) bool {
		return l["method"] == "CONNECT" && strings.Contains(fmt.Sprint(l["url"]), env.tlsHost)
	})
	return l
}

func postTo(t *testing.T, env *provenanceEnv, c *http.Client, row provenanceRow, n int, u, what string) map[string]any {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader("form=1"))
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", u, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkPage(t, what, row, resp.StatusCode, string(b), u[strings.LastIndexByte(u, '/'):])
	return env.a.nthAccess(t, n, func(l map[string]any) bool { return l["method"] == "POST" && l["url"] == u })
}

func http10(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	u := env.origin + "/http10"
	status, body := rawExchange(t, env.a.addr, fmt.Sprintf("GET %s HTTP/1.0\r\nHost: %s\r\nAccept: text/html\r\n\r\n",
		u, strings.TrimPrefix(env.origin, "http://")), "GET")
	checkPage(t, "net/http HTTP/1.0", row, status, body, "/http10")
	return env.a.nthAccess(t, n, func(l map[string]any) bool { return l["method"] == "GET" && l["url"] == u })
}

func connectTunnel(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	status, body := rawExchange(t, env.b.addr, fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", env.tunnel), "CONNECT")
	var ok bool
	if row.action == "allow" {
		ok = status == http.StatusOK && body == "hello from the tunnel's far end\n"
	} else {
		ok = status == http.StatusForbidden // a block or a warning cannot be shown in a tunnel
	}
	if !ok {
		t.Errorf("CONNECT decision, tunnel: got %d %.100q for a %s", status, body, row.action)
	}
	return env.b.nthAccess(t, n, func(l map[string]any) bool { return l["method"] == "CONNECT" })
}

func transparentHTTP(t *testing.T, env *provenanceEnv, row provenanceRow, n int) map[string]any {
	u := "http://" + env.gwOrigin + "/transparent"
	status, body := env.gw.curl(t, "-H", "Accept: text/html", u)
	checkPage(t, "transparent HTTP", row, status, body, "/transparent")
	return env.a.nthAccess(t, n, func(l map[string]any) bool { return l["url"] == u })
}

// rawExchange writes a request head on a new connection to addr and reads
// the response and its body (for CONNECT 200: what the tunnel's far end
// sent until it closed).
func rawExchange(t *testing.T, addr, head, method string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a regression fails, it does not hang
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("%s: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	var b []byte
	if method == "CONNECT" && resp.StatusCode == http.StatusOK {
		b, err = io.ReadAll(br)
	} else {
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err != nil {
		t.Fatalf("%s: reading: %v", strings.SplitN(head, "\r\n", 2)[0], err)
	}
	return resp.StatusCode, string(b)
}
