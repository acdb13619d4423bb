// Package avtest starts Debian's real anti-virus servers for tests: clamd
// (clamav-daemon) with a signature database the test writes, and c-icap
// with libc-icap-mod-virus-scan scanning through that clamd. Each runs in
// the test's own temporary directory, on a Unix socket or a free loopback
// port, is waited for by polling its socket with a deadline, and is stopped
// by its own PID (its process group for c-icap) in t.Cleanup. Several tests
// may run them at once; cmd/loadbench runs them the same way for its engine
// rows.
package avtest

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// TB is what avtest needs of a test; TB has it, and cmd/loadbench
// passes its own.
type TB interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skip(args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
}

// startTimeout is how long a server may take to answer its first request.
const startTimeout = 60 * time.Second

// HDB is a ClamAV .hdb line detecting data by its MD5 and size.
func HDB(name string, data []byte) string {
	sum := md5.Sum(data)
	return fmt.Sprintf("%s:%d:%s\n", hex.EncodeToString(sum[:]), len(data), name)
}

// NDB is a ClamAV .ndb line detecting pattern anywhere in any file (also
// inside archives, which clamd opens).
func NDB(name string, pattern []byte) string {
	return fmt.Sprintf("%s:0:*:%s\n", name, hex.EncodeToString(pattern))
}

