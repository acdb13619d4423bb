package main

import (
	"crypto/tls"
	"debug/buildinfo"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/picket-proxy/picket/internal/procstat"
	"github.com/prometheus/procfs"
)

// peer is a proxy measured beside Picket: a process on loopback whose CPU
// time loadbench reads from /proc.
type peer struct {
	name string
	url  *url.URL
	cmd  *exec.Cmd
	tree bool   // count the CPU of its child processes too
	conf string // its configuration, as printed with the table
}

func (p *peer) cpu() time.Duration {
	if p.tree {
		return treeCPU(p.cmd.Process.Pid)
	}
	return procstat.CPU(p.cmd.Process.Pid)
}

// treeCPU is the CPU time of process pid and of its running descendants.
func treeCPU(pid int) time.Duration {
	procs, err := procfs.AllProcs()
	if err != nil {
		return procstat.CPU(pid)
	}
	children := map[int][]int{}
	for _, p := range procs {
		if s, err := p.Stat(); err == nil {
			children[s.PPID] = append(children[s.PPID], p.PID)
		}
	}
	var total time.Duration
	for todo := []int{pid}; len(todo) > 0; {
		p := todo[len(todo)-1]
		todo = append(todo[:len(todo)-1], children[p]...)
		total += procstat.CPU(p)
	}
	return total
}

func (p *peer) stop() { stopProcess(p.cmd) }

// freePort returns a loopback address that was free a moment ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

// startPeer runs a command that listens on addr and waits until it does.
func startPeer(name, addr string, cmd *exec.Cmd) (*peer, error) {
	return startPeerWithin(name, addr, cmd, 15*time.Second)
}

