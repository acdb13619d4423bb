package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/certs"
	"github.com/picket-proxy/picket/internal/testutil"
)

// The addresses of the HAProxy test: clients connect from clientIP,
// HAProxy connects to the nodes from balancerIP (the only address the
// nodes trust with the PROXY protocol), so that a node logging clientIP
// can only have read it from the PROXY header.
const (
	clientIP   = "127.0.0.2"
	balancerIP = "127.0.0.3"
)

// Download size and pace: long enough to be in flight through a node's
// drain delay (3s) and the balancer's detection, short enough for CI.
const (
	downloadSize = 48 << 20
	downloadRate = 6 << 20 // bytes per second
)

// TestHAProxyRollingRestart: two Picket nodes (the real binary) sharing one
// CA and one KPSN server (picket repserver -role private, mirroring a cloud
// repserver), behind Debian's haproxy started with deploy/haproxy.cfg (TCP
// mode, send-proxy-v2, HTTP checks of each node's /readyz). Under
// continuous plain HTTP, CONNECT tunnels, intercepted HTTPS and long
// downloads through HAProxy, each node in turn gets SIGTERM while a
// download is in flight on it, drains (not ready first, HAProxy takes it
// out, its transfers finish), exits 0 and starts again. Nothing fails that
// a user would see: every request gets its right answer (a client retries
// a request whose connection failed before any answer, as browsers do —
// counted and reported), every download arrives whole, and both nodes log
// the client address from the PROXY header.
func TestHAProxyRollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("a rolling restart of two nodes behind haproxy, about a minute")
	}
	haproxyBin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatal("haproxy is needed (make test installs it): ", err)
	}
	bin := buildPicket(t)
	dir := t.TempDir()

	// One CA for both nodes.
	caCert, caKey := filepath.Join(dir, "ca", "picket-ca.pem"), filepath.Join(dir, "ca", "picket-ca.key")
	ca, _, err := certs.Load(certs.Config{CertFile: caCert, KeyFile: caKey})
	if err != nil {
		t.Fatal(err)
	}

	// One KPSN server: a private repserver mirroring a cloud one.
	cloudAddr, privateAddr := freeAddr(t), freeAddr(t)
	startProcess(t, "cloud repserver", bin, "repserver", "-role", "cloud", "-feeds", feedsDir(t), "-listen", cloudAddr)
	waitListening(t, cloudAddr)
	if err := os.MkdirAll(filepath.Join(dir, "mirror"), 0o755); err != nil {
		t.Fatal(err)
	}
	startProcess(t, "private repserver", bin, "repserver", "-role", "private", "-upstream", "http://"+cloudAddr,
		"-feeds", filepath.Join(dir, "mirror"), "-listen", privateAddr)
	waitListening(t, privateAddr)

	// The origins.
	o := newRollingOrigins(t)

	// The nodes.
	nodes := make([]*rollingNode, 2)
	for i := range nodes {
		n := &rollingNode{name: fmt.Sprintf("picket%d", i+1), via: fmt.Sprintf("picket-n%d", i+1),
			proxy: freeAddr(t), admin: freeAddr(t), bin: bin}
		n.access = filepath.Join(dir, n.name+"-access.log")
		n.config = filepath.Join(dir, n.name+".toml")
		cfg := fmt.Sprintf(`[proxy]
listen = %q
proxy_protocol_from = ["%s/32"]
drain_delay = "3s"
shutdown_grace = "30s"
via = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
[admin]
listen = %q
[log]
format = "json"
access_log = %q
[tls]
ca_cert = %q
ca_key = %q
extra_roots = [%q]
bypass = [%q]
[reputation.kpsn]
server = "http://%s"
`, n.proxy, balancerIP, n.via, n.admin, n.access, caCert, caKey, o.rootsPEM, clientIP, privateAddr)
		if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.kill)
		n.start(t)
		nodes[i] = n
	}

	// HAProxy, with the shipped configuration.
	front := freeAddr(t)
	hap := startHAProxy(t, haproxyBin, dir, front, nodes)

	// Both nodes ask the shared KPSN server: the demo phishing host is
	// blocked whichever node answers.
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	g := newTrafficGen(front, pool, o)
	for i := 0; i < 4; i++ {
		resp, err := g.plain.Get("http://phishing.picket.test/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("the demo phishing host through HAProxy: got %d, want 403 from the shared KPSN server's verdict", resp.StatusCode)
		}
	}

	// Continuous mixed traffic.
	ctx, stop := context.WithCancel(context.Background())
	done := g.run(ctx)
	t.Cleanup(func() { stop(); <-done })

	// The rolling restart, one node at a time.
	for _, n := range nodes {
		o.waitDownloadOn(t, n.via, 90*time.Second)
		inFlight := o.activeOn(n.via)
		down, up := "picket/"+n.name+" is DOWN", "picket/"+n.name+" is UP"
		seenDown, seenUp := hap.count(down), hap.count(up)
		t0 := time.Now()
		n.signal(syscall.SIGTERM)
		hap.waitLog(t, down+", reason: Layer7 wrong status, code: 503", seenDown, 30*time.Second) // taken out by /readyz
		n.downAt = time.Now()
		n.downAfter = n.downAt.Sub(t0)
		if err := n.wait(60 * time.Second); err != nil {
			t.Fatalf("%s after SIGTERM: %v\n%s", n.name, err, n.stderr.String())
		}
		n.exitAt = time.Now()
		n.exitAfter = n.exitAt.Sub(t0)
		if !strings.Contains(n.stderr.String(), "draining: /readyz answers 503") {
			t.Errorf("%s did not drain:\n%s", n.name, n.stderr.String())
		}
		for _, id := range inFlight {
			if err := o.downloadResult(id, 30*time.Second); err != nil {
				t.Errorf("download %d, in flight on %s at SIGTERM: %v", id, n.name, err)
			}
		}
		n.drainedDownloads = len(inFlight)
		t1 := time.Now()
		n.start(t)
		hap.waitLog(t, up, seenUp, 30*time.Second)
		n.upAfter = time.Since(t1)
		// Traffic reaches the restarted node again before the next one goes.
		o.waitDownloadOn(t, n.via, 90*time.Second)
	}
	time.Sleep(2 * time.Second)
	stop()
	<-done

	// Nothing a user would see failed.
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, f := range g.failures {
		t.Errorf("a user-visible failure: %s", f)
	}
	// Every connection HAProxy made carried its PROXY header: the nodes,
	// which require one from it, refused none.
	for _, n := range nodes {
		for _, msg := range ppMessages {
			if strings.Contains(n.stderr.String(), msg) {
				t.Errorf("%s refused a connection for its PROXY header:\n%s", n.name, n.stderr.String())
			}
		}
	}
	kinds := []string{"plain", "tunnel", "intercepted", "download"}
	var summary []string
	for _, k := range kinds {
		if g.ok[k] < 3 {
			t.Errorf("only %d %s requests completed", g.ok[k], k)
		}
		summary = append(summary, fmt.Sprintf("%s %d ok, %d retried", k, g.ok[k], g.retries[k]))
	}
	t.Logf("traffic: %s", strings.Join(summary, "; "))
	for _, e := range g.retryErrs {
		t.Logf("retried after: %s", e)
	}
	for _, n := range nodes {
		t.Logf("%s: HAProxy saw it DOWN %.1fs after SIGTERM, it exited after %.1fs (%d download(s) in flight finished), UP %.1fs after its restart",
			n.name, n.downAfter.Seconds(), n.exitAfter.Seconds(), n.drainedDownloads, n.upAfter.Seconds())
		if n.downAfter > n.exitAfter {
			t.Errorf("%s: HAProxy took it out after it had exited", n.name)
		}
		// Once out, HAProxy sent it no new connection while it drained
		// (its tcplog line gives each session's accept time)...
		if hap.acceptedBetween(t, n.name, n.downAt.Add(-10*time.Second), n.downAt) == 0 {
			t.Errorf("%s: no session in HAProxy's log before it went down: the log is not read right", n.name)
		}
		if late := hap.acceptedBetween(t, n.name, n.downAt, n.exitAt); late > 0 {
			t.Errorf("%s: HAProxy sent it %d new connections after taking it out", n.name, late)
		}
		// ... and the clients' kept-alive connections had left it: after
		// that only the downloads in flight were still served there.
		if late := n.requestsBetween(t, n.downAt.Add(500*time.Millisecond), n.exitAt); len(late) > 0 {
			t.Errorf("%s served %d requests other than downloads after HAProxy took it out, e.g. %s", n.name, len(late), late[0])
		}
	}

	// Both nodes logged the client's address from the PROXY header, never
	// the balancer's.
	for _, n := range nodes {
		b, err := os.ReadFile(n.access)
		if err != nil {
			t.Fatal(err)
		}
		log := string(b)
		if c := strings.Count(log, `"client":"`+clientIP+`"`); c < 10 {
			t.Errorf("%s logged the client %s %d times, want it on its requests", n.name, clientIP, c)
		}
		if strings.Contains(log, `"client":"`+balancerIP+`"`) {
			t.Errorf("%s logged the balancer's address as a client", n.name)
		}
	}
}

