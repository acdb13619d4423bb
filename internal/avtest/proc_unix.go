//go:build unix

package avtest

import (
	"os/exec"
	"syscall"
)

// freeze stops the process without killing it (SIGSTOP).
func freeze(cmd *exec.Cmd) { _ = cmd.Process.Signal(syscall.SIGSTOP) }

// ownGroup starts cmd in a process group of its own, so that kill can end
// its children with it.
func ownGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

// kill sends SIGKILL (to the process group with group) and waits.
func kill(cmd *exec.Cmd, exited chan struct{}, group bool) {
	select {
	case <-exited:
		return
	default:
	}
	pid := cmd.Process.Pid
	if group {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	_ = cmd.Process.Kill()
	_ = syscall.Kill(pid, syscall.SIGCONT) // a frozen process dies on SIGKILL anyway; this is belt and braces
	<-exited
}
