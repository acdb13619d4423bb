package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A CONNECT to a blocked host is intercepted only to show the block page:
// a client that then speaks anything but TLS, or stays silent until the
// peek gives up and then speaks TLS with the origin itself, must not get a
// raw tunnel to the blocked host.
func TestBlockedTunnelNeverPassesThrough(t *testing.T) {
	var reached atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.WriteString(w, "reached")
	})
	plain := httptest.NewServer(handler)
	defer plain.Close()
	tlsOrigin := httptest.NewTLSServer(handler)
	defer tlsOrigin.Close()
	ca := testCA(t)
	tp := startInterceptingWith(t, ca, Config{Decider: DeciderFunc(func(context.Context, *Request) (Decision, error) {
		return Decision{Action: Block, Intercept: true, Rule: "test"}, nil
	})})

	for _, tc := range []struct {
		name   string
		target string
		speak  func(c net.Conn) (string, error)
	}{
		{"not TLS", plain.Listener.Addr().String(), func(c net.Conn) (string, error) {
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", plain.Listener.Addr())
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return "", err
			}
			b, _ := io.ReadAll(resp.Body)
			return string(b), nil
		}},
		{"silent, then TLS with the origin", tlsOrigin.Listener.Addr().String(), func(c net.Conn) (string, error) {
			time.Sleep(peekTimeout + 300*time.Millisecond) // the peek gives up
			tc := tls.Client(c, &tls.Config{RootCAs: poolOf(tlsOrigin.Certificate()), ServerName: "127.0.0.1"})
			if err := tc.Handshake(); err != nil {
				return "", err
			}
			fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", tlsOrigin.Listener.Addr())
			resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
			if err != nil {
				return "", err
			}
			b, _ := io.ReadAll(resp.Body)
			return string(b), nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
			want := "HTTP/1.1 200 Connection established\r\n\r\n"
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
				t.Fatalf("CONNECT: got %q (%v)", got, err)
			}
			body, err := tc.speak(c)
			if strings.Contains(body, "reached") || reached.Load() != 0 {
				t.Errorf("got %q (%v) and %d requests at the blocked origin, want none", body, err, reached.Load())
			}
		})
	}
}

// An allowed, intercepted tunnel whose client stays silent past the peek
// is relayed only if the origin speaks first (a server-speaks-first
// protocol): a client that then starts TLS is intercepted as usual, and its
// requests are decided (a blocked path gets the block page).
func TestSilentTunnelWhoSpeaksFirst(t *testing.T) {
	var reached atomic.Int64
	origin := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		io.WriteString(w, "reached")
	}))
	defer origin.Close()
	ca := testCA(t)
	tp, _ := startIntercepting(t, ca, origin.Certificate())

	t.Run("client starts TLS", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		host := origin.Listener.Addr().String()
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", host, host)
		br := bufio.NewReader(c)
		if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		time.Sleep(peekTimeout + 300*time.Millisecond) // the peek gives up
		// Trusting both the origin and Picket: whichever answers.
		tc := tls.Client(c, &tls.Config{RootCAs: poolOf(origin.Certificate(), ca.Certificate()), ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(tc, "GET /blocked HTTP/1.1\r\nHost: %s\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusForbidden || reached.Load() != 0 {
			t.Errorf("got %d %q and %d requests at the origin, want 403 and none", resp.StatusCode, b, reached.Load())
		}
	})

	t.Run("origin speaks first", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			io.WriteString(c, "220 banner\r\n")
			io.Copy(c, c)
		}()
		c, err := net.DialTimeout("tcp", tp.addr, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", ln.Addr(), ln.Addr())
		br := bufio.NewReader(c)
		if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", resp, err)
		}
		if line, err := br.ReadString('\n'); err != nil || line != "220 banner\r\n" {
			t.Fatalf("banner: got %q (%v)", line, err)
		}
		io.WriteString(c, "EHLO x\r\n")
		if line, err := br.ReadString('\n'); err != nil || line != "EHLO x\r\n" {
			t.Fatalf("echo: got %q (%v)", line, err)
		}
	})
}
