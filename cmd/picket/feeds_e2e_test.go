package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/admin"
)

// publisher is a threat-feed server on loopback: it serves each path's
// body with an ETag, answers If-None-Match with 304, and misbehaves as
// told. It counts what it answered.
type publisher struct {
	*httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
	mode   string         // "", "500", "hang", "truncate"
	served map[string]int // "path status sha" → count
}

func newPublisher(t *testing.T) *publisher {
	p := &publisher{bodies: map[string][]byte{}, served: map[string]int{}}
	p.Server = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.Close)
	return p
}

func (p *publisher) publish(path, body string) {
	p.mu.Lock()
	p.bodies[path] = []byte(body)
	p.mu.Unlock()
}

func (p *publisher) setMode(m string) {
	p.mu.Lock()
	p.mode = m
	p.mu.Unlock()
}

func etagOf(b []byte) string { return fmt.Sprintf(`"%x"`, sha256.Sum256(b)) }

// count is how often path was answered with status and, for 200, body.
func (p *publisher) count(path string, status int, body string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == 200 {
		return p.served[fmt.Sprintf("%s %d %s", path, status, etagOf([]byte(body)))]
	}
	return p.served[fmt.Sprintf("%s %d", path, status)]
}

func (p *publisher) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	body, mode := p.bodies[r.URL.Path], p.mode
	etag := etagOf(body)
	status := 200
	switch {
	case mode == "500":
		status = 500
	case r.Header.Get("If-None-Match") == etag && mode == "":
		status = 304
	}
	key := fmt.Sprintf("%s %d", r.URL.Path, status)
	if status == 200 {
		key += " " + etag
	}
	p.served[key]++
	p.mu.Unlock()
	switch {
	case mode == "hang":
		<-r.Context().Done()
	case status != 200:
		w.WriteHeader(status)
	case mode == "truncate":
		w.Header().Set("Content-Length", strconv.Itoa(len(body)+64))
		w.Write(body)
	default:
		w.Header().Set("ETag", etag)
		w.Write(body)
	}
}

// writeFeedConfig writes a Picket config whose embedded database is dir,
// with proxyKeys in [proxy] (allow_destinations included).
func writeFeedConfig(t *testing.T, dir, proxyKeys string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "picket.toml")
	cfg := "[proxy]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"2s\"\nallow_ports = [\"1-65535\"]\n" + proxyKeys +
		"[admin]\nlisten = \"127.0.0.1:0\"\n" +
		fmt.Sprintf("[reputation.kpsn]\ndatabase = %q\nreload = \"1s\"\n", dir)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// status reads GET /api/v1/status.