// need fails (in CI, where .ci/run installs the servers) or skips the test
// when bin is not installed.
func need(t TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, bin); isExec(p) {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (make tools installs it)", bin)
	}
	t.Skipf("%s is not installed (make tools installs it)", bin)
	return ""
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// FreePort returns a loopback port that was free a moment ago.
func FreePort(t TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ClamdOptions configure StartClamd.
type ClamdOptions struct {
	// Signatures are the database files, by name ("test.hdb") and content.
	Signatures map[string]string
	// StreamMaxLength is clamd's setting ("25M" when empty).
	StreamMaxLength string
	// TCP also opens a loopback TCP socket (Clamd.TCPAddr).
	TCP bool
}

// Clamd is a running clamd.
type Clamd struct {
	Dir     string
	Socket  string // the Unix socket's path
	TCPAddr string // 127.0.0.1:port with ClamdOptions.TCP, else ""
	cmd     *exec.Cmd
	exited  chan struct{}
	t       TB
}

// StartClamd starts clamd with the signatures and waits until it answers
// PING.
func StartClamd(t TB, o ClamdOptions) *Clamd {
	t.Helper()
	bin := need(t, "clamd")
	// Unix socket paths are short (108 bytes): use a short directory.
	dir, err := os.MkdirTemp("", "pk-clamd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range o.Signatures {
		if err := os.WriteFile(filepath.Join(db, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := &Clamd{Dir: dir, Socket: filepath.Join(dir, "clamd.sock"), t: t}
	// TemporaryDirectory: clamd spools every stream it scans to a file,
	// /tmp by default; a clamd the test kills mid-scan would leave them there.
	conf := fmt.Sprintf(`LocalSocket %s
Foreground yes
LogFile %s
LogTime yes
User root
DatabaseDirectory %s
TemporaryDirectory %s
StreamMaxLength %s
MaxThreads 8
ReadTimeout 30
IdleTimeout 30
`, c.Socket, filepath.Join(dir, "clamd.log"), db, dir, orDefault(o.StreamMaxLength, "25M"))
	if o.TCP {
		port := FreePort(t)
		c.TCPAddr = "127.0.0.1:" + strconv.Itoa(port)
		conf += fmt.Sprintf("TCPSocket %d\nTCPAddr 127.0.0.1\n", port)
	}
	confPath := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "-c", confPath)
	c.cmd.Dir = dir
	out, _ := os.Create(filepath.Join(dir, "clamd.out"))
	c.cmd.Stdout, c.cmd.Stderr = out, out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting clamd: %v", err)
	}
	c.exited = make(chan struct{})
	go func() { c.cmd.Wait(); out.Close(); close(c.exited) }()
	t.Cleanup(c.Kill)
	deadline := time.Now().Add(startTimeout)
	for {
		if ans, err := ClamdCommand("unix", c.Socket, "PING"); err == nil && ans == "PONG" {
			break
		}
		select {
		case <-c.exited:
			t.Fatalf("clamd exited at start:\n%s", c.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamd did not answer PING within %s:\n%s", startTimeout, c.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if c.TCPAddr != "" {
		for {
			if ans, err := ClamdCommand("tcp", c.TCPAddr, "PING"); err == nil && ans == "PONG" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("clamd did not answer on %s within %s:\n%s", c.TCPAddr, startTimeout, c.Log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return c
}

// PID is clamd's process ID.
func (c *Clamd) PID() int { return c.cmd.Process.Pid }

// Log returns clamd's log and output.
func (c *Clamd) Log() string {
	a, _ := os.ReadFile(filepath.Join(c.Dir, "clamd.log"))
	b, _ := os.ReadFile(filepath.Join(c.Dir, "clamd.out"))
	return string(a) + string(b)
}

// Kill stops clamd at once (SIGKILL, as a crash would) and waits for it.
// It is idempotent.
func (c *Clamd) Kill() { kill(c.cmd, c.exited, false) }

// Freeze stops clamd without killing it (SIGSTOP): it keeps its sockets
// but answers nothing, like a hung engine. Kill (or the cleanup) ends it.
func (c *Clamd) Freeze() { freeze(c.cmd) }

// Exited is closed when clamd has exited.
func (c *Clamd) Exited() <-chan struct{} { return c.exited }

// ClamdCommand sends one command on a new connection and returns the answer.
func ClamdCommand(network, addr, cmd string) (string, error) {
	conn, err := net.DialTimeout(network, addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", err
	}
	ans, err := bufio.NewReader(conn).ReadString(0)
	return strings.TrimRight(ans, "\x00\n"), err
}

// CICAP is a running c-icap with the virus_scan service.
type CICAP struct {
	Dir  string
	Addr string // 127.0.0.1:port
	// URL is the avscan service's URL: virus_scan with allow204=on,
	// sizelimit=off, mode=simple.
	URL    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// CICAPOptions configure StartCICAP.
type CICAPOptions struct {
	// Extra lines for c-icap.conf.
	Extra string
}

// StartCICAP starts c-icap scanning through the clamd at clamdSocket and
// waits until it answers OPTIONS.
func StartCICAP(t TB, clamdSocket string, o CICAPOptions) *CICAP {
	t.Helper()
	bin := need(t, "c-icap")
	mods := "/usr/lib/x86_64-linux-gnu/c_icap"
	if m, _ := filepath.Glob("/usr/lib/*/c_icap/virus_scan.so"); len(m) > 0 {
		mods = filepath.Dir(m[0])
	} else if os.Getenv("CI") != "" {
		t.Fatal("libc-icap-mod-virus-scan is not installed (make tools installs it)")
	} else {
		t.Skip("libc-icap-mod-virus-scan is not installed (make tools installs it)")
	}
	var lastLog string
	for attempt := 0; attempt < 3; attempt++ {
		dir, err := os.MkdirTemp("", "pk-cicap-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		tmp := filepath.Join(dir, "tmp")
		os.Mkdir(tmp, 0o700)
		port := FreePort(t)
		c := &CICAP{Dir: dir, Addr: "127.0.0.1:" + strconv.Itoa(port)}
		c.URL = "icap://" + c.Addr + "/avscan"
		conf := fmt.Sprintf(`PidFile %[1]s/c-icap.pid
CommandsSocket %[1]s/c-icap.ctl
Timeout 30
MaxKeepAliveRequests 100
KeepAliveTimeout 600
StartServers 1
MaxServers 1
MinSpareThreads 4
MaxSpareThreads 16
ThreadsPerChild 16
Port %[2]s
User root
Group root
TmpDir %[3]s
InterProcessSharedMemScheme mmap
MaxMemObject 131072
DebugLevel 1
ModulesDir %[4]s
ServicesDir %[4]s
TemplateDir /usr/share/c_icap/templates/
TemplateDefaultLanguage en
LoadMagicFile /etc/c-icap/c-icap.magic
ServerLog %[1]s/server.log
AccessLog %[1]s/access.log
Module common clamd_mod.so
clamd_mod.ClamdSocket %[5]s
Service antivirus_module virus_scan.so
ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple
virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE
virus_scan.DefaultEngine clamd
virus_scan.MaxObjectSize 100M
Service echo srv_echo.so
%[6]s
`, dir, c.Addr, tmp, mods, clamdSocket, o.Extra)
		confPath := filepath.Join(dir, "c-icap.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.cmd = exec.Command(bin, "-N", "-D", "-f", confPath)
		c.cmd.Dir = dir
		ownGroup(c.cmd)
		out, _ := os.Create(filepath.Join(dir, "c-icap.out"))
		c.cmd.Stdout, c.cmd.Stderr = out, out
		if err := c.cmd.Start(); err != nil {
			t.Fatalf("starting c-icap: %v", err)
		}
		c.exited = make(chan struct{})
		go func() { c.cmd.Wait(); out.Close(); close(c.exited) }()
		t.Cleanup(c.Kill)
		if c.wait() {
			return c
		}
		lastLog = c.Log()
		c.Kill()
	}
	t.Fatalf("c-icap did not start:\n%s", lastLog)
	return nil
}

// wait polls OPTIONS until c-icap answers, it exits, or the deadline.
func (c *CICAP) wait() bool {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		if ok := c.options(); ok {
			return true
		}
		select {
		case <-c.exited:
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

func (c *CICAP) options() bool {
	conn, err := net.DialTimeout("tcp", c.Addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "OPTIONS %s ICAP/1.0\r\nHost: %s\r\nEncapsulated: null-body=0\r\n\r\n", c.URL, c.Addr)
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "ICAP/1.0 200")
}

// PID is c-icap's main process ID (its process group's).
func (c *CICAP) PID() int { return c.cmd.Process.Pid }

// Kill stops c-icap and its children (SIGKILL to its process group) and
// waits. It is idempotent.
//
// Nothing of it outlives it: its shared memory is anonymous (mmap in the
// config; the default, posix, leaves a /dev/shm segment behind each killed
// c-icap), and its lock files, which it makes in /tmp whatever TmpDir says
// and only removes when it stops cleanly, are removed here, found among
// its open files before it dies.
func (c *CICAP) Kill() {
	locks := openFiles(c.cmd.Process.Pid, "/icap_lock_")
	kill(c.cmd, c.exited, true)
	for _, f := range locks {
		os.Remove(f)
	}
}

// openFiles returns the paths of the files process pid has open whose
// path contains part (none where there is no /proc, or once it exited).
func openFiles(pid int, part string) []string {
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(fds)
	var paths []string
	for _, e := range ents {
		if p, err := os.Readlink(filepath.Join(fds, e.Name())); err == nil && strings.Contains(p, part) {
			paths = append(paths, p)
		}
	}
	return paths
}

// Log returns c-icap's server log and output.
func (c *CICAP) Log() string {
	var b bytes.Buffer
	for _, f := range []string{"server.log", "c-icap.out"} {
		d, _ := os.ReadFile(filepath.Join(c.Dir, f))
		b.Write(d)
	}
	return b.String()
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
