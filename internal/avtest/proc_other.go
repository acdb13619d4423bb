//go:build !unix

package avtest

import "os/exec"

// The engines these helpers start (clamd, c-icap) are Debian packages: the
// tests that use them run on Linux. Elsewhere the package builds, with
// the process controls reduced to what the platform has.

// freeze cannot stop a process without signals: it kills it instead.
func freeze(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

func ownGroup(*exec.Cmd) {}

// kill ends the process and waits.
func kill(cmd *exec.Cmd, exited chan struct{}, _ bool) {
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Kill()
	<-exited
}
