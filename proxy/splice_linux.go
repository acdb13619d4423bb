package proxy

import (
	"errors"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// maxSplice is the most one splice step moves, and the pipe size asked for.
const maxSplice = 1 << 20

// spliceWorks turns off once the kernel refuses splice(2) between sockets
// (EINVAL, ENOSYS): tunnels then go through buffers.
var spliceWorks atomic.Bool

func init() { spliceWorks.Store(true) }

// pipe is a kernel pipe a bulk transfer is spliced through; n bytes are in it.
type pipe struct {
	r, w int
	n    int
}

// freePipes keeps empty pipes for the next step of any tunnel: a pipe is
// held only from a splice that finds bytes until they are all in dst, so a
// few serve many tunnels; more are closed.
var freePipes = make(chan *pipe, 64)

func getPipe() (*pipe, error) {
	select {
	case p := <-freePipes:
		return p, nil
	default:
	}
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A larger pipe moves more per step; the default (64 KiB) works too.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSplice)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func putPipe(p *pipe) {
	if p.n == 0 {
		select {
		case freePipes <- p:
			return
		default:
		}
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// spliceStep moves what src has into a pipe and from there to dst, the bytes
// never copied into Picket. The pipe is held only while bytes move.
func (p *pump) spliceStep() (int64, error) {
	p.n, p.errno = 0, nil
	p.op = opFill
	if err := p.rsrc.Read(p.raw); err != nil {
		return 0, err // deadline or closed
	}
	if p.errno != nil {
		if errors.Is(p.errno, unix.EINVAL) || errors.Is(p.errno, unix.ENOSYS) {
			spliceWorks.Store(false) // nothing moved: buffers from now on
			return 0, nil
		}
		return 0, p.errno
	}
	if p.n == 0 {
		return 0, io.EOF
	}
	moved := int64(p.n)
	p.op = opDrain
	if err := p.rdst.Write(p.raw); err != nil {
		return moved - int64(p.pipe.n), err
	}
	if p.errno != nil {
		return moved - int64(p.pipe.n), p.errno
	}
	return moved, nil
}

// rawFill is spliceStep's RawConn.Read callback: src into the (empty) pipe.
// EAGAIN means src has nothing now: the pipe goes back while waiting.
func (p *pump) rawFill(fd uintptr) bool {
	if p.pipe == nil {
		pp, err := getPipe()
		if err != nil {
			p.errno = err
			return true
		}
		p.pipe = pp
	}
	for {
		n, err := spliceNow(int(fd), p.pipe.w, maxSplice)
		switch err {
		case nil:
			p.n, p.pipe.n = int(n), int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			putPipe(p.pipe)
			p.pipe = nil
			return false
		}
		p.errno = os.NewSyscallError("splice", err)
		return true
	}
}

// rawDrain is spliceStep's RawConn.Write callback: the pipe into dst.
func (p *pump) rawDrain(fd uintptr) bool {
	for p.pipe.n > 0 {
		n, err := spliceNow(p.pipe.r, int(fd), p.pipe.n)
		switch err {
		case nil:
			p.pipe.n -= int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			p.errno = os.NewSyscallError("splice", err)
			return true
		}
	}
	return true
}

// spliceNow moves up to n bytes from in to out with splice(2), without
// telling Go's scheduler that the thread enters the kernel (RawSyscall6
// rather than unix.Splice's Syscall6). That is safe only because the call
// cannot wait: every descriptor it gets is non-blocking — Go's sockets
// always are, the pipes are made O_NONBLOCK (getPipe), and
// SPLICE_F_NONBLOCK covers the pipe side — so it returns EAGAIN instead of
// sleeping, and the runtime never needs to hand the P to another thread
// while it runs (TestSpliceDescriptorsNonBlocking).
//
// What it saves is the runtime's bookkeeping around a system call, above
// all waking sysmon: once every P has been idle, sysmon sleeps until the
// next goroutine enters a system call, then polls every 20 µs for at least
// a millisecond. On a tunnel's every step that is a futex wake-up and a run
// of short sleeps, each a context switch; measured on a 2-vCPU KVM guest
// (docs/benchmarks-history.md, the sixth load run of issue 26), 9 % less
// CPU per new tunnel and 12 % less per request through a keep-alive tunnel.
func spliceNow(in, out, n int) (int64, error) {
	r, _, errno := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(in), 0, uintptr(out), 0, uintptr(n),
		unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if errno != 0 {
		return 0, errno
	}
	return int64(r), nil
}

// shutdownWrite half-closes the pump's destination socket (a FIN after the
// bytes already sent) when its source ended; false when dst is not a socket.
// It is a raw shutdown(2) for spliceNow's reason: the call never waits, and
// at a tunnel's end it is most often the first system call after an idle
// spell, the one that would wake sysmon (TCPConn.CloseWrite's Syscall did,
// on about 0.2 of new tunnels: docs/benchmarks.md, after the sixth run).
func (p *pump) shutdownWrite() bool {
	if p.rdst == nil {
		return false
	}
	err := p.rdst.Control(func(fd uintptr) {
		_, _, _ = unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
	})
	return err == nil
}
