// Package clamd is a client of ClamAV's scanning daemon, clamd: it streams
// bodies into INSTREAM as they arrive, keeps a small pool of IDSESSION
// connections, knows clamd's StreamMaxLength (a longer body is scanned up to
// it and marked partial), and checks the daemon's health with PING and
// VERSION. It implements scanner.Engine.
//
// The protocol (clamd(8)): commands are "z"-prefixed and NUL-terminated;
// INSTREAM is followed by chunks, each a 4-byte big-endian length and that
// many bytes, ended by a zero length; the answer is "stream: OK",
// "stream: NAME FOUND" or "... ERROR". Inside an IDSESSION every answer is
// prefixed with the command's number in the session ("3: stream: OK").
package clamd

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/internal/wire"
)

// Defaults of Config.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultStreamMaxLength = 25 << 20 // clamd.conf's StreamMaxLength in Debian's configuration
	DefaultMaxConnections  = 32
	DefaultIdleConnections = 4
	DefaultIdleTimeout     = 10 * time.Second // under clamd's IdleTimeout (30 s by default)
	DefaultHealthInterval  = 30 * time.Second
	// maxChunk is the largest INSTREAM chunk sent at once.
	maxChunk = 1 << 20
	// maxReply bounds one answer of clamd.
	maxReply = 8 << 10
)

// Config configures a Client. Zero fields take the defaults above.
type Config struct {
	// Name names the engine in logs and metrics; default "clamd".
	Name string
	// Address is clamd's socket: "unix:/run/clamav/clamd.ctl" (or an
	// absolute path) or "host:port" (or "tcp:host:port").
	Address string
	// Timeout bounds every exchange with clamd: connecting, each write of
	// the body, and the verdict after the body's last byte.
	Timeout time.Duration
	// StreamMaxLength is clamd's StreamMaxLength: at most this many bytes
	// of a body are sent, and a longer body's verdict is marked partial.
	// It must not be more than clamd's own setting (clamd refuses the
	// stream then).
	StreamMaxLength int64
	// MaxConnections bounds the connections open at once (one per body
	// being scanned); a scan waits for a free one up to Timeout.
	MaxConnections int
	// IdleConnections are kept open between scans, each for IdleTimeout.
	IdleConnections int
	IdleTimeout     time.Duration
	// HealthInterval is how often PING and VERSION run; negative: never
	// (health then follows the scans only).
	HealthInterval time.Duration
}

// Client talks to one clamd. It is safe for concurrent use; Close stops its
// health checks and closes its connections.
type Client struct {
	cfg     Config
	network string
	addr    string
	pool    *wire.Pool
	health  *wire.Health
	once    sync.Once

	mu  sync.Mutex
	tag string
}

var _ scanner.Engine = (*Client)(nil)

// New checks cfg and returns a Client; it starts the health checks (the
// first at once, in the background) and does not wait for clamd.
func New(cfg Config) (*Client, error) {
	network, addr, err := ParseAddress(cfg.Address)
	if err != nil {
		return nil, err
	}
	if cfg.Timeout < 0 || cfg.StreamMaxLength < 0 || cfg.MaxConnections < 0 || cfg.IdleConnections < 0 || cfg.IdleTimeout < 0 {
		return nil, errors.New("clamd: negative timeout, length or count")
	}
	cfg.Name = cmp.Or(cfg.Name, "clamd")
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	cfg.StreamMaxLength = cmp.Or(cfg.StreamMaxLength, DefaultStreamMaxLength)
	cfg.MaxConnections = cmp.Or(cfg.MaxConnections, DefaultMaxConnections)
	cfg.IdleConnections = cmp.Or(cfg.IdleConnections, DefaultIdleConnections)
	cfg.IdleTimeout = cmp.Or(cfg.IdleTimeout, DefaultIdleTimeout)
	cfg.HealthInterval = cmp.Or(cfg.HealthInterval, DefaultHealthInterval)
	c := &Client{cfg: cfg, network: network, addr: addr, health: wire.NewHealth("clamd", cfg.Address)}
	c.pool = wire.NewPool(c.dial, cfg.MaxConnections, cfg.IdleConnections, cfg.IdleTimeout)
	c.pool.Ready = func(wc *wire.Conn) error {
		_ = wc.SetWriteDeadline(time.Now().Add(cfg.Timeout))
		_, err := wc.Write([]byte("zIDSESSION\x00"))
		return err
	}
	if cfg.HealthInterval > 0 {
		c.health.Run(cfg.HealthInterval, c.Check)
	}
	return c, nil
}

