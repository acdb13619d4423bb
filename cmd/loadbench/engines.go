package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/picket-proxy/picket/internal/avtest"
	"github.com/picket-proxy/picket/internal/procstat"
)

// benchTB runs avtest's servers outside a test: a failure or a missing
// server stops the engine rows with an error, cleanups run at the end.
type benchTB struct{ cleanups []func() }

type benchStop struct{ msg string }

func (*benchTB) Helper()                           {}
func (*benchTB) Fatal(args ...any)                 { panic(benchStop{fmt.Sprint(args...)}) }
func (*benchTB) Fatalf(format string, args ...any) { panic(benchStop{fmt.Sprintf(format, args...)}) }
func (*benchTB) Skip(args ...any)                  { panic(benchStop{fmt.Sprint(args...)}) }
func (*benchTB) Skipf(format string, args ...any)  { panic(benchStop{fmt.Sprintf(format, args...)}) }
func (b *benchTB) Cleanup(f func())                { b.cleanups = append(b.cleanups, f) }

func (b *benchTB) close() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

// engineRows measures a 10 MiB scanned download through clamd and through
// c-icap (backed by that clamd), beside the rows of Picket's own scanning:
// times to the first and the last byte, Picket's CPU and the engine's CPU
// per download. The verdict cache is off so that every download is scanned
// (one row shows a cached verdict). Both servers are Debian's, started on
// a Unix socket and a loopback port in a temporary directory.
func engineRows(bin, dir, origin string) (err error) {
	tb := &benchTB{}
	defer tb.close()
	defer func() {
		if r := recover(); r != nil {
			s, ok := r.(benchStop)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("engine rows: %s", s.msg)
		}
	}()
	d := avtest.StartClamd(tb, avtest.ClamdOptions{Signatures: map[string]string{
		"bench.ndb": avtest.NDB("Picket.Bench.Body", []byte("PICKET-BENCH-SIGNATURE-NEVER-PRESENT")),
	}})
	ic := avtest.StartCICAP(tb, d.Socket, avtest.CICAPOptions{})
	engines := map[string]string{
		"clamd": fmt.Sprintf("[scanner.clamd]\naddress = %q\n", "unix:"+d.Socket),
		"icap":  fmt.Sprintf("[scanner.icap]\nurl = %q\n", ic.URL),
	}
	type row struct {
		name, engine, mode string
		cache              bool
	}
	rows := []row{
		{"10 MiB executable, buffer, clamd", "clamd", "buffer", false},
		{"10 MiB executable, trickle, clamd", "clamd", "trickle", false},
		{"10 MiB executable, buffer, clamd, verdict cached", "clamd", "buffer", true},
		{"10 MiB executable, buffer, ICAP (c-icap+clamd)", "icap", "buffer", false},
		{"10 MiB executable, trickle, ICAP (c-icap+clamd)", "icap", "trickle", false},
	}
	fmt.Printf("\n%-52s %14s %14s %14s %14s\n", "anti-virus engines (median of 5)", "first byte", "last byte", "picket CPU", "engine CPU")
	for i, r := range rows {
		ttl := "0s"
		if r.cache {
			ttl = "1h"
		}
		p, err := startPicketTail(bin, picketEnv, dir, fmt.Sprintf("engine%d", i),
			fmt.Sprintf("[scanner]\nmode = %q\ncache_ttl = %q\n", r.mode, ttl), engines[r.engine])
		if err != nil {
			return err
		}
		if r.cache { // the first download fills the cache
			if _, _, err := timeDownload(origin+"/10m.exe", p.url, 1); err != nil {
				p.stop()
				return err
			}
		}
		engineCPU := func() time.Duration {
			cpu := procstat.CPU(d.PID())
			if r.engine == "icap" {
				cpu += groupCPU(ic.PID())
			}
			return cpu
		}
		cpu0, ecpu0 := p.cpu(), engineCPU()
		first, last, err := timeDownload(origin+"/10m.exe", p.url, 5)
		cpu, ecpu := (p.cpu()-cpu0)/5, (engineCPU()-ecpu0)/5
		p.stop()
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		fmt.Printf("%-52s %14s %14s %14s %14s\n", r.name, first.Round(10*time.Microsecond), last.Round(100*time.Microsecond),
			cpu.Round(100*time.Microsecond), ecpu.Round(100*time.Microsecond))
	}
	return nil
}

// groupCPU is the CPU time of the process pid and of its children that are
// in its process group (c-icap's worker).
func groupCPU(pid int) time.Duration {
	total := procstat.CPU(pid)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		var child, ppid int
		if _, err := fmt.Sscan(e.Name(), &child); err != nil || child == pid {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(f)
		f.Close()
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		s := string(b)
		for i := len(s) - 1; i >= 0; i-- {
			if s[i] == ')' {
				var state string
				fmt.Sscan(s[i+1:], &state, &ppid)
				break
			}
		}
		if ppid == pid {
			total += procstat.CPU(child)
		}
	}
	return total
}
