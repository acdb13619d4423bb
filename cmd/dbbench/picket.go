package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/picket-proxy/picket/internal/feedgen"
	"github.com/picket-proxy/picket/internal/procstat"
)

// picket is a running picket serve.
type picket struct {
	cmd     *exec.Cmd
	addr    string
	started start
	mu      sync.Mutex
	events  []event // database log lines
	notify  chan struct{}
	ready   chan struct{}
	exited  chan struct{}
}

type event struct {
	msg     string
	elapsed time.Duration
}

func (p *picket) pid() int { return p.cmd.Process.Pid }

func startPicket(bin, base string) (*picket, error) {
	addr, err := proxyAddr(base)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-config", filepath.Join(base, "config.toml"))
	cmd.Dir = base
	cmd.Stdout = io.Discard // the access log
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &picket{cmd: cmd, addr: addr, notify: make(chan struct{}, 16), ready: make(chan struct{}), exited: make(chan struct{})}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	logDone := make(chan struct{})
	go func() {
		p.readLog(stderr)
		close(logDone)
	}()
	go func() {
		<-logDone // Wait closes the pipe: read it all first
		cmd.Wait()
		close(p.exited)
	}()
	// Ready is "picket started": logged once the database is loaded and
	// every listener serves (they are bound earlier, so a connect alone
	// would answer too soon).
	select {
	case <-p.ready:
	case <-p.exited:
		return nil, fmt.Errorf("picket exited before it started")
	case <-time.After(10 * time.Minute):
		p.stop()
		return nil, fmt.Errorf("picket did not start within 10 minutes")
	}
	p.started = start{ready: time.Since(t0), cpu: procstat.CPU(p.pid()), hwm: mem{rss: procstat.HWM(p.pid())}}
	if e, ok := p.lastEvent(); ok {
		p.started.elapsed, p.started.how = e.elapsed, e.msg
	}
	return p, nil
}

// readLog keeps the database's log lines (JSON) and passes the rest on.
func (p *picket) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct {
			Level   string  `json:"level"`
			Message string  `json:"message"`
			Elapsed float64 `json:"elapsed"` // milliseconds (zerolog's default)
		}
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		switch l.Message {
		case "feeds loaded", "compiled feeds opened":
			p.mu.Lock()
			p.events = append(p.events, event{l.Message, time.Duration(l.Elapsed * float64(time.Millisecond))})
			p.mu.Unlock()
			select {
			case p.notify <- struct{}{}:
			default:
			}
		case "picket started":
			close(p.ready)
		default:
			if l.Level == "error" || l.Level == "fatal" {
				fmt.Fprintf(os.Stderr, "picket: %s\n", sc.Text())
			}
		}
	}
}

func (p *picket) lastEvent() (event, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.events) == 0 {
		return event{}, false
	}
	return p.events[len(p.events)-1], true
}

func (p *picket) eventCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// reload adds a domain to a feed, sends SIGHUP and samples the resident
// memory until the reload is logged, then once more after it settled.
func (p *picket) reload(feeds string, rw *row) error {
	f, err := os.OpenFile(filepath.Join(feeds, feedgen.DomainFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "0.0.0.0 dbbench-reload-%d.test\n", time.Now().UnixNano())
	f.Close()
	before := p.eventCount()
	t0 := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Minute)
	for p.eventCount() == before {
		select {
		case <-tick.C:
			if m := memOf(p.pid()); m.rss > rw.reloadPeak.rss {
				rw.reloadPeak = m
			}
		case <-p.notify:
		case <-deadline:
			return errors.New("the reload was not logged")
		case <-p.exited:
			return errors.New("picket exited during the reload")
		}
	}
	rw.reload = time.Since(t0)
	settle()
	rw.reloaded = memOf(p.pid())
	return nil
}

func (p *picket) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}