// startPeerWithin is startPeer for a peer that may take up to limit to
// start listening.
func startPeerWithin(name, addr string, cmd *exec.Cmd, limit time.Duration) (*peer, error) {
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &peer{name: name, url: &url.URL{Scheme: "http", Host: addr}, cmd: cmd}
	if err := waitListening(name, addr, limit); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitListening waits until something accepts connections on addr.
func waitListening(name, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start listening on %s", name, addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// peerDir makes dir/name writable by a peer that drops to its own user.
func peerDir(dir, name string) string {
	os.Chmod(dir, 0o711)
	d := filepath.Join(dir, name)
	os.MkdirAll(d, 0o777)
	os.Chmod(d, 0o777)
	return d
}

// squidConf is squid's configuration as its documentation
// (squid.conf.documented, Debian's squid 5.7) has it for a non-caching
// forward proxy: nothing stored (cache deny all, no memory cache, no
// cache_dir), no pinger (ICMP measurements for cache peer selection), one
// worker, no ident or reverse-DNS look-ups (none is configured), no
// per-client statistics database (client_db off: it only feeds the cache
// manager), names from the hosts file squid reads at start. With the access
// log on, squid's default module (daemon: a helper process writes the
// file, squid hands it whole buffers) with buffered_logs on, squid's own
// way of doing what Picket's buffered log does.
func squidConf(addr, d string, logOn bool) string {
	accessLog := "access_log none"
	if logOn {
		accessLog = fmt.Sprintf("access_log daemon:%s/access.log squid\nbuffered_logs on", d)
	}
	return fmt.Sprintf(`http_port %s
acl localnet src 127.0.0.0/8
acl SSL_ports port 1-65535
acl Safe_ports port 1-65535
acl CONNECT method CONNECT
http_access allow localnet
http_access deny all
cache deny all
cache_mem 0
workers 1
pinger_enable off
client_db off
hosts_file /etc/hosts
%s
cache_log %s/cache.log
pid_filename %s/squid.pid
coredump_dir %s
shutdown_lifetime 1 seconds
max_filedescriptors 8192
`, addr, accessLog, d, d, d)
}

// startSquid runs Debian's squid (squidConf) in the foreground.
func startSquid(dir string, logOn bool) (*peer, error) {
	bin, err := exec.LookPath("squid")
	if err != nil {
		return nil, errors.New("squid not installed (make loadtest PEERS=1 installs it)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	d := peerDir(dir, "squid"+logSuffix(logOn))
	path := filepath.Join(d, "squid.conf")
	if err := os.WriteFile(path, []byte(squidConf(addr, d, logOn)), 0o644); err != nil {
		return nil, err
	}
	p, err := startPeer("squid", addr, exec.Command(bin, "-N", "-f", path))
	if p != nil {
		p.tree = true // the log daemon is a child process
		p.conf = "squid -N -f squid.conf:\n" + squidConf(addr, d, logOn)
	}
	return p, err
}

// logSuffix names a directory after the access-log setting.
func logSuffix(logOn bool) string {
	if logOn {
		return "-log"
	}
	return "-nolog"
}

// tinyproxyConf is tinyproxy's configuration: Debian's default
// (/etc/tinyproxy/tinyproxy.conf: LogLevel Info, a log file, MaxClients,
// Timeout) on loopback; with the access log off, LogLevel Critical.
func tinyproxyConf(port, d string, logOn bool) string {
	level := "Critical"
	if logOn {
		level = "Info"
	}
	return fmt.Sprintf("Port %s\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nMaxClients 512\nLogLevel %s\nLogFile \"%s/tinyproxy.log\"\n", port, level, d)
}

// startTinyproxy runs Debian's tinyproxy (tinyproxyConf) in the foreground.
func startTinyproxy(dir string, logOn bool) (*peer, error) {
	bin, err := exec.LookPath("tinyproxy")
	if err != nil {
		return nil, errors.New("tinyproxy not installed (make loadtest PEERS=1 installs it)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	d := peerDir(dir, "tinyproxy"+logSuffix(logOn))
	path := filepath.Join(d, "tinyproxy.conf")
	if err := os.WriteFile(path, []byte(tinyproxyConf(port, d, logOn)), 0o644); err != nil {
		return nil, err
	}
	p, err := startPeer("tinyproxy", addr, exec.Command(bin, "-d", "-c", path))
	if p != nil {
		p.conf = "tinyproxy -d -c tinyproxy.conf:\n" + tinyproxyConf(port, d, logOn)
	}
	return p, err
}

// mitmdumpArgs are mitmdump's arguments: regular mode on addr, its own CA
// (written into d on first start), no add-ons or scripts, no flow file
// (no -w), bodies above 1 MiB streamed instead of kept
// (stream_large_bodies), not verifying the loopback origin's self-signed
// certificate (--ssl-insecure; the load generator does not verify
// mitmproxy's either). Its access log is the one line per flow it prints
// (flow_detail=1, its default) into a file; off is flow_detail=0 and
// --quiet.
func mitmdumpArgs(addr, d string, logOn bool) []string {
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"--listen-host", host, "-p", port, "--set", "confdir=" + d, "--ssl-insecure",
		"--set", "stream_large_bodies=1m"}
	if logOn {
		return append(args, "--set", "flow_detail=1")
	}
	return append(args, "--quiet", "--set", "flow_detail=0")
}

// startMitmproxy runs Debian's mitmdump (mitmdumpArgs), intercepting every
// CONNECT and speaking HTTP/2 on both sides where offered, as Picket does.
func startMitmproxy(dir string, logOn bool) (*peer, error) {
	bin, err := exec.LookPath("mitmdump")
	if err != nil {
		return nil, errors.New("mitmdump not installed (make tools installs mitmproxy)")
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	d := filepath.Join(dir, "mitmproxy"+logSuffix(logOn))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, mitmdumpArgs(addr, d, logOn)...)
	if logOn {
		f, err := os.Create(filepath.Join(d, "flows.log"))
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own descriptor
		cmd.Stdout = f
	}
	// Python starts slowly: about 10 s on a busy 2-core machine.
	p, err := startPeerWithin("mitmproxy", addr, cmd, time.Minute)
	if p != nil {
		p.conf = "mitmdump " + strings.Join(mitmdumpArgs(addr, d, logOn), " ")
		if logOn {
			p.conf += " > flows.log"
		}
		p.conf += "\n"
	}
	return p, err
}

// startGoproxy runs this program as a bare goproxy (the library Picket is
// built on, with a tuned pool and no filtering) in a child process.
func startGoproxy(mitm bool) (*peer, error) {
	if mitm {
		p, err := startSelf("goproxy-mitm", "-serve-goproxy", "-goproxy-mitm")
		if p != nil {
			p.conf = "loadbench -serve-goproxy -goproxy-mitm: goproxy " + goproxyVersion() + ", " + goproxyConf + ", AlwaysMitm with goproxy's CA and a certificate cache (CertStore); no access log\n"
		}
		return p, err
	}
	p, err := startSelf("goproxy", "-serve-goproxy")
	if p != nil {
		p.conf = "loadbench -serve-goproxy: goproxy " + goproxyVersion() + ", " + goproxyConf + "; no access log\n"
	}
	return p, err
}

// goproxyVersion is the version of goproxy this program was built with, as
// go.mod requires it: the peer's configuration names it.
func goproxyVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/elazarl/goproxy" {
				if m.Replace != nil {
					m = m.Replace
				}
				return m.Version
			}
		}
	}
	return "(version unknown)"
}

// goVersionOf is the Go release the program at path was built with, as its
// build information says ("(unknown)" when it has none).
func goVersionOf(path string) string {
	if bi, err := buildinfo.ReadFile(path); err == nil {
		return bi.GoVersion
	}
	return "(unknown)"
}

// goproxyConf says how serveGoproxy configures goproxy.
const goproxyConf = "Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90s, InsecureSkipVerify towards the loopback origin}"

// startSelf runs this program as a peer on a free loopback port: serve is
// the flag that takes the address, extra further arguments.
func startSelf(name, serve string, extra ...string) (*peer, error) {
	return startSelfEnv(name, nil, serve, extra...)
}

// startSelfEnv is startSelf with env added to this program's environment.
func startSelfEnv(name string, env []string, serve string, extra ...string) (*peer, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append([]string{serve, addr}, extra...)
	cmd := exec.Command(self, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return startPeer(name, addr, cmd)
}

// serveGoproxy is the child process of startGoproxy.
func serveGoproxy(addr string, mitm bool) error {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = &http.Transport{
		MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		// The loopback origin's certificate is self-signed.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}
	if mitm {
		gp.OnRequest().HandleConnect(goproxy.AlwaysMitm) // goproxy's own CA: a benchmark peer only
		// A certificate cache, as goproxy's documentation recommends
		// (ProxyHttpServer.CertStore): without one it signs a new leaf
		// with a new RSA key for every CONNECT.
		gp.CertStore = &certStore{certs: map[string]*tls.Certificate{}}
	}
	return http.ListenAndServe(addr, gp)
}

// certStore is the bare goproxy's certificate cache: one leaf per host,
// kept.
type certStore struct {
	mu    sync.Mutex
	certs map[string]*tls.Certificate
}

func (s *certStore) Fetch(host string, gen func() (*tls.Certificate, error)) (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.certs[host]; c != nil {
		return c, nil
	}
	c, err := gen()
	if err == nil {
		s.certs[host] = c
	}
	return c, err
}

// proc is the peer as a column's process.
func (p *peer) proc() *proc { return &proc{p.url, p.cpu} }
