package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/procstat"
)

// picket is the process under test.
type picket struct {
	cmd     *exec.Cmd
	url     *url.URL
	admin   string
	tempDir string
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startPicket(bin, dir, originCA string) (*picket, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := freeAddr()
	if err != nil {
		return nil, err
	}
	feeds, err := filepath.Abs(filepath.Join("data", "feeds"))
	if err != nil {
		return nil, err
	}
	sigs, err := filepath.Abs(filepath.Join("data", "signatures"))
	if err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, "spool")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	// Loopback destinations only; bodies spill to our own temp directory
	// early so that temp files are exercised and counted.
	cfg := fmt.Sprintf(`[proxy]
listen = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
[admin]
listen = %q
[log]
format = "json"
level = "error"
access_log = %q
[tls]
extra_roots = [%q]
bypass = ["127.0.0.2"]
auto_bypass = "0s"
[reputation.kpsn]
database = %q
[scanner]
mode = "buffer"
memory_threshold = "64KiB"
temp_dir = %q
signatures = [%q, %q]
`, addr, admin, filepath.Join(dir, "access.log"), originCA, feeds, tmp,
		filepath.Join(sigs, "*.hsb"), filepath.Join(sigs, "*.fp"))
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-config", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &picket{cmd: cmd, url: &url.URL{Scheme: "http", Host: addr}, admin: admin, tempDir: tmp}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := p.metrics(); err == nil {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("picket did not start listening on %s and %s", addr, admin)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *picket) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// metrics reads picket's Prometheus metrics (loopback needs no token for
// reading) into name → value, for unlabelled series.
func (p *picket) metrics() (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("admin /metrics: %s", resp.Status)
	}
	m := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || strings.Contains(line, "{") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if v, err := strconv.ParseFloat(strings.Fields(val)[0], 64); err == nil {
			m[name] = v
		}
	}
	return m, sc.Err()
}

// sample is picket's resource use at one moment.
type sample struct {
	goroutines, fds, tempFiles int
	// pipes are counted apart from fds: they are kept for splice(2) —
	// Picket's free list of tunnel pipes (up to 64, kept while idle; a
	// tunnel takes at most one per direction) and the runtime's pool for
	// TCP-to-TCP body copies, a sync.Pool that only a garbage collection
	// empties, and an idle process collects only every two minutes.
	pipes     int
	heap, rss int64
}

func (p *picket) sample() (sample, error) {
	m, err := p.metrics()
	if err != nil {
		return sample{}, err
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		return sample{}, err
	}
	var pipes int
	for _, e := range fds {
		if t, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", p.cmd.Process.Pid, e.Name())); err == nil && strings.HasPrefix(t, "pipe:") {
			pipes++
		}
	}
	var temp int
	_ = filepath.WalkDir(p.tempDir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			temp++
		}
		return nil
	})
	return sample{goroutines: int(m["go_goroutines"]), fds: len(fds) - pipes, pipes: pipes, tempFiles: temp,
		heap: int64(m["go_memstats_heap_inuse_bytes"]), rss: p.mem().RSS}, nil
}

// within reports whether s is back to the baseline b within the tolerances.
func (s sample) within(b sample, o options) bool { return s.leak(b, o) == "" }

func (s sample) leak(b sample, o options) string {
	var out []string
	if s.goroutines > b.goroutines+o.tolGoroutines {
		out = append(out, fmt.Sprintf("goroutines %d → %d", b.goroutines, s.goroutines))
	}
	if s.fds > b.fds+o.tolFDs {
		out = append(out, fmt.Sprintf("open files %d → %d", b.fds, s.fds))
	}
	if s.pipes > b.pipes+4*o.workers { // two fds per pipe, at most one pipe per direction in flight
		out = append(out, fmt.Sprintf("splice pipes %d → %d", b.pipes, s.pipes))
	}
	if s.tempFiles > b.tempFiles {
		out = append(out, fmt.Sprintf("temp files %d → %d", b.tempFiles, s.tempFiles))
	}
	if s.heap > b.heap+o.tolHeapMiB<<20 {
		out = append(out, fmt.Sprintf("heap in use %.1f → %.1f MiB", mib(b.heap), mib(s.heap)))
	}
	return strings.Join(out, ", ")
}

// fdReport groups picket's open files: sockets by TCP state and by the
// role of the peer port (client side, origin, admin), other files by path.
func (p *picket) fdReport(t targets) string {
	pid := p.cmd.Process.Pid
	sockets := map[string]string{} // inode → "state local → remote"
	states := map[string]string{"01": "ESTABLISHED", "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT",
		"0A": "LISTEN", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "09": "LAST_ACK", "0B": "CLOSING"}
	roles := map[string]string{}
	for name, u := range map[string]string{"plain origin": t.plain, "intercepted origin": t.mitm, "tunnel origin": t.tunnel} {
		if pu, err := url.Parse(u); err == nil {
			roles[pu.Port()] = name
		}
	}
	_, proxyPort, _ := net.SplitHostPort(t.proxy)
	_, adminPort, _ := net.SplitHostPort(p.admin)
	roles[proxyPort], roles[adminPort] = "proxy port", "admin port"
	port := func(hexAddr string) string {
		_, h, _ := strings.Cut(hexAddr, ":")
		n, _ := strconv.ParseUint(h, 16, 16)
		return strconv.FormatUint(n, 10)
	}
	for _, f := range []string{"tcp", "tcp6"} {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			if len(fs) < 10 {
				continue
			}
			lp, rp := port(fs[1]), port(fs[2])
			role := roles[lp]
			if role == "" {
				role = roles[rp]
			}
			if role == "" {
				role = "other"
			}
			sockets[fs[9]] = fmt.Sprintf("%-12s %s", states[fs[3]], role)
		}
	}
	count := map[string]int{}
	entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, e := range entries {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		key := target
		if strings.HasPrefix(target, "socket:[") {
			key = "socket (not TCP)"
			if s, ok := sockets[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")]; ok {
				key = "tcp " + s
			}
		}
		count[key]++
	}
	var b strings.Builder
	for k, n := range count {
		fmt.Fprintf(&b, "  %4d  %s\n", n, k)
	}
	return b.String()
}

// status returns a size field of /proc/PID/status in bytes.
func (p *picket) mem() procstat.Mem { return procstat.Memory(p.cmd.Process.Pid) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }
