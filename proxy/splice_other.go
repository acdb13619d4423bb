//go:build !linux

package proxy

import "sync/atomic"

// splice(2) is Linux's: elsewhere tunnels always copy through buffers
// (tunnel.go), and the splice steps below are never taken.

// spliceWorks stays false here.
var spliceWorks atomic.Bool

type pipe struct{ n int }

func putPipe(*pipe) {}

func (p *pump) spliceStep() (int64, error) { return 0, nil }
func (p *pump) rawFill(uintptr) bool       { return true }
func (p *pump) rawDrain(uintptr) bool      { return true }
func (p *pump) shutdownWrite() bool        { return false }
