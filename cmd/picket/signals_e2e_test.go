//go:build unix

package main

import (
	"fmt"
	"net"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/picket-proxy/picket/internal/testutil"
)

// TestBinarySignalsDuringStartUp sends the real binary SIGHUP (systemctl
// reload) and SIGUSR1 (logrotate's postrotate) while it is still starting —
// held in its check of a clamd engine that has accepted the connection but
// not answered, as a large feed directory holds it for seconds. Neither may
// kill it: it starts, then reloads and reopens its logs, and stops with 0 on
// SIGTERM.
func TestBinarySignalsDuringStartUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPicket(t)
	clamd, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer clamd.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := clamd.Accept(); err == nil {
			accepted <- c
		}
	}()
	path := writeConfig(t, fmt.Sprintf("[log]\nformat = \"json\"\n[scanner.clamd]\naddress = %q\n", clamd.Addr()))
	cmd := exec.Command(bin, "serve", "-config", path)
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{}) // closed when it exited, with waitErr set
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill() // our own child, by its PID; nothing if it exited
		<-exited
	}()

	// 1. Picket is in its start-up: its engine check has connected.
	var conn net.Conn
	select {
	case conn = <-accepted:
	case <-exited:
		t.Fatalf("exited before checking its engine: %v\n%s", waitErr, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("no engine check within 30s:\n%s", stderr.String())
	}
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR1} {
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close() // the check fails: Picket goes on without the engine

	// 2. It started, and did what the signals asked once it ran.
	for _, msg := range []string{"picket started", "configuration reloaded", "log files reopened"} {
		waitFor(t, exited, &stderr, msg)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("exit after SIGTERM: %v (want status 0)\n%s", waitErr, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
}