func (p *picketUnderTest) status(t *testing.T) admin.Status {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr(t, p) + "/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st admin.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *picketUnderTest) feed(t *testing.T, name string) admin.Feed {
	t.Helper()
	for _, f := range p.status(t).Feeds {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no feed %s in the status", name)
	return admin.Feed{}
}

// waitFeed polls the status until cond holds for the feed (the refresh is
// short; no sleeping for a fixed time).
func (p *picketUnderTest) waitFeed(t *testing.T, name, what string, cond func(admin.Feed) bool) admin.Feed {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := p.feed(t, name)
		if cond(f) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("feed %s: %s did not happen; last state %+v", name, what, f)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric reads one sample of the metrics.
func (p *picketUnderTest) metric(t *testing.T, sample string) float64 {
	t.Helper()
	_, body := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/metrics", nil)
	m := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in the metrics", sample)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// blocked reports whether Picket blocks a GET of u.
func blocked(t *testing.T, p *picketUnderTest, u string) bool {
	t.Helper()
	resp, _ := fetch(t, p.client(t), u, nil)
	return resp.StatusCode == http.StatusForbidden
}

// TestFeedsEndToEnd: a URL source on a local feed server, through a
// running Picket. A new entry published is enforced by the first refresh
// that sees it; 304s cost no reload; a 500, a timeout, a truncated body,
// an oversized body and a body that parses to almost nothing each keep the
// last good copy and show in the status and the metrics; a restart with
// the feed server down starts with the last good copy.
func TestFeedsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	pub := newPublisher(t)
	v1 := "http://one.feed.test/\nhttp://two.feed.test/\nhttp://three.feed.test/\nhttp://four.feed.test/\n"
	pub.publish("/list.txt", v1)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(fmt.Sprintf(`
[[source]]
name = "blocklist"
url = %q
format = "urls"
verdict = "phishing"
refresh = "1s"
stale_after = "1h"
timeout = "1s"
max_size = "1KiB"
`, pub.URL+"/list.txt")), 0o644)
	path := writeFeedConfig(t, dir, "allow_destinations = [\"127.0.0.0/8\"]\n")
	p := startPicketAt(t, path)

	// 1. The first download at start.
	f := p.waitFeed(t, "blocklist", "the first download", func(f admin.Feed) bool { return f.Entries == 4 })
	if f.Missing || f.Stale || f.LastSuccess.IsZero() || f.URL != pub.URL+"/list.txt" {
		t.Errorf("after the first download: %+v", f)
	}
	if !blocked(t, p, "http://two.feed.test/") || blocked(t, p, "http://five.feed.test/") {
		t.Fatal("the downloaded list is not what Picket enforces")
	}

	// 2. A new entry, published: enforced by the refresh that fetches it.
	v2 := v1 + "http://five.feed.test/\n"
	pub.publish("/list.txt", v2)
	p.waitFeed(t, "blocklist", "the new entry", func(f admin.Feed) bool { return f.Entries == 5 })
	if !blocked(t, p, "http://five.feed.test/") {
		t.Error("the new entry is not enforced after the refresh that fetched it")
	}
	if n := pub.count("/list.txt", 200, v2); n != 1 {
		t.Errorf("the new list was downloaded %d times, want once (then 304s)", n)
	}

	// 3. 304s cost no reload: the database version stays.
	version := p.status(t).Databases[0].Version
	n304 := pub.count("/list.txt", 304, "")
	p.waitFeed(t, "blocklist", "two more checks", func(admin.Feed) bool { return pub.count("/list.txt", 304, "") >= n304+2 })
	if v := p.status(t).Databases[0].Version; v != version {
		t.Errorf("database version %d → %d after 304s, want no reload", version, v)
	}
	if pub.count("/list.txt", 200, v2) != 1 {
		t.Error("a refresh downloaded the unchanged list in full")
	}

	// 4. Failures keep the last good copy and show.
	failures := []struct {
		name, mode, body, want string
	}{
		{"500", "500", "", "500 Internal Server Error"},
		{"timeout", "hang", "", "timed out"},
		{"truncated", "truncate", v2 + "http://six.feed.test/\n", "truncated"},
		{"oversized", "", strings.Repeat("http://big.feed.test/\n", 60), "larger than max_size"},
		{"almost nothing", "", "http://one.feed.test/\n", "too few entries"},
	}
	for _, fc := range failures {
		before := p.feed(t, "blocklist")
		errsBefore := p.metric(t, `picket_feed_errors_total{source="blocklist"}`)
		if fc.body != "" {
			pub.publish("/list.txt", fc.body)
		}
		pub.setMode(fc.mode)
		f := p.waitFeed(t, "blocklist", fc.name+" reported", func(f admin.Feed) bool {
			return f.Errors > before.Errors && strings.Contains(f.LastError, fc.want)
		})
		if f.Entries != 5 || f.Failures == 0 || f.LastErrorAt.IsZero() {
			t.Errorf("%s: status %+v, want the last good copy's 5 entries and the failure", fc.name, f)
		}
		if got := p.metric(t, `picket_feed_errors_total{source="blocklist"}`); got <= errsBefore {
			t.Errorf("%s: picket_feed_errors_total %v, was %v", fc.name, got, errsBefore)
		}
		if p.metric(t, `picket_feed_entries{source="blocklist"}`) != 5 {
			t.Errorf("%s: picket_feed_entries changed", fc.name)
		}
		if !blocked(t, p, "http://five.feed.test/") || !blocked(t, p, "http://one.feed.test/") {
			t.Errorf("%s: the last good copy is no longer enforced", fc.name)
		}
		pub.setMode("")
		pub.publish("/list.txt", v2)
	}
	// Back to normal: the failures clear, the data never changed.
	p.waitFeed(t, "blocklist", "recovery", func(f admin.Feed) bool { return f.Failures == 0 })

	// 5. Restart with the feed server down: the last good copy, at once.
	p.stop()
	pub.Close()
	p2 := startPicketAt(t, path)
	f = p2.feed(t, "blocklist")
	if f.Entries != 5 || f.Missing || f.LastSuccess.IsZero() {
		t.Errorf("after restart: %+v, want the last good copy", f)
	}
	if !blocked(t, p2, "http://five.feed.test/") || blocked(t, p2, "http://seven.feed.test/") {
		t.Error("after restart without the feed server: the last good copy is not enforced")
	}
	f = p2.waitFeed(t, "blocklist", "a failed download", func(f admin.Feed) bool { return f.Failures > 0 })
	if !strings.Contains(f.LastError, "refused") || f.Entries != 5 {
		t.Errorf("feed server down: %+v", f)
	}
}

// TestFeedsAddressList: a CIDR entry of a downloaded Spamhaus DROP list
// blocks a CONNECT and a plain GET to a host name that resolves into the
// network (localhost: 127.0.0.1, or ::1 where the hosts file says so), on
// the address actually dialled. Picket's own downloads obey the lists too.
func TestFeedsAddressList(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "origin") }))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	byName := "http://localhost:" + port + "/page"

	pub := newPublisher(t)
	const meta = `{"type":"metadata","timestamp":1735689600,"size":2,"records":1,"copyright":"test","terms":"test"}` + "\n"
	pub.publish("/drop_v4.json", `{"cidr":"192.0.2.0/24","sblid":"SBL000001","rir":"arin"}`+"\n"+meta)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(fmt.Sprintf(`
[[source]]
name = "drop"
url = %q
format = "spamhaus-drop"
category = "hijacked-network"
refresh = "1s"
`, pub.URL+"/drop_v4.json")), 0o644)
	// Tunnel CONNECTs to localhost (no interception): the CONNECT itself
	// dials. (Inside intercepted tunnels each request dials: see the
	// proxy package's TestBlockAddress.)
	path := writeFeedConfig(t, dir, "allow_destinations = [\"127.0.0.0/8\", \"::1/128\"]\n")
	cfg, _ := os.ReadFile(path)
	os.WriteFile(path, append(cfg, "[tls]\nbypass = [\"localhost\"]\n"...), 0o644)
	p := startPicketAt(t, path)
	p.waitFeed(t, "drop", "the first download", func(f admin.Feed) bool { return f.Entries == 1 })

	connect := func() int {
		t.Helper()
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT localhost:%s HTTP/1.1\r\nHost: localhost:%s\r\n\r\n", port, port)
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: "CONNECT"})
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	// Not listed yet: both reach the origin.
	if resp, body := fetch(t, p.client(t), byName, nil); resp.StatusCode != 200 || body != "origin" {
		t.Fatalf("GET before listing: %d %q", resp.StatusCode, body)
	}
	if code := connect(); code != 200 {
		t.Fatalf("CONNECT before listing: %d", code)
	}

	// The loopback networks are published; once downloaded, both are
	// blocked, with the SBL id on the block page and in the access log.
	pub.publish("/drop_v4.json", `{"cidr":"192.0.2.0/24","sblid":"SBL000001","rir":"arin"}`+"\n"+
		`{"cidr":"127.0.0.0/8","sblid":"SBL999999","rir":"test"}`+"\n"+`{"cidr":"::1/128","sblid":"SBL999999","rir":"test"}`+"\n"+meta)
	p.waitFeed(t, "drop", "the loopback entries", func(f admin.Feed) bool { return f.Entries == 3 })
	if st := p.status(t); st.Databases[0].Networks != 3 {
		t.Errorf("database networks: %+v", st.Databases)
	}
	resp, body := fetch(t, p.client(t), byName, map[string]string{"Accept": "text/html"})
	if resp.StatusCode != 403 || !strings.Contains(body, "SBL999999") || !strings.Contains(body, "hijacked-network") {
		t.Errorf("GET to a listed network: %d %.300q, want a block page naming SBL999999", resp.StatusCode, body)
	}
	if code := connect(); code != 403 {
		t.Errorf("CONNECT to a listed network: %d, want 403", code)
	}
	l := p.waitAccess(t, func(l map[string]any) bool { return l["method"] == "CONNECT" && l["action"] == "block" })
	if l["verdict"] != "malware" || l["rule"] != "feeds.drop" || l["category"] != "hijacked-network" || l["status"] != float64(403) {
		t.Errorf("access line of the blocked CONNECT: %v", l)
	}
	// The feed server is on loopback too: the next download is refused
	// like user traffic, and the list in force stays.
	f := p.waitFeed(t, "drop", "a refused download", func(f admin.Feed) bool { return f.Failures > 0 })
	if !strings.Contains(f.LastError, "blocked") || f.Entries != 3 {
		t.Errorf("download from a listed network: %+v", f)
	}
}

