// Command dbbench measures the reputation database at real size, the way
// an administrator meets it: it generates a feed directory of millions of
// entries (internal/feedgen: URL expressions, domains and SHA-256
// signatures, each URL and signature with its own threat name) into a
// temporary directory, then runs the picket binary on it with the
// repository's config.toml (only the listen addresses changed) and
// measures, in several runs: the first load (feeds parsed, compiled file
// written), a restart from the compiled file, the resident memory after
// start and after a sweep of lookups through the proxy (every one a listed
// URL, every one must be blocked), and a reload after a feed changed. Last
// it opens the same database in this process and runs the lookup
// benchmarks (ns/op and allocations). Everything stays on loopback and in
// the temporary directory, which is removed at the end (-keep keeps it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/feedgen"
	"github.com/picket-proxy/picket/internal/procstat"
	"github.com/picket-proxy/picket/reputation"
	"github.com/picket-proxy/picket/reputation/db"
	"github.com/rs/zerolog"
)

func main() {
	bin := flag.String("bin", "bin/picket", "picket binary to measure")
	config := flag.String("config", "config.toml", "configuration to run it with (listen addresses are replaced)")
	n := flag.Int("entries", 5_000_000, "entries to generate")
	runs := flag.Int("runs", 3, "runs: each a first load, a lookup sweep, a reload and a restart")
	lookups := flag.Int("lookups", 20_000, "requests through the proxy in each sweep")
	reload := flag.Bool("reload", true, "measure a reload after a feed changed")
	inproc := flag.Bool("inprocess", true, "run the in-process lookup benchmarks on the same database")
	keep := flag.String("keep", "", "generate into (or reuse) this directory and keep it")
	flag.Parse()
	if err := run(*bin, *config, *n, *runs, *lookups, *reload, *inproc, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "dbbench:", err)
		os.Exit(1)
	}
}

func run(bin, config string, n, runs, lookups int, reload, inproc bool, keep string) error {
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	base := keep
	if base == "" {
		if base, err = os.MkdirTemp("", "picket-dbbench-"); err != nil {
			return err
		}
		defer os.RemoveAll(base)
	}
	feeds := filepath.Join(base, "data", "feeds")
	if err := os.MkdirAll(feeds, 0o755); err != nil {
		return err
	}
	fmt.Printf("dbbench: %s entries: %s URL expressions and %s SHA-256 signatures, each with its own threat name, %s domains\n",
		count(n), count(n*4/10), count(n*3/10), count(n*3/10))
	if _, err := os.Stat(filepath.Join(feeds, feedgen.HashFile)); err != nil || keep == "" {
		start := time.Now()
		size, err := feedgen.Write(feeds, n)
		if err != nil {
			return err
		}
		fmt.Printf("feeds: %.0f MB generated in %s into %s\n", float64(size)/1e6, time.Since(start).Round(time.Millisecond), feeds)
	}
	if err := setup(base, config); err != nil {
		return err
	}
	fmt.Printf("machine: %d CPUs, load average %s; config %s (listen addresses replaced); binary %s\n\n",
		runtime.NumCPU(), loadavg(), config, bin)

	var rows []row
	for r := 1; r <= runs; r++ {
		rw, err := oneRun(bin, base, n, lookups, reload)
		if err != nil {
			return fmt.Errorf("run %d: %w", r, err)
		}
		rw.print(r)
		rows = append(rows, rw)
	}
	summary(rows)
	if inproc {
		return benchmarks(feeds, n)
	}
	return nil
}

// setup writes base/config.toml from the repository's, on free ports, and
// links the signatures its scanner section expects.
func setup(base, config string) error {
	data, err := os.ReadFile(config)
	if err != nil {
		return err
	}
	cfg := string(data)
	for _, def := range []string{`listen = "127.0.0.1:3128"`, `listen = "127.0.0.1:9090"`} {
		if !strings.Contains(cfg, def) {
			return fmt.Errorf("%s: no %s to replace", config, def)
		}
		addr, err := freePort()
		if err != nil {
			return err
		}
		cfg = strings.Replace(cfg, def, fmt.Sprintf("listen = %q", addr), 1)
	}
	if err := os.WriteFile(filepath.Join(base, "config.toml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	sigs, err := filepath.Abs(filepath.Join(filepath.Dir(config), "data", "signatures"))
	if err != nil {
		return err
	}
	link := filepath.Join(base, "data", "signatures")
	os.Remove(link)
	return os.Symlink(sigs, link)
}

func proxyAddr(base string) (string, error) {
	data, err := os.ReadFile(filepath.Join(base, "config.toml"))
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "listen = ") {
			return strings.Trim(strings.TrimPrefix(line, "listen = "), `"`), nil
		}
	}
	return "", errors.New("no listen address")
}

// row is one run's figures.
type row struct {
	first, restart       start
	rssStart, rssSweep   mem
	rssRestart           mem
	sweep                sweep
	reload               time.Duration
	reloadPeak, reloaded mem
	dbBytes              int64
}

