package main

import (
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// squidUnderTest is Debian's squid started by a test as a parent proxy on
// loopback: no cache, its own pid, log and htpasswd files in a directory of
// its own, allowing loopback clients only.
type squidUnderTest struct {
	addr string
	dir  string
}

// startSquid starts squid; with user set it requires Basic credentials
// (squid's basic_ncsa_auth helper with an htpasswd file written here).
func startSquid(t *testing.T, user, pass string) *squidUnderTest {
	t.Helper()
	bin, err := exec.LookPath("squid")
	if err != nil {
		t.Fatal("squid is needed (make test installs it): ", err)
	}
	// squid, started as root, runs as its own user (proxy): the directory
	// must be reachable and writable by it, so it is not under t.TempDir
	// (whose parent is private to us).
	dir := testutil.ShortTempDir(t, "picket-squid-")
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	s := &squidUnderTest{dir: dir, addr: freeAddr(t)}
	auth := "http_access allow localclients\n"
	if user != "" {
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(user+":"+md5Crypt(pass, "picketsq")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf(`auth_param basic program /usr/lib/squid/basic_ncsa_auth %s
auth_param basic children 2 startup=1 idle=1
auth_param basic realm parent
acl authenticated proxy_auth REQUIRED
http_access deny !localclients
http_access allow authenticated
`, htpasswd)
	}
	conf := fmt.Sprintf(`http_port %s
pid_filename %[2]s/squid.pid
access_log stdio:%[2]s/access.log
cache_log %[2]s/cache.log
cache_store_log none
coredump_dir %[2]s
cache deny all
cache_mem 0 MB
pinger_enable off
netdb_filename none
shutdown_lifetime 0 seconds
visible_hostname picket-test-parent
dns_nameservers 127.0.0.1
acl localclients src 127.0.0.0/8
%s
http_access deny all
`, s.addr, dir, auth)
	confPath := filepath.Join(dir, "squid.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-N", "-f", confPath)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case err := <-exited:
			t.Fatalf("squid exited at start: %v\n%s", err, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("squid did not listen on %s:\n%s", s.addr, out.String())
		}
	}
}

// log returns squid's access log so far.
func (s *squidUnderTest) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "access.log"))
	return string(b)
}

// waitLog waits until squid's access log has a line holding every one of
// parts.
func (s *squidUnderTest) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
	lines:
		for _, l := range strings.Split(s.log(), "\n") {
			for _, p := range parts {
				if !strings.Contains(l, p) {
					continue lines
				}
			}
			return l
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no line with %q in squid's access log:\n%s", parts, s.log())
	return ""
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// md5Crypt is the "$1$" MD5-crypt password hash (as `openssl passwd -1`),
// one of the formats squid's basic_ncsa_auth reads.
func md5Crypt(password, salt string) string {
	pw, sl := []byte(password), []byte(salt)
	alt := md5.Sum(append(append(append([]byte{}, pw...), sl...), pw...))
	h := md5.New()
	h.Write(pw)
	h.Write([]byte("$1$"))
	h.Write(sl)
	for i := len(pw); i > 0; i -= 16 {
		h.Write(alt[:min(16, i)])
	}
	for i := len(pw); i > 0; i >>= 1 {
		if i&1 != 0 {
			h.Write([]byte{0})
		} else {
			h.Write(pw[:1])
		}
	}
	final := h.Sum(nil)
	for i := 0; i < 1000; i++ {
		r := md5.New()
		if i&1 != 0 {
			r.Write(pw)
		} else {
			r.Write(final)
		}
		if i%3 != 0 {
			r.Write(sl)
		}
		if i%7 != 0 {
			r.Write(pw)
		}
		if i&1 != 0 {
			r.Write(final)
		} else {
			r.Write(pw)
		}
		final = r.Sum(nil)
	}
	const itoa64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var out []byte
	to64 := func(v uint32, n int) {
		for ; n > 0; n-- {
			out = append(out, itoa64[v&0x3f])
			v >>= 6
		}
	}
	for _, g := range [][3]int{{0, 6, 12}, {1, 7, 13}, {2, 8, 14}, {3, 9, 15}, {4, 10, 5}} {
		to64(uint32(final[g[0]])<<16|uint32(final[g[1]])<<8|uint32(final[g[2]]), 4)
	}
	to64(uint32(final[11]), 2)
	return "$1$" + salt + "$" + string(out)
}

func TestMD5Crypt(t *testing.T) {
	// The value `openssl passwd -1 -salt abcdefgh 's3cr:t@pw'` prints.
	if got, want := md5Crypt("s3cr:t@pw", "abcdefgh"), "$1$abcdefgh$9E8zJcLK2ADcI3nDYhJ1B1"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// testOrigins are the origins of the end-to-end tests through several
// paths: plain HTTP, a TLS origin Picket intercepts (127.0.0.1) and one it
// tunnels untouched (127.0.0.2, for [tls] bypass), and a PEM file of the
// TLS origins' certificates for [tls] extra_roots.
type testOrigins struct {
	plain, intercepted, tunnelled *httptest.Server
	rootsPEM                      string
}

// startTestOrigins serves plain on the plain origin and tlsH on both TLS
// origins until the test ends.
func startTestOrigins(t *testing.T, plain, tlsH http.Handler) testOrigins {
	t.Helper()
	o := testOrigins{plain: httptest.NewServer(plain), intercepted: httptest.NewTLSServer(tlsH)}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	o.tunnelled = &httptest.Server{Listener: ln, Config: &http.Server{Handler: tlsH}}
	o.tunnelled.StartTLS()
	t.Cleanup(func() { o.plain.Close(); o.intercepted.Close(); o.tunnelled.Close() })
	o.rootsPEM = filepath.Join(t.TempDir(), "origins.pem")
	pem := append(pemOf(o.intercepted.Certificate()), pemOf(o.tunnelled.Certificate())...)
	if err := os.WriteFile(o.rootsPEM, pem, 0o644); err != nil {
		t.Fatal(err)
	}
	return o
}

// squidOrigins are the origins of the parent tests.
type squidOrigins struct{ testOrigins }

func startSquidOrigins(t *testing.T) *squidOrigins {
	t.Helper()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("an origin received Proxy-Authorization (%s %s)", r.Method, r.URL)
		}
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	})
	return &squidOrigins{startTestOrigins(t, h, h)}
}