// buildPicket builds the binary into a temporary directory.
func buildPicket(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "picket")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startProcess starts a helper process that lives until the test ends
// (killed by its PID in cleanup).
func startProcess(t *testing.T, what, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s output:\n%s", what, lastLines(out.String(), 20))
		}
	})
}

// waitListening waits until addr accepts connections.
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s", addr)
		}
	}
}

// rollingNode is one Picket node process, started again after each stop.
type rollingNode struct {
	name, via, proxy, admin, bin, config, access string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
	stderr  *testutil.SyncBuffer // this run's application log

	downAt, exitAt                time.Time // when the test saw HAProxy take it out, and it exit
	downAfter, exitAfter, upAfter time.Duration
	drainedDownloads              int
}

func (n *rollingNode) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(n.bin, "serve", "-config", n.config)
	stderr := &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = io.Discard, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.exited, n.stderr = cmd, exited, stderr
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		n.waitErr = err
		n.mu.Unlock()
		close(exited)
	}()
	waitFor(t, exited, stderr, "picket started")
}

func (n *rollingNode) signal(sig os.Signal) {
	n.mu.Lock()
	defer n.mu.Unlock()
	_ = n.cmd.Process.Signal(sig)
}

// wait waits for the process to exit and returns its error.
func (n *rollingNode) wait(limit time.Duration) error {
	n.mu.Lock()
	exited := n.exited
	n.mu.Unlock()
	select {
	case <-exited:
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.waitErr
	case <-time.After(limit):
		return fmt.Errorf("still running %s after the signal", limit)
	}
}

