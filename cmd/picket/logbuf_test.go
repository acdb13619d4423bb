package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/internal/testutil"
	"github.com/rs/zerolog"
)

// The access log's buffer (logbuf.go) on real files and a real pipe.

// fileLines reads path's lines (nil if it does not exist).
func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	if b[len(b)-1] != '\n' {
		t.Fatalf("%s ends in a torn line: %q", path, b[max(0, len(b)-80):])
	}
	return strings.Split(string(b[:len(b)-1]), "\n")
}

// waitLines waits until path holds n lines and returns them.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := fileLines(t, path)
		if len(l) >= n {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d lines, want %d", path, len(l), n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// settled waits until a write the flusher has begun is over, its counters
// included: the lines reach the file before the flusher counts them, and it
// holds outMu for both.
func settled(l *logFile) {
	l.outMu.Lock()
	l.outMu.Unlock()
}

// testLogFile opens a log file whose flusher ticks only when the test
// sends on the returned channel.
func testLogFile(t *testing.T, size int) (*logFile, string, chan time.Time) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "access.log")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	tick := make(chan time.Time)
	l := &logFile{path: path, f: f}
	l.logBuffer = newLogBufferTicks(path, f, size, l.appendLate, tick)
	t.Cleanup(func() { l.Close(); l.closeFile() })
	return l, path, tick
}

func TestLogFlushEvery(t *testing.T) {
	if flushEvery > 100*time.Millisecond {
		t.Errorf("flushEvery is %s: a line may wait at most 100ms", flushEvery)
	}
	l, path, tick := testLogFile(t, 4096)
	io.WriteString(l, "one\n")
	io.WriteString(l, "two\n")
	// Neither full nor due: nothing is written (the flusher only wakes
	// for a full buffer or a tick).
	if got := fileLines(t, path); got != nil {
		t.Fatalf("written before the tick: %q", got)
	}
	if s := l.Stats(); s.Buffered != 8 || s.Flushes != 0 {
		t.Errorf("stats before the tick: got %+v, want 8 bytes buffered, no flush", s)
	}
	tick <- time.Now()
	if got := waitLines(t, path, 2); got[0] != "one" || got[1] != "two" {
		t.Errorf("after the tick: got %q", got)
	}
	settled(l)
	if s := l.Stats(); s.Buffered != 0 || s.Flushes != 1 || s.Bytes != 8 {
		t.Errorf("stats after the tick: got %+v, want 1 flush of 8 bytes, none buffered", s)
	}
}

// TestLogFlushWhenFull: a full buffer is written out without waiting for
// the tick, in one write.
func TestLogFlushWhenFull(t *testing.T) {
	l, path, _ := testLogFile(t, 100)
	line := strings.Repeat("x", 39) + "\n" // 40 bytes: two fit, the third does not
	for range 3 {
		io.WriteString(l, line)
	}
	got := waitLines(t, path, 2)
	if len(got) != 2 {
		t.Errorf("got %d lines, want the 2 of the full buffer", len(got))
	}
	settled(l)
	if s := l.Stats(); s.Buffered != 40 || s.Flushes != 1 {
		t.Errorf("stats: got %+v, want one flush, the third line buffered", s)
	}
}

// TestLogReopen: on rotation what was buffered goes to the old file, later
// lines to the new one.
func TestLogReopen(t *testing.T) {
	l, path, _ := testLogFile(t, 4096)
	io.WriteString(l, "before\n")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	if got := fileLines(t, path+".1"); len(got) != 1 || got[0] != "before" {
		t.Errorf("rotated file: got %q, want the line written before the reopen", got)
	}
	io.WriteString(l, "after\n")
	l.Close()
	if got := fileLines(t, path); len(got) != 1 || got[0] != "after" {
		t.Errorf("new file: got %q, want the line written after the reopen", got)
	}
}

// TestLogClose: Close writes out what is buffered; a line written after
// it (a request that ended after the shutdown grace) is appended at once.
func TestLogClose(t *testing.T) {
	l, path, _ := testLogFile(t, 4096)
	io.WriteString(l, "buffered\n")
	l.Close()
	l.Close() // idempotent
	if got := fileLines(t, path); len(got) != 1 || got[0] != "buffered" {
		t.Fatalf("after Close: got %q", got)
	}
	l.closeFile()
	if _, err := io.WriteString(l, "late\n"); err != nil {
		t.Fatal(err)
	}
	if got := fileLines(t, path); len(got) != 2 || got[1] != "late" {
		t.Errorf("a line after Close: got %q", got)
	}
}