// ParseAddress splits a clamd address into a network and an address.
func ParseAddress(a string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(a, "unix:"):
		network, addr = "unix", strings.TrimPrefix(a, "unix:")
	case strings.HasPrefix(a, "/"):
		network, addr = "unix", a
	case strings.HasPrefix(a, "tcp:"):
		network, addr = "tcp", strings.TrimPrefix(a, "tcp:")
	default:
		network, addr = "tcp", a
	}
	if network == "unix" && !strings.HasPrefix(addr, "/") {
		return "", "", fmt.Errorf("clamd: address %q: want an absolute socket path after unix:", a)
	}
	if network == "tcp" {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" {
			return "", "", fmt.Errorf("clamd: address %q: want unix:/path/to/clamd.ctl or host:port", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return "", "", fmt.Errorf("clamd: address %q: port must be 1-65535", a)
		}
	}
	return network, addr, nil
}

// Name implements scanner.Engine.
func (c *Client) Name() string { return c.cfg.Name }

// Tag implements scanner.Engine: clamd's version line, which names the
// signature database's version.
func (c *Client) Tag() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tag
}

// Health implements scanner.Engine.
func (c *Client) Health() scanner.EngineHealth { return c.health.Get() }

// Close stops the health checks and closes the idle connections;
// connections of scans in progress close when their scans end. It is
// idempotent.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.health.Stop()
		c.pool.Close()
	})
	return nil
}

func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: c.cfg.Timeout}
	conn, err := d.DialContext(ctx, c.network, c.addr)
	if err != nil {
		return nil, fmt.Errorf("clamd: %w", err)
	}
	return conn, nil
}

// Check runs PING and VERSION now and records the result in Health.
func (c *Client) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	err := c.ping(ctx)
	var v Version
	if err == nil {
		v, err = c.Version(ctx)
	}
	if err == nil {
		c.mu.Lock()
		c.tag = v.Line
		c.mu.Unlock()
		c.health.Update(func(h *scanner.EngineHealth) {
			h.Version, h.Signatures, h.SignatureDate = v.Engine, v.Signatures, v.Date
		})
	}
	c.health.Set(err)
	return err
}

// Version is clamd's answer to VERSION.
type Version struct {
	Line       string    // as clamd sent it: "ClamAV 1.4.6/27000/Mon Dec  1 08:00:00 2026"
	Engine     string    // "ClamAV 1.4.6"
	Signatures string    // the daily database's version, "" without one
	Date       time.Time // when it was built, zero without one
}

// ParseVersion reads clamd's VERSION line.
func ParseVersion(line string) (Version, error) {
	v := Version{Line: line}
	parts := strings.SplitN(line, "/", 3)
	v.Engine = strings.TrimSpace(parts[0])
	if !strings.HasPrefix(v.Engine, "ClamAV ") {
		return Version{}, fmt.Errorf("clamd: unexpected VERSION answer %s", wire.Quote([]byte(line)))
	}
	if len(parts) > 1 {
		v.Signatures = strings.TrimSpace(parts[1])
	}
	if len(parts) > 2 {
		if t, err := time.Parse("Mon Jan _2 15:04:05 2006", strings.TrimSpace(parts[2])); err == nil {
			v.Date = t
		}
	}
	return v, nil
}

// Version asks clamd for its version and its signatures' version and date.
func (c *Client) Version(ctx context.Context) (Version, error) {
	line, err := c.command(ctx, "VERSION")
	if err != nil {
		return Version{}, err
	}
	return ParseVersion(line)
}

func (c *Client) ping(ctx context.Context) error {
	line, err := c.command(ctx, "PING")
	if err != nil {
		return err
	}
	if line != "PONG" {
		return fmt.Errorf("clamd: PING answered %s", wire.Quote([]byte(line)))
	}
	return nil
}

// command sends one command on a connection of its own (outside the pool,
// so that health checks do not wait for busy scans) and reads the answer.
func (c *Client) command(ctx context.Context, cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	conn, err := c.dial(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if _, err := conn.Write([]byte("z" + cmd + "\x00")); err != nil {
		return "", fmt.Errorf("clamd: %s: %w", cmd, err)
	}
	wc := &wire.Conn{Conn: conn}
	reply, err := readReply(newReader(wc), 0)
	if err != nil {
		return "", fmt.Errorf("clamd: %s: %w", cmd, err)
	}
	return reply, nil
}