// TestFeedDownloadsFollowDestinationPolicy: with loopback not allowed as a
// destination, a feed on loopback is not downloaded either.
func TestFeedDownloadsFollowDestinationPolicy(t *testing.T) {
	pub := newPublisher(t)
	pub.publish("/l.txt", "a.feed.test\n")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(fmt.Sprintf("[[source]]\nname = \"l\"\nurl = %q\nformat = \"domains\"\n", pub.URL+"/l.txt")), 0o644)
	p := startPicketAt(t, writeFeedConfig(t, dir, ""))
	f := p.waitFeed(t, "l", "a refused download", func(f admin.Feed) bool { return f.Failures > 0 })
	if !strings.Contains(f.LastError, "not allowed") || !f.Missing || !f.Stale {
		t.Errorf("feed on a denied destination: %+v", f)
	}
	if pub.count("/l.txt", 200, "a.feed.test\n") != 0 {
		t.Error("the feed server was reached")
	}
	// Never downloaded: degraded, not unready.
	resp, body := fetch(t, http.DefaultClient, "http://"+adminAddr(t, p)+"/readyz", nil)
	if resp.StatusCode != 200 || !strings.Contains(body, `"degraded"`) || !strings.Contains(body, "feed l: no copy downloaded yet") {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
}

// TestFeedsCLI: picket feeds check validates offline, feeds update
// downloads now through the configured destination policy, feeds list
// shows each source's state.
func TestFeedsCLI(t *testing.T) {
	pub := newPublisher(t)
	pub.publish("/hashes.txt", "# MalwareBazaar\n275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n44d88612fea8a8f36de82e1278abb02f\n")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte(fmt.Sprintf(`
[[source]]
path = "local.txt"
format = "domains"
[[source]]
name = "bazaar"
url = %q
format = "hashes"
refresh = "6h"
`, pub.URL+"/hashes.txt")), 0o644)
	os.WriteFile(filepath.Join(dir, "local.txt"), []byte("evil.test\n<html>\nbad one\n"), 0o644)
	cfg := writeFeedConfig(t, dir, "allow_destinations = [\"127.0.0.0/8\"]\n")
	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"feeds"}, args...), &out, &errb)
		return code, out.String() + errb.String()
	}

	code, out := cli("check", dir)
	if code != 0 || !strings.Contains(out, "local.txt: domains, 1 entries, 2 bad lines") || !strings.Contains(out, "local.txt:2: want one domain a line") ||
		!strings.Contains(out, "bazaar: hashes, not downloaded yet") {
		t.Errorf("check: %d\n%s", code, out)
	}
	if code, out := cli("check", "-strict", dir); code != 1 || !strings.Contains(out, "FAILED") {
		t.Errorf("check -strict with bad lines: %d\n%s", code, out)
	}
	if code, out := cli("update", "-config", cfg); code != 0 || !strings.Contains(out, "bazaar: updated, 2 entries") {
		t.Errorf("update: %d\n%s", code, out)
	}
	if code, out := cli("update", "-config", cfg, "bazaar"); code != 0 || !strings.Contains(out, "bazaar: unchanged, 2 entries") {
		t.Errorf("second update: %d\n%s", code, out)
	}
	if code, out := cli("update", "-config", cfg, "-force", "bazaar"); code != 0 || !strings.Contains(out, "bazaar: unchanged, 2 entries") ||
		pub.count("/hashes.txt", 200, "# MalwareBazaar\n275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f\n44d88612fea8a8f36de82e1278abb02f\n") != 2 {
		t.Errorf("forced update (same bytes): %d\n%s", code, out)
	}
	if code, out := cli("update", "-config", cfg, "local.txt"); code != 1 || !strings.Contains(out, "no such URL source") {
		t.Errorf("update of a local source: %d\n%s", code, out)
	}
	code, out = cli("list", "-config", cfg)
	if code != 0 || !regexp.MustCompile(`bazaar\s+hashes\s+2\s+0\s+\d+s ago\s+in 5h\d\dm\s+ok\s+http://`).MatchString(out) ||
		!regexp.MustCompile(`local.txt\s+domains\s+1\s+2\s`).MatchString(out) {
		t.Errorf("list: %d\n%s", code, out)
	}
	code, out = cli("check", dir)
	if code != 0 || !strings.Contains(out, "bazaar: hashes, 2 entries, 0 bad lines") {
		t.Errorf("check after the download: %d\n%s", code, out)
	}

	// A failed download keeps the copy, exits 1 and shows in list.
	pub.setMode("500")
	if code, out := cli("update", "-config", cfg); code != 1 || !strings.Contains(out, "bazaar: failed, keeping the last good copy (2 entries)") {
		t.Errorf("failed update: %d\n%s", code, out)
	}
	code, out = cli("list", "-config", cfg, "-json")
	var feeds []admin.Feed
	if err := json.Unmarshal([]byte(out), &feeds); code != 0 || err != nil || len(feeds) != 2 || feeds[1].Failures != 1 ||
		feeds[1].Entries != 2 || !strings.Contains(feeds[1].LastError, "500") {
		t.Errorf("list -json after a failure: %d %v\n%s", code, err, out)
	}

	// A bad feeds.toml: the file, the source and the key.
	os.WriteFile(filepath.Join(dir, "feeds.toml"), []byte("[[source]]\nname = \"x\"\nurl = \"ftp://a.example/\"\nformat = \"hashes\"\n"), 0o644)
	if code, out := cli("check", dir); code != 1 || !strings.Contains(out, "feeds.toml: source 1 (x): url: invalid URL") {
		t.Errorf("check of a bad manifest: %d\n%s", code, out)
	}
	if code, _ := cli("frobnicate"); code != 2 {
		t.Errorf("unknown subcommand: exit %d, want 2", code)
	}
}
