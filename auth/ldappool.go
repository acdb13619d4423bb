package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"
)

// errBusy is returned when every connection to a server stayed in use for
// the whole timeout.
var errBusy = errors.New("every connection to the server is busy")

// What a pooled connection is bound as.
type bindState uint8

const (
	boundAnonymous bindState = iota // fresh: no bind yet
	boundService                    // the service account (or anonymous by choice)
	boundOther                      // a user, or a failed bind
)

// conn is one LDAP connection with the socket under it, whose deadline
// bounds every exchange (go-ldap's own timeout does not cover the TLS
// handshake of StartTLS).
type conn struct {
	l      *ldap.Conn
	raw    net.Conn
	bound  bindState
	reused bool      // taken from the pool rather than dialled for this use
	used   time.Time // when it was last put back (wall clock)
}

// setDeadline bounds what follows by timeout and by ctx's deadline.
func (c *conn) setDeadline(ctx context.Context, timeout time.Duration) {
	d := time.Now().Add(timeout)
	if cd, ok := ctx.Deadline(); ok && cd.Before(d) {
		d = cd
	}
	_ = c.raw.SetDeadline(d)
}

func (c *conn) close() { _ = c.l.Close() }

// server is one directory server: its address and TLS settings, a pool of
// connections and whether it is believed down.
type server struct {
	url      string
	addr     string
	ldaps    bool // TLS from the first byte
	startTLS bool // StartTLS before anything else (ldap:// unless plaintext is allowed)
	tls      *tls.Config

	slots chan struct{} // one per open connection, PoolSize in all
	idle  chan *conn    // open connections not in use
	dials atomic.Uint64 // connections opened

	mu      sync.Mutex
	down    bool
	retryAt time.Time // a down server is tried again from then on, by one request
	probing bool      // that request is under way
	closed  bool
}

// try reports whether a request may use s now: it is up, or it is down and
// due for a retry that no other request is making.
func (s *server) try(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.down:
		return true
	case s.probing || now.Before(s.retryAt):
		return false
	}
	s.probing = true
	return true
}

// answered records that s answered; it logs when s was down.
func (s *server) answered(log zerolog.Logger) {
	s.mu.Lock()
	was := s.down
	s.down, s.probing = false, false
	s.mu.Unlock()
	if was {
		log.Info().Str(LogServer, s.url).Msg("auth: ldap: the directory server answers again")
	}
}

// failed records that s could not be reached; it is left alone until
// retryAt. The first failure is logged.
func (s *server) failed(log zerolog.Logger, retryAt time.Time, err error) {
	s.mu.Lock()
	was := s.down
	s.down, s.probing, s.retryAt = true, false, retryAt
	s.mu.Unlock()
	if !was {
		log.Error().Str(LogServer, s.url).Str(LogError, err.Error()).Msg("auth: ldap: the directory server cannot be reached")
	}
}

// isDown reports whether s is believed down.
func (s *server) isDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.down
}

// get returns an idle connection, or a new one while fewer than PoolSize
// are open, waiting at most the timeout for either.
func (s *server) get(ctx context.Context, d *directory) (*conn, error) {
	wait := time.NewTimer(d.cfg.Timeout)
	defer wait.Stop()
	for {
		var c *conn
		select {
		case c = <-s.idle:
		default:
			select {
			case c = <-s.idle:
			case s.slots <- struct{}{}:
				c, err := d.dial(ctx, s)
				if err != nil {
					<-s.slots
					return nil, err
				}
				return c, nil
			case <-wait.C:
				return nil, errBusy
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if c.l.IsClosing() || time.Since(c.used) > maxIdle {
			s.discard(c) // closed by the server, or likely to be soon
			continue
		}
		c.reused = true
		return c, nil
	}
}

// put returns c to the pool, or closes it if s is closed.
func (s *server) put(c *conn) {
	_ = c.raw.SetDeadline(time.Time{})
	s.mu.Lock()
	if !s.closed && !c.l.IsClosing() {
		c.used = time.Now()
		s.idle <- c // never blocks: no more than PoolSize connections exist
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.discard(c)
}

// discard closes c and frees its slot.
func (s *server) discard(c *conn) {
	c.close()
	<-s.slots
}

// close closes the idle connections; those in use are closed when put back.
func (s *server) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for {
		select {
		case c := <-s.idle:
			s.discard(c)
		default:
			return
		}
	}
}

// dial opens a connection to s: TCP, TLS (at once for ldaps, by StartTLS
// for ldap unless plaintext is allowed), all within the timeout. The
// connection is not bound yet.
func (d *directory) dial(ctx context.Context, s *server) (*conn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	s.dials.Add(1)
	var nd net.Dialer
	raw, err := nd.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return nil, ldap.NewError(ldap.ErrorNetwork, err)
	}
	c := &conn{raw: raw}
	c.setDeadline(ctx, d.cfg.Timeout)
	if s.ldaps {
		tc := tls.Client(raw, s.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("TLS handshake: %w", err))
		}
		c.l = ldap.NewConn(tc, true)
	} else {
		c.l = ldap.NewConn(raw, false)
	}
	c.l.Start()
	c.l.SetTimeout(d.cfg.Timeout)
	if s.startTLS {
		if err := c.l.StartTLS(s.tls); err != nil {
			c.close()
			if !isNetwork(err) { // the server refused StartTLS: it cannot be used
				err = ldap.NewError(ldap.ErrorNetwork, fmt.Errorf("StartTLS refused: %w", err))
			}
			return nil, err
		}
	}
	return c, nil
}

// close closes every server's idle connections.
func (d *directory) close() {
	for _, s := range d.servers {
		s.close()
	}
}
