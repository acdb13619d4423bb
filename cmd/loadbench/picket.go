package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/picket-proxy/picket/internal/procstat"
)

// picket is the proxy process under test.
type picket struct {
	name  string
	conf  string // its config file
	cmd   *exec.Cmd
	url   *url.URL
	admin string // the admin listener's base URL; "" when it has none
}

// picketOpts are the settings of one Picket under test beyond those every
// one shares (loopback destinations, filtering on, the demo signatures).
type picketOpts struct {
	bin, env string
	name     string // its directory under the bench's, and its profile's name
	extra    string // TOML after the shared keys ([tls], [scanner] keys)
	tail     string // TOML after the [scanner] keys (sub-tables such as [scanner.clamd])
	// noAccessLog turns the access log off; else it goes to a file.
	noAccessLog bool
	// feeds is the reputation database's feed directory; "" is the
	// repository's demo feeds.
	feeds string
	// admin opens the admin listener on loopback, for /metrics.
	admin bool
}

func startPicket(bin, env, base, name, extra string) (*picket, error) {
	return startPicketWith(base, picketOpts{bin: bin, env: env, name: name, extra: extra})
}

// startPicketTail is startPicket with tail appended after the [scanner]
// keys (sub-tables such as [scanner.clamd]).
func startPicketTail(bin, env, base, name, extra, tail string) (*picket, error) {
	return startPicketWith(base, picketOpts{bin: bin, env: env, name: name, extra: extra, tail: tail})
}

// startPicketWith starts Picket with o in base/o.name.
func startPicketWith(base string, o picketOpts) (*picket, error) {
	dir := filepath.Join(base, o.name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	adminAddr := ""
	if o.admin {
		if adminAddr, err = freePort(); err != nil {
			return nil, err
		}
	}
	cfg, err := picketConfig(dir, addr, adminAddr, o)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{"serve", "-config", path}
	if profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(profileDir, o.name+".cpu.pprof"))
	}
	cmd := exec.Command(o.bin, args...)
	if o.env != "" {
		cmd.Env = append(os.Environ(), strings.Fields(o.env)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &picket{name: o.name, conf: cfg, cmd: cmd, url: &url.URL{Scheme: "http", Host: addr}}
	if adminAddr != "" {
		p.admin = "http://" + adminAddr
	}
	if err := waitListening("picket", addr, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	// The listeners are bound before the database is loaded (a first load
	// of a large one takes seconds): wait for /readyz.
	if p.admin != "" {
		if err := p.waitReady(5 * time.Minute); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// picketConfig is the config file of a Picket listening on addr (and its
// admin listener on adminAddr, if not empty) with its files in dir.
func picketConfig(dir, addr, adminAddr string, o picketOpts) (string, error) {
	feeds := o.feeds
	if feeds == "" {
		feeds = filepath.Join("data", "feeds")
	}
	feeds, err := filepath.Abs(feeds)
	if err != nil {
		return "", err
	}
	sigs, err := filepath.Abs(filepath.Join("data", "signatures"))
	if err != nil {
		return "", err
	}
	accessLog := filepath.Join(dir, "access.log")
	if o.noAccessLog {
		accessLog = "off"
	}
	// Filtering stays on: rules, reputation lookups on the embedded
	// database, download scanning with the demo signatures.
	cfg := fmt.Sprintf(`[proxy]
listen = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
max_conns_per_client = 0 # the load generator is one client
[admin]
listen = %q
[log]
format = "json"
level = "warn"
access_log = %q
[reputation.kpsn]
database = %q
`, addr, adminAddr, accessLog, feeds)
	cfg += o.extra
	if !strings.Contains(o.extra, "[scanner]") {
		cfg += "[scanner]\n"
	}
	cfg += fmt.Sprintf("signatures = [%q, %q]\n", filepath.Join(sigs, "*.hsb"), filepath.Join(sigs, "*.fp")) + o.tail
	return cfg, nil
}

func (p *picket) stop() { stopProcess(p.cmd) }

// stopProcess interrupts cmd and kills it if it has not exited after 5s.
func stopProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
	}
}

// cpu returns the process's user+system CPU time.
func (p *picket) cpu() time.Duration { return procstat.CPU(p.cmd.Process.Pid) }

func (p *picket) rss() int64 { return procstat.RSS(p.cmd.Process.Pid) }
func (p *picket) hwm() int64 { return procstat.HWM(p.cmd.Process.Pid) }
