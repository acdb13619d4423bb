package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

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
type logFile struct {
	mu   sync.RWMutex
	path string
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

func (l *logFile) Write(p []byte) (int, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.f.Write(p)
}

func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
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