// start starts Picket with parents and the origins trusted. Pooled
// upstream connections are let go after a second, so that squid, which logs
// a tunnel when it ends, soon logs Picket's CONNECTs.
func (o *squidOrigins) start(t *testing.T, parents ...string) *picketUnderTest {
	t.Helper()
	return startPicketWith(t, "upstream_idle_timeout = \"1s\"\n", o.config(parents...))
}

// config is Picket's configuration with parents and the origins trusted.
func (o *squidOrigins) config(parents ...string) string {
	q := make([]string, len(parents))
	for i, p := range parents {
		q[i] = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("[tls]\nextra_roots = [%q]\nbypass = [\"127.0.0.2\"]\n[upstream]\nproxies = [%s]\nbackoff = \"1m\"\n",
		o.rootsPEM, strings.Join(q, ", "))
}

// exercise sends a plain GET, a POST with a body, a request through a
// tunnel and one through an intercepted connection via Picket, and checks
// each answer.
func (o *squidOrigins) exercise(t *testing.T, p *picketUnderTest) {
	t.Helper()
	c := p.client(t)
	tunnelClient := p.client(t)
	tunnelClient.Transport.(*http.Transport).TLSClientConfig.RootCAs.AddCert(o.tunnelled.Certificate())
	tunnelClient.Transport.(*http.Transport).TLSClientConfig.ServerName = "example.com" // the test certificate's name
	for _, tc := range []struct {
		name, method, url, body, want string
		client                        *http.Client
	}{
		{"plain GET", "GET", o.plain.URL + "/plain", "", "GET /plain ", c},
		{"POST", "POST", o.plain.URL + "/post", "a=1&b=2", "POST /post a=1&b=2", c},
		{"intercepted", "GET", o.intercepted.URL + "/inside", "", "GET /inside ", c},
		{"tunnel", "GET", o.tunnelled.URL + "/tunnel", "", "GET /tunnel ", tunnelClient},
	} {
		var body io.Reader
		if tc.body != "" {
			body = strings.NewReader(tc.body)
		}
		req, _ := http.NewRequest(tc.method, tc.url, body)
		resp, err := tc.client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != tc.want {
			t.Errorf("%s through squid: got %d %q, want 200 %q", tc.name, resp.StatusCode, b, tc.want)
		}
	}
	// The client's tunnels end now: squid logs a tunnel when it ends.
	c.Transport.(*http.Transport).CloseIdleConnections()
	tunnelClient.Transport.(*http.Transport).CloseIdleConnections()
}

// TestSquidParent: Picket chained to Debian's squid. Plain requests reach
// squid in absolute form, tunnels and intercepted connections as CONNECTs;
// Picket still logs the intercepted request's full URL and blocks what its
// policy blocks without asking the parent.
func TestSquidParent(t *testing.T) {
	o := startSquidOrigins(t)
	sq := startSquid(t, "", "")
	p := o.start(t, "http://"+sq.addr)
	o.exercise(t, p)
	sq.waitLog(t, "/200 ", "GET "+o.plain.URL+"/plain")
	sq.waitLog(t, "/200 ", "POST "+o.plain.URL+"/post")
	sq.waitLog(t, "TCP_TUNNEL/200", "CONNECT "+strings.TrimPrefix(o.intercepted.URL, "https://"))
	sq.waitLog(t, "TCP_TUNNEL/200", "CONNECT "+strings.TrimPrefix(o.tunnelled.URL, "https://"))
	p.waitAccess(t, func(l map[string]any) bool { return l["url"] == o.intercepted.URL+"/inside" && l["status"] == 200.0 })

	// Picket's decisions are its own: the demo feeds block this host, and
	// squid never hears of it.
	resp, _ := fetch(t, p.client(t), "http://phishing.picket.test/login", nil)
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("blocked host through a parent: got %d, want Picket's 403", resp.StatusCode)
	}
	if strings.Contains(sq.log(), "phishing.picket.test") {
		t.Errorf("a request Picket blocked reached squid")
	}
}