type start struct {
	ready   time.Duration // process start to the proxy accepting connections
	cpu     time.Duration // the process's CPU time by then
	elapsed time.Duration // as logged by the database ("feeds loaded" / "compiled feeds opened")
	how     string
	hwm     mem // peak resident memory by then
}

type mem struct{ rss, anon, file int64 }

func memOf(pid int) mem {
	m := procstat.Memory(pid)
	return mem{m.RSS, m.Anon, m.File}
}

func (m mem) String() string {
	if m.anon == 0 && m.file == 0 {
		return fmt.Sprintf("%4.0f", mib(m.rss))
	}
	return fmt.Sprintf("%4.0f (%3.0f+%3.0f)", mib(m.rss), mib(m.anon), mib(m.file))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func oneRun(bin, base string, n, lookups int, reload bool) (row, error) {
	var rw row
	feeds := filepath.Join(base, "data", "feeds")
	os.Remove(filepath.Join(feeds, db.DefaultCompiled))
	// Restore the domains file a previous run's reload changed.
	if err := restoreDomains(feeds, n); err != nil {
		return rw, err
	}

	p, err := startPicket(bin, base)
	if err != nil {
		return rw, err
	}
	rw.first = p.started
	settle()
	rw.rssStart = memOf(p.pid())
	if rw.sweep, err = sweepLookups(p.addr, n, lookups); err != nil {
		p.stop()
		return rw, err
	}
	settle()
	rw.rssSweep = memOf(p.pid())
	if fi, err := os.Stat(filepath.Join(feeds, db.DefaultCompiled)); err == nil {
		rw.dbBytes = fi.Size()
	}
	if reload {
		if err := p.reload(feeds, &rw); err != nil {
			p.stop()
			return rw, err
		}
	}
	p.stop()

	p, err = startPicket(bin, base)
	if err != nil {
		return rw, err
	}
	rw.restart = p.started
	if _, err = sweepLookups(p.addr, n, lookups); err != nil {
		p.stop()
		return rw, err
	}
	settle()
	rw.rssRestart = memOf(p.pid())
	p.stop()
	return rw, nil
}

// settle lets the runtime return freed memory before a measurement.
func settle() { time.Sleep(3 * time.Second) }

func restoreDomains(feeds string, n int) error {
	path := filepath.Join(feeds, feedgen.DomainFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if i := strings.Index(string(data), "\n0.0.0.0 dbbench-reload-"); i >= 0 {
		return os.WriteFile(path, data[:i+1], 0o644)
	}
	return nil
}

// sweep is a run of lookups through the proxy.
type sweep struct {
	n, blocked int
	d          time.Duration
}

// sweepLookups requests listed URLs and domains (never file hashes: those
// need downloads) through the proxy, 8 at a time: every one must be
// blocked, and every one makes the proxy search the database for each of
// the URL's expressions, so the sweep touches pages all over it.
func sweepLookups(addr string, n, count int) (sweep, error) {
	proxy := &url.URL{Scheme: "http", Host: addr}
	client := &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(proxy), MaxIdleConnsPerHost: 8},
		Timeout:   30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	var next, blocked atomic.Int64
	var firstErr atomic.Pointer[error]
	t0 := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), uint64(t0.UnixNano())))
			for next.Add(1) <= int64(count) {
				i := r.IntN(n)
				for feedgen.ClassOf(i) == feedgen.FileHash {
					i = r.IntN(n)
				}
				u := "http://" + feedgen.Host(i) + "/"
				if feedgen.ClassOf(i) == feedgen.URL {
					u = feedgen.RawURL(i)
				}
				resp, err := client.Get(u)
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusForbidden {
					blocked.Add(1)
				} else {
					err := fmt.Errorf("%s: status %d, want 403 (blocked)", u, resp.StatusCode)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	s := sweep{n: count, blocked: int(blocked.Load()), d: time.Since(t0)}
	if e := firstErr.Load(); e != nil {
		return s, *e
	}
	return s, nil
}

func (rw row) print(r int) {
	if r == 1 {
		fmt.Println("run  first load: ready  CPU    logged | restart: ready  CPU    logged | RSS MiB (anon+file): after start  after sweep       after restart+sweep | reload: time  peak RSS          after")
	}
	fmt.Printf("%-4d %17s %6s %7s | %14s %6s %7s | %30s %17s %19s | %12s %17s %17s\n", r,
		dur(rw.first.ready), dur(rw.first.cpu), dur(rw.first.elapsed),
		dur(rw.restart.ready), dur(rw.restart.cpu), dur(rw.restart.elapsed),
		rw.rssStart, rw.rssSweep, rw.rssRestart,
		dur(rw.reload), rw.reloadPeak, rw.reloaded)
	fmt.Printf("     peak RSS during the first load %.0f MiB; compiled file %.0f MiB; sweep: %d of %d blocked, %.0f requests/s\n",
		mib(rw.first.hwm.rss), mib(rw.dbBytes), rw.sweep.blocked, rw.sweep.n, float64(rw.sweep.n)/rw.sweep.d.Seconds())
}

func summary(rows []row) {
	pick := func(f func(row) float64) string {
		v := make([]float64, len(rows))
		for i, r := range rows {
			v[i] = f(r)
		}
		return fmt.Sprintf("%.2f–%.2f", slices.Min(v), slices.Max(v))
	}
	sec := func(d time.Duration) float64 { return d.Seconds() }
	fmt.Printf("\nranges over %d runs:\n", len(rows))
	fmt.Printf("  first load, start to ready: %s s (CPU %s s)\n", pick(func(r row) float64 { return sec(r.first.ready) }), pick(func(r row) float64 { return sec(r.first.cpu) }))
	fmt.Printf("  restart from the compiled file, start to ready: %s s (CPU %s s)\n", pick(func(r row) float64 { return sec(r.restart.ready) }), pick(func(r row) float64 { return sec(r.restart.cpu) }))
	fmt.Printf("  RSS after start %s MiB, after the lookup sweep %s MiB, after a restart and a sweep %s MiB\n",
		pick(func(r row) float64 { return mib(r.rssStart.rss) }), pick(func(r row) float64 { return mib(r.rssSweep.rss) }),
		pick(func(r row) float64 { return mib(r.rssRestart.rss) }))
	fmt.Printf("  peak RSS during the first load %s MiB\n", pick(func(r row) float64 { return mib(r.first.hwm.rss) }))
	if rows[0].reload > 0 {
		fmt.Printf("  reload %s s, peak RSS during it %s MiB, after it %s MiB\n", pick(func(r row) float64 { return sec(r.reload) }),
			pick(func(r row) float64 { return mib(r.reloadPeak.rss) }), pick(func(r row) float64 { return mib(r.reloaded.rss) }))
	}
}

// benchmarks opens the compiled database in this process and measures
// lookups on it.
func benchmarks(feeds string, n int) error {
	st, err := db.Open(db.Config{Dir: feeds, Poll: -1}, zerolog.Nop())
	if err != nil {
		return err
	}
	defer st.Close()
	d := st.DB()
	fmt.Printf("\nin-process lookups on the same database (%s entries, %d runs each; ns/op and allocations per op):\n", count(d.Len()), 3)
	r := rand.New(rand.NewPCG(1, 2))
	var absent []reputation.Prefix
	for len(absent) < 1024 {
		p := reputation.Prefix(r.Uint32())
		if len(d.Find(nil, p)) == 0 {
			absent = append(absent, p)
		}
	}
	var present []reputation.Prefix
	var urls []string
	for len(present) < 1024 {
		i := r.IntN(n)
		present = append(present, feedgen.Key(i).Prefix())
		if feedgen.ClassOf(i) == feedgen.URL {
			urls = append(urls, feedgen.RawURL(i))
		}
	}
	for i := 0; len(urls) < 2048; i++ {
		urls = append(urls, fmt.Sprintf("http://www.unlisted-%d.example/a/b/c.html?q=%d", i, i)) // misses
	}
	c, err := reputation.New(reputation.Config{Backend: st, CacheSize: 1}, zerolog.Nop())
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	cases := []struct {
		name string
		fn   func(b *testing.B)
	}{
		{"db.Find, absent prefix (most lookups)", func(b *testing.B) {
			var es []db.Entry
			for i := 0; i < b.N; i++ {
				es = d.Find(es[:0], absent[i%len(absent)])
			}
		}},
		{"db.Find, the same present entry", func(b *testing.B) {
			var es []db.Entry
			for i := 0; i < b.N; i++ {
				es = d.Find(es[:0], present[0])
			}
		}},
		{"db.Find, 1024 present entries in turn", func(b *testing.B) {
			var es []db.Entry
			for i := 0; i < b.N; i++ {
				es = d.Find(es[:0], present[i%len(present)])
			}
		}},
		{"Client.Lookup, URL, caches missed (half listed)", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				c.Lookup(ctx, reputation.Query{URL: urls[i%len(urls)]})
			}
		}},
	}
	for _, cs := range cases {
		var ns, allocs []float64
		for k := 0; k < 3; k++ {
			res := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				cs.fn(b)
			})
			ns = append(ns, float64(res.T)/float64(res.N))
			allocs = append(allocs, float64(res.MemAllocs)/float64(res.N))
		}
		fmt.Printf("  %-50s %7.0f–%-7.0f ns/op  %.2f–%.2f allocs/op\n", cs.name, slices.Min(ns), slices.Max(ns), slices.Min(allocs), slices.Max(allocs))
	}
	return nil
}

func dur(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

func count(n int) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return fmt.Sprintf("%g M", float64(n)/1e6)
	case n >= 1000:
		return fmt.Sprintf("%d,%03d", n/1000, n%1000)
	}
	return fmt.Sprint(n)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