// kill stops the current process, if it runs (cleanup).
func (n *rollingNode) kill() {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

// requestsBetween lists the requests other than downloads the node
// finished in (from, to), from its access log.
func (n *rollingNode) requestsBetween(t *testing.T, from, to time.Time) []string {
	t.Helper()
	b, err := os.ReadFile(n.access)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		var l struct {
			Time   time.Time `json:"time"`
			URL    string    `json:"url"`
			Method string    `json:"method"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || strings.Contains(l.URL, "/download") {
			continue
		}
		if l.Time.After(from) && l.Time.Before(to) {
			out = append(out, l.Method+" "+l.URL+" at "+l.Time.Format(time.RFC3339Nano))
		}
	}
	return out
}

// haproxyUnderTest is haproxy in the foreground with its log on stdout.
type haproxyUnderTest struct{ out *testutil.SyncBuffer }

// startHAProxy writes deploy/haproxy.cfg's defaults, frontend and backend
// with the test's addresses under a global section for a foreground
// process logging to stdout, and starts haproxy.
func startHAProxy(t *testing.T, bin, dir, front string, nodes []*rollingNode) *haproxyUnderTest {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join("..", "..", "deploy", "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(shipped)
	i := strings.Index(text, "\ndefaults\n")
	if i < 0 {
		t.Fatal("deploy/haproxy.cfg has no defaults section")
	}
	body := text[i:]
	replace := func(old, new string) {
		t.Helper()
		if !strings.Contains(body, old) {
			t.Fatalf("deploy/haproxy.cfg no longer has %q", old)
		}
		body = strings.Replace(body, old, new, 1)
	}
	replace("    bind :3128\n", "    bind "+front+"\n")
	replace("send-proxy-v2\n", "send-proxy-v2 source "+balancerIP+"\n")
	for k, n := range nodes {
		_, adminPort, _ := net.SplitHostPort(n.admin)
		replace(fmt.Sprintf("server picket%d 10.0.0.1%d:3128 check port 9090", k+1, k+1),
			fmt.Sprintf("server %s %s check port %s", n.name, n.proxy, adminPort))
	}
	cfg := "global\n    log stdout format raw local0 info\n    maxconn 4000\n" + body
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-f", path, "-db")
	h := &haproxyUnderTest{out: &testutil.SyncBuffer{}}
	cmd.Stdout, cmd.Stderr = h.out, h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy (%s):\n%s", path, lastLines(h.out.String(), 40))
		}
	})
	waitListening(t, front)
	return h
}

// count is how many times s is in HAProxy's log so far.
func (h *haproxyUnderTest) count(s string) int { return strings.Count(h.out.String(), s) }

// waitLog waits until s is in HAProxy's log more than seen times.
func (h *haproxyUnderTest) waitLog(t *testing.T, s string, seen int, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); h.count(s) <= seen; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in HAProxy's log within %s:\n%s", s, limit, lastLines(h.out.String(), 30))
		}
	}
}

// tcplogLine is a session line of HAProxy's tcplog: client, accept time,
// frontend, backend/server.
var tcplogLine = regexp.MustCompile(`(?m)^\S+ \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d\.\d{3})\] \S+ picket/(\S+) `)

// acceptedBetween counts the sessions HAProxy accepted for server in
// (from, to) and logged so far (a session is logged when it ends).
func (h *haproxyUnderTest) acceptedBetween(t *testing.T, server string, from, to time.Time) int {
	t.Helper()
	n := 0
	for _, m := range tcplogLine.FindAllStringSubmatch(h.out.String(), -1) {
		at, err := time.ParseInLocation("02/Jan/2006:15:04:05.000", m[1], time.Local)
		if err != nil {
			t.Fatalf("tcplog time %q: %v", m[1], err)
		}
		if m[2] == server && at.After(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// rollingOrigins are the origins behind the nodes: plain HTTP with small
// answers and long downloads, a TLS origin the nodes intercept, and one
// (on clientIP, in [tls] bypass) they tunnel untouched.
type rollingOrigins struct {
	testOrigins
	sum [sha256.Size]byte // of every download

	mu      sync.Mutex
	nextID  int
	active  map[int]rollingDownload // downloads in flight at the origin
	results map[int]chan error      // each download's end as the client saw it
}

type rollingDownload struct {
	via   string
	start time.Time
}

func newRollingOrigins(t *testing.T) *rollingOrigins {
	t.Helper()
	o := &rollingOrigins{active: map[int]rollingDownload{}, results: map[int]chan error{}}
	o.sum = sha256.Sum256(downloadBytes())
	small := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "small %s", r.URL.Query().Get("n"))
	})
	mux := http.NewServeMux()
	mux.Handle("/small", small)
	mux.HandleFunc("/download", o.serveDownload)
	o.testOrigins = startTestOrigins(t, mux, small)
	return o
}

var downloadBytes = sync.OnceValue(func() []byte {
	b := make([]byte, downloadSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
})

// serveDownload sends downloadSize bytes at downloadRate, noting which
// node (by its Via pseudonym) fetches it.
func (o *rollingOrigins) serveDownload(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.Atoi(r.URL.Query().Get("id"))
	via := r.Header.Get("Via")
	o.mu.Lock()
	o.active[id] = rollingDownload{via: via, start: time.Now()}
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.active, id)
		o.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(downloadSize))
	b := downloadBytes()
	const chunk = 256 << 10
	start := time.Now()
	for off := 0; off < len(b); off += chunk {
		if _, err := w.Write(b[off : off+chunk]); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		if ahead := time.Duration(off+chunk)*time.Second/downloadRate - time.Since(start); ahead > 0 {
			time.Sleep(ahead)
		}
	}
}

// newDownload returns the id of a new download and the channel its
// result goes to.
func (o *rollingOrigins) newDownload() (int, chan error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.nextID++
	ch := make(chan error, 1)
	o.results[o.nextID] = ch
	return o.nextID, ch
}

// activeOn lists the downloads in flight through the node with this Via
// pseudonym.
func (o *rollingOrigins) activeOn(via string) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ids []int
	for id, d := range o.active {
		if strings.Contains(d.via, via) {
			ids = append(ids, id)
		}
	}
	sort.Ints(ids)
	return ids
}

// waitDownloadOn waits until a download started less than two seconds ago
// is in flight through the node, so that it is still running well after
// a SIGTERM sent now.
func (o *rollingOrigins) waitDownloadOn(t *testing.T, via string, limit time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
		o.mu.Lock()
		for _, d := range o.active {
			if strings.Contains(d.via, via) && time.Since(d.start) < 2*time.Second {
				o.mu.Unlock()
				return
			}
		}
		o.mu.Unlock()
		if time.Now().After(deadline) {
			o.mu.Lock()
			t.Logf("downloads in flight: %+v (%d started)", o.active, o.nextID)
			o.mu.Unlock()
			t.Fatalf("no download went through %s within %s", via, limit)
		}
	}
}

// downloadResult waits for the client's verdict on download id.
func (o *rollingOrigins) downloadResult(id int, limit time.Duration) error {
	o.mu.Lock()
	ch := o.results[id]
	o.mu.Unlock()
	select {
	case err := <-ch:
		ch <- err // for anyone else asking
		return err
	case <-time.After(limit):
		return fmt.Errorf("not finished %s after its node stopped", limit)
	}
}

// trafficGen sends the mixed traffic through HAProxy from clientIP.
type trafficGen struct {
	plain, tunnel, intercepted, download *http.Client
	o                                    *rollingOrigins

	mu        sync.Mutex
	ok        map[string]int
	retries   map[string]int
	retryErrs []string
	failures  []string
}

func newTrafficGen(front string, ca *x509.CertPool, o *rollingOrigins) *trafficGen {
	dial := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientIP)}, Timeout: 5 * time.Second}).DialContext
	proxy := http.ProxyURL(mustURL("http://" + front))
	client := func(tlsConf *tls.Config, keepAlive bool) *http.Client {
		return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{Proxy: proxy, DialContext: dial,
			TLSClientConfig: tlsConf, DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 4}}
	}
	tunnelRoots := x509.NewCertPool()
	tunnelRoots.AddCert(o.tunnelled.Certificate())
	return &trafficGen{
		plain:       client(nil, true),
		tunnel:      client(&tls.Config{RootCAs: tunnelRoots, ServerName: "example.com"}, false), // a new CONNECT each time
		intercepted: client(&tls.Config{RootCAs: ca}, true),
		download:    client(nil, false), // a new connection each: the balancer spreads them
		o:           o,
		ok:          map[string]int{}, retries: map[string]int{},
	}
}

// run starts the workers; the channel closes when they all stopped after
// ctx ends (each finishes the request it is on).
func (g *trafficGen) run(ctx context.Context) <-chan struct{} {
	var wg sync.WaitGroup
	worker := func(f func(n int)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				f(n)
			}
		}()
	}
	for range 2 {
		worker(func(n int) {
			g.get("plain", g.plain, fmt.Sprintf("%s/small?n=%d", g.o.plain.URL, n), fmt.Sprintf("small %d", n))
			time.Sleep(10 * time.Millisecond)
		})
	}
	worker(func(n int) {
		g.get("tunnel", g.tunnel, fmt.Sprintf("%s/small?n=%d", g.o.tunnelled.URL, n), fmt.Sprintf("small %d", n))
		time.Sleep(20 * time.Millisecond)
	})
	worker(func(n int) {
		g.get("intercepted", g.intercepted, fmt.Sprintf("%s/small?n=%d", g.o.intercepted.URL, n), fmt.Sprintf("small %d", n))
		time.Sleep(10 * time.Millisecond)
	})
	for range 3 {
		worker(func(int) {
			id, result := g.o.newDownload()
			result <- g.fetchDownload(id)
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// maxRetries is how often a client tries a request again whose connection
// failed before any answer (as a browser does for a connection that broke
// before the response).
const maxRetries = 3

// get fetches u and checks the body; a failure before any answer is tried
// again, anything else is a failure.
func (g *trafficGen) get(kind string, c *http.Client, u, want string) {
	g.attempt(kind, func() (bool, error) {
		resp, err := c.Get(u)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			return true, fmt.Errorf("GET %s: body: %w", u, err)
		case resp.StatusCode != 200 || string(b) != want:
			return true, fmt.Errorf("GET %s: got %d %q, want 200 %q", u, resp.StatusCode, b, want)
		}
		return true, nil
	})
}

// fetchDownload fetches download id and checks its length and hash.
func (g *trafficGen) fetchDownload(id int) error {
	u := fmt.Sprintf("%s/download?id=%d", g.o.plain.URL, id)
	var result error
	g.attempt("download", func() (bool, error) {
		resp, err := g.download.Get(u)
		if err != nil {
			return false, err
		}
		defer resp.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		switch {
		case resp.StatusCode != 200:
			result = fmt.Errorf("status %d", resp.StatusCode)
		case err != nil:
			result = fmt.Errorf("after %d of %d bytes: %w", n, downloadSize, err)
		case n != downloadSize || [sha256.Size]byte(h.Sum(nil)) != g.o.sum:
			result = fmt.Errorf("%d bytes, sha256 %x: not the file sent", n, h.Sum(nil))
		}
		if result != nil {
			return true, fmt.Errorf("download %d: %w", id, result)
		}
		return true, nil
	})
	return result
}

// attempt runs try until it answers or fails after an answer began;
// answered reports whether a response was received (no retry then).
func (g *trafficGen) attempt(kind string, try func() (answered bool, err error)) {
	for n := 0; ; n++ {
		answered, err := try()
		g.mu.Lock()
		switch {
		case err == nil:
			g.ok[kind]++
		case !answered && n < maxRetries:
			g.retries[kind]++
			g.retryErrs = append(g.retryErrs, kind+": "+err.Error())
		default:
			g.failures = append(g.failures, kind+": "+err.Error())
		}
		g.mu.Unlock()
		if err == nil || answered || n >= maxRetries {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
