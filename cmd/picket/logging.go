package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
)

// logs are the two loggers of a running Picket and the files behind them.
type logs struct {
	app, access zerolog.Logger
	// accessOut is the access log's destination, for the squid format.
	accessOut io.Writer
	files     []*logFile
}

// Close closes the log files.
func (l *logs) Close() {
	for _, f := range l.files {
		_ = f.Close()
	}
}

// Reopen reopens every log file by name (after logrotate moved it away).
func (l *logs) Reopen() error {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.reopen())
	}
	return errors.Join(errs...)
}

// openLogs builds the application log and the access log from [log].
// stdout and stderr are the process's streams (tests pass buffers).
func openLogs(c config.Log, resolve func(string) string, stdout, stderr io.Writer) (*logs, error) {
	l := &logs{}
	open := func(dest string) (io.Writer, error) {
		switch dest {
		case "stdout":
			return stdout, nil
		case "stderr":
			return stderr, nil
		case "off":
			return io.Discard, nil
		}
		f, err := openLogFile(resolve(dest))
		if err != nil {
			return nil, fmt.Errorf("log: %w", err)
		}
		l.files = append(l.files, f)
		return f, nil
	}
	appOut, err := open(c.Output)
	if err != nil {
		return nil, err
	}
	accessOut, err := open(c.AccessLog)
	if err != nil {
		l.Close()
		return nil, err
	}
	level, _ := zerolog.ParseLevel(c.Level)
	l.app = zerolog.New(formatted(appOut, c.Format)).Level(level).With().Timestamp().Logger()
	l.access = zerolog.New(formatted(accessOut, c.Format)).With().Timestamp().Str("log", "access").Logger()
	l.accessOut = accessOut
	return l, nil
}

// logFile is a log file that can be reopened under the same name while
// writers keep using it (SIGUSR1, for logrotate without copytruncate).
// Writes are buffered and flushed every flushEvery (and when the buffer
// fills, on reopen and on close): one write(2) per access-log line would
// cost more than the rest of a small request's logging.
type logFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// flushEvery bounds how long a log line may sit in the buffer.
const flushEvery = 200 * time.Millisecond

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	l := &logFile{path: path, f: f, w: bufio.NewWriterSize(f, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l, nil
}

func (l *logFile) flusher() {
	defer close(l.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			_ = l.w.Flush()
			l.mu.Unlock()
		case <-l.stop:
			return
		}
	}
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", l.path, err)
	}
	l.mu.Lock()
	_ = l.w.Flush()
	old := l.f
	l.f = f
	l.w.Reset(f)
	l.mu.Unlock()
	return old.Close()
}

// Close flushes and closes the file and stops the flusher; it is
// idempotent.
func (l *logFile) Close() error {
	l.mu.Lock()
	select {
	case <-l.stop:
		l.mu.Unlock()
		return nil
	default:
		close(l.stop)
	}
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.mu.Unlock()
	<-l.done
	return err
}

// formatted wraps w in zerolog's console writer when the format asks for it,
// or for "auto" when w is a terminal.
func formatted(w io.Writer, format string) io.Writer {
	console := format == "console"
	if format == "auto" {
		if f, ok := w.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
			console = true
		}
	}
	if console {
		return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return w
}