// TestLogLinesWhole: many writers, lines of many lengths (some longer than
// a buffer) and small buffers: every line arrives once, whole, and each
// writer's lines in order.
func TestLogLinesWhole(t *testing.T) {
	tick := make(chan time.Time)
	path := filepath.Join(t.TempDir(), "access.log")
	l, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l.logBuffer.Close() // replace the default flusher with one on a fast tick and small buffers
	l.logBuffer = newLogBufferTicks(path, l.f, 512, l.appendLate, tick)
	stopTick := make(chan struct{})
	go func() {
		for {
			select {
			case tick <- time.Now():
			case <-stopTick:
				return
			}
		}
	}()
	const writers, lines = 16, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				pad := strings.Repeat(string(rune('a'+w)), (i*37+w*11)%700) // up to 699 bytes: some exceed the 512-byte buffer
				fmt.Fprintf(l, "w%02d %05d %s\n", w, i, pad)
			}
		}()
	}
	wg.Wait()
	close(stopTick)
	l.Close()
	l.closeFile()
	got := fileLines(t, path)
	if len(got) != writers*lines {
		t.Fatalf("got %d lines, want %d", len(got), writers*lines)
	}
	next := make([]int, writers)
	for _, line := range got {
		var w, i int
		if n, _ := fmt.Sscanf(line, "w%02d %05d", &w, &i); n != 2 || w < 0 || w >= writers {
			t.Fatalf("torn or mixed line %q", line)
		}
		want := fmt.Sprintf("w%02d %05d %s", w, next[w], strings.Repeat(string(rune('a'+w)), (next[w]*37+w*11)%700))
		if line != want {
			t.Fatalf("writer %d: got line %d (%d bytes), want line %d whole (%d bytes)", w, i, len(line), next[w], len(want))
		}
		next[w]++
	}
}

// TestLogBackPressure: a destination that takes nothing — a pipe nobody
// reads, a real stand-in for a disk that cannot keep up — makes writers
// wait once the pipe and both buffers are full, counts the wait, and
// loses nothing: once the pipe is read, every line arrives, in order.
func TestLogBackPressure(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	b := newLogBuffer("pipe", w, 4096, func(p []byte) error { _, err := w.Write(p); return err })
	defer b.Close()
	const n = 20000 // 20,000 lines of 50 bytes: 1 MB, far more than a pipe and two buffers hold
	line := func(i int) string { return fmt.Sprintf("%08d %s\n", i, strings.Repeat("z", 40)) }
	wrote := make(chan int, 1)
	var mu sync.Mutex
	done := 0
	go func() {
		for i := range n {
			io.WriteString(b, line(i))
			mu.Lock()
			done = i + 1
			mu.Unlock()
		}
		wrote <- n
	}()
	// The writer is held back: it waits for the flusher, which waits for
	// the pipe.
	deadline := time.Now().Add(10 * time.Second)
	for b.Stats().Waits == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no writer waited; stats %+v", b.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	held := done
	mu.Unlock()
	if held >= n {
		t.Fatalf("all %d lines were taken while nobody read the pipe", n)
	}
	// Now read: everything arrives, in order.
	go func() {
		<-wrote
		b.Close()
		w.Close()
	}()
	sc := bufio.NewScanner(r)
	i := 0
	for sc.Scan() {
		if want := strings.TrimSuffix(line(i), "\n"); sc.Text() != want {
			t.Fatalf("line %d: got %q, want %q", i, sc.Text(), want)
		}
		i++
	}
	if i != n {
		t.Fatalf("got %d lines through the pipe, want %d", i, n)
	}
	s := b.Stats()
	if s.Waits == 0 || s.WaitTime <= 0 || s.Lost != 0 || s.Errors != 0 {
		t.Errorf("stats: got %+v, want waits with their time counted, nothing lost", s)
	}
	t.Logf("%d lines, %d writes waited %s in all, %d flushes", n, s.Waits, s.WaitTime, s.Flushes)
}

// TestLogSharedDestination: the application log and the access log on the
// same destination share one buffer, so their lines stay whole and in
// order.
func TestLogSharedDestination(t *testing.T) {
	var out testutil.SyncBuffer
	for _, tc := range []struct {
		name, output, access string
	}{
		{"stdout", "stdout", "stdout"},
		{"file", "picket.log", "picket.log"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c := testLogConfig(tc.output, tc.access)
			l, err := openLogs(c, func(p string) string { return filepath.Join(dir, p) }, &out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if len(l.buffers) != 1 {
				t.Fatalf("%d buffers, want one shared by both logs", len(l.buffers))
			}
			l.app.Info().Msg("app 1")
			l.access.Info().Msg("access 1")
			l.app.Info().Msg("app 2")
			l.Close()
			var text string
			if tc.output == "stdout" {
				text = out.String()
			} else {
				b, _ := os.ReadFile(filepath.Join(dir, tc.output))
				text = string(b)
			}
			a1, x1, a2 := strings.Index(text, "app 1"), strings.Index(text, "access 1"), strings.Index(text, "app 2")
			if a1 < 0 || !(a1 < x1 && x1 < a2) || bytes.Count([]byte(text), []byte("\n")) != 3 {
				t.Errorf("got %q, want the three lines in order", text)
			}
		})
	}
}

func testLogConfig(output, access string) config.Log {
	return config.Log{Level: "info", Format: "json", Output: output, AccessLog: access}
}

// TestAccessLogOffHasNoDestination: with access_log = "off" neither format
// has anything to write to (the squid format's writer is nil, so the proxy
// builds no line), and a file destination still gets the squid writer.
func TestAccessLogOffHasNoDestination(t *testing.T) {
	dir := t.TempDir()
	resolve := func(p string) string { return filepath.Join(dir, p) }
	c := testLogConfig("stderr", "off")
	c.AccessFormat = "squid"
	l, err := openLogs(c, resolve, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.accessOut != nil || l.access.GetLevel() != zerolog.Disabled {
		t.Errorf("access log off: writer %T, logger level %v; want none and disabled", l.accessOut, l.access.GetLevel())
	}
	c = testLogConfig("stderr", "access.log")
	c.AccessFormat = "squid"
	on, err := openLogs(c, resolve, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	if on.accessOut == nil {
		t.Error("access log to a file: no writer for the squid format")
	}
}
