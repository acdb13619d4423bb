package main

import (
	"fmt"
	"net"
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
	cmd *exec.Cmd
	url *url.URL
}

func startPicket(bin, env, base, name, extra string) (*picket, error) {
	return startPicketTail(bin, env, base, name, extra, "")
}

// startPicketTail is startPicket with tail appended after the [scanner]
// keys (sub-tables such as [scanner.clamd]).
func startPicketTail(bin, env, base, name, extra, tail string) (*picket, error) {
	dir := filepath.Join(base, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	feeds, err := filepath.Abs(filepath.Join("data", "feeds"))
	if err != nil {
		return nil, err
	}
	sigs, err := filepath.Abs(filepath.Join("data", "signatures"))
	if err != nil {
		return nil, err
	}
	// Filtering stays on: rules, reputation lookups on the embedded demo
	// database, download scanning with the demo signatures.
	cfg := fmt.Sprintf(`[proxy]
listen = %q
allow_destinations = ["127.0.0.0/8"]
allow_ports = ["1-65535"]
max_conns_per_client = 0 # the load generator is one client
[admin]
listen = ""
[log]
format = "json"
level = "warn"
access_log = %q
[reputation.kpsn]
database = %q
`, addr, filepath.Join(dir, "access.log"), feeds)
	cfg += extra
	if !strings.Contains(extra, "[scanner]") {
		cfg += "[scanner]\n"
	}
	cfg += fmt.Sprintf("signatures = [%q, %q]\n", filepath.Join(sigs, "*.hsb"), filepath.Join(sigs, "*.fp")) + tail
	path := filepath.Join(dir, "picket.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{"serve", "-config", path}
	if profileDir != "" {
		args = append(args, "-cpuprofile", filepath.Join(profileDir, name+".cpu.pprof"))
	}
	cmd := exec.Command(bin, args...)
	if env != "" {
		cmd.Env = append(os.Environ(), strings.Fields(env)...)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &picket{cmd: cmd, url: &url.URL{Scheme: "http", Host: addr}}
	if err := waitListening("picket", addr, 10*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
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