// TestSquidParentAuth: squid requiring Basic credentials (basic_ncsa_auth):
// Picket's credentials from the proxies URL are accepted on every path;
// wrong ones get the client a 502 from Picket (never squid's 407); the
// password is in no log.
func TestSquidParentAuth(t *testing.T) {
	const password = "s3cr:t@pw" // a colon and an at sign: percent-encoded in the URL
	o := startSquidOrigins(t)
	sq := startSquid(t, "picket", password)
	good := "http://picket:s3cr%3At%40pw@" + sq.addr
	p := o.start(t, good)
	o.exercise(t, p)
	sq.waitLog(t, " picket ", "GET "+o.plain.URL+"/plain")
	sq.waitLog(t, " picket ", "CONNECT "+strings.TrimPrefix(o.intercepted.URL, "https://"))

	bad := startPicket(t, o.config("http://picket:wrong@"+sq.addr))
	for _, u := range []string{o.plain.URL + "/x", o.intercepted.URL + "/x"} {
		resp, body := fetchAllowingErr(t, bad.client(t), u)
		if resp == nil {
			continue // the intercepted request: the CONNECT itself gets the 502
		}
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Proxy-Authenticate") != "" || !strings.Contains(body, "refused Picket") {
			t.Errorf("%s with wrong credentials: got %d %q", u, resp.StatusCode, body)
		}
	}
	for _, pu := range []*picketUnderTest{p, bad} {
		pu.stop() // every buffered access-log line written out
		for name, text := range map[string]string{"access": pu.stdout.String(), "application": pu.stderr.String()} {
			if strings.Contains(text, password) || strings.Contains(text, "t%40pw") || strings.Contains(text, "wrong@") {
				t.Errorf("the %s log holds a parent password", name)
			}
		}
	}
}

// fetchAllowingErr GETs u; a transport error (a refused CONNECT) returns nil.
func fetchAllowingErr(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		if !strings.Contains(err.Error(), "Bad Gateway") {
			t.Errorf("GET %s: %v, want a 502 to the CONNECT", u, err)
		}
		return nil, ""
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestSquidParentFailover: the first parent is down (nothing listens), the
// second is squid: every request still succeeds through squid, and the
// status API and the metrics show the first parent down.
func TestSquidParentFailover(t *testing.T) {
	o := startSquidOrigins(t)
	sq := startSquid(t, "", "")
	down := freeAddr(t)
	p := o.start(t, "http://"+down, "http://"+sq.addr)
	o.exercise(t, p)
	sq.waitLog(t, "GET "+o.plain.URL+"/plain")

	admin := "http://" + adminAddr(t, p)
	resp, body := fetch(t, http.DefaultClient, admin+"/api/v1/status", nil)
	var st struct {
		Parents []struct {
			Proxy     string    `json:"proxy"`
			Up        bool      `json:"up"`
			Requests  int       `json:"requests"`
			Failures  int       `json:"failures"`
			RetryAt   time.Time `json:"retry_at"`
			LastError string    `json:"last_error"`
		} `json:"parents"`
	}
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Parents) != 2 {
		t.Fatalf("status: %d %s", resp.StatusCode, body)
	}
	d, s := st.Parents[0], st.Parents[1]
	if d.Proxy != down || d.Up || d.Failures != 1 || d.RetryAt.Before(time.Now().Add(50*time.Second)) || !strings.Contains(d.LastError, "refused") {
		t.Errorf("the down parent in the status: %+v, want down once, retried in about a minute (the back-off)", d)
	}
	if s.Proxy != sq.addr || !s.Up || s.Requests < 4 {
		t.Errorf("squid in the status: %+v, want up with 4 or more requests", s)
	}
	_, metrics := fetch(t, http.DefaultClient, admin+"/metrics", nil)
	for _, want := range []string{
		fmt.Sprintf(`picket_parent_up{parent=%q} 0`, down),
		fmt.Sprintf(`picket_parent_up{parent=%q} 1`, sq.addr),
		fmt.Sprintf(`picket_parent_failures_total{parent=%q} 1`, down),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics: no %q", want)
		}
	}
	l := p.waitApp(t, "parent proxy down")
	if l["parent"] != down {
		t.Errorf("log line %v: want parent %s", l, down)
	}
}

// waitApp waits for an application-log line with msg.
func (p *picketUnderTest) waitApp(t *testing.T, msg string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(p.stderr.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == msg {
				return m
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in the application log:\n%s", msg, p.stderr.String())
	return nil
}
