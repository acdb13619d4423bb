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

// logs are the two loggers of a running Picket and the destinations behind
// them.
type logs struct {
	app, access zerolog.Logger
	// accessOut is the access log's destination, for the squid format; nil
	// when access_log = "off".
	accessOut io.Writer
	// accessBuf is the access log's buffer; nil when the access log is off.
	accessBuf *logBuffer
	buffers   []*logBuffer // every buffered destination, for Close
	files     []*logFile   // the files among them, for Reopen
}

// Close writes out what is buffered and closes the log files. Lines
// written after it go straight to their destination.
func (l *logs) Close() {
	for _, b := range l.buffers {
		b.Close()
	}
	for _, f := range l.files {
		_ = f.closeFile()
	}
}

// Reopen reopens every log file by name (after logrotate moved it away):
// what was buffered goes to the old file first.
func (l *logs) Reopen() error {
	var errs []error
	for _, f := range l.files {
		errs = append(errs, f.reopen())
	}
	return errors.Join(errs...)
}

// AccessStats reads the access log's counters (zero when it is off).
func (l *logs) AccessStats() LogStats {
	if l.accessBuf == nil {
		return LogStats{}
	}
	return l.accessBuf.Stats()
}

// openLogs builds the application log and the access log from [log].
// stdout and stderr are the process's streams (tests pass buffers).
//
// The access log is always buffered (logBuffer): one write(2) per line
// would cost more than the rest of a small request's logging. The
// application log is buffered when it goes to a file, or when it shares
// its destination with the access log (one buffer then carries both, so
// that their lines stay whole and in order); on a stream of its own it is
// written at once.
func openLogs(c config.Log, resolve func(string) string, stdout, stderr io.Writer) (*logs, error) {
	l := &logs{}
	dest := func(d string) string {
		switch d {
		case "stdout", "stderr", "off":
			return d
		}
		return resolve(d)
	}
	appDest, accessDest := dest(c.Output), dest(c.AccessLog)
	report := func(name string) func(error) {
		return func(err error) {
			if name == appDest {
				fmt.Fprintf(stderr, "picket: writing the log %s: %v (retrying; requests wait)\n", name, err)
				return
			}
			l.app.Error().Err(err).Str("file", name).Msg("cannot write the access log: retrying, requests wait until it can")
		}
	}
	opened := map[string]io.Writer{}
	open := func(d string, buffered bool) (io.Writer, error) {
		if w, ok := opened[d]; ok {
			return w, nil
		}
		var w io.Writer
		switch d {
		case "off":
			return io.Discard, nil
		case "stdout", "stderr":
			s := stdout
			if d == "stderr" {
				s = stderr
			}
			w = s
			if buffered {
				b := newLogBuffer(d, s, logBufferSize, func(p []byte) error { _, err := s.Write(p); return err })
				l.buffers = append(l.buffers, b)
				b.onError = report(d)
				w = b
			}
		default:
			f, err := openLogFile(d)
			if err != nil {
				return nil, fmt.Errorf("log: %w", err)
			}
			f.onError = report(d)
			l.files = append(l.files, f)
			l.buffers = append(l.buffers, f.logBuffer)
			w = f
		}
		opened[d] = w
		return w, nil
	}
	appOut, err := open(appDest, appDest == accessDest)
	if err != nil {
		return nil, err
	}
	accessOut, err := open(accessDest, true)
	if err != nil {
		l.Close()
		return nil, err
	}
	switch w := accessOut.(type) {
	case *logBuffer:
		l.accessBuf = w
	case *logFile:
		l.accessBuf = w.logBuffer
	}
	level, _ := zerolog.ParseLevel(c.Level)
	l.app = zerolog.New(formatted(appOut, c.Format)).Level(level).With().Timestamp().Logger()
	l.access = zerolog.New(formatted(accessOut, c.Format)).With().Timestamp().Str("log", "access").Logger()
	l.accessOut = accessOut
	if accessDest == "off" {
		// No line is formatted only to be discarded, in either format.
		l.access, l.accessOut = zerolog.Nop(), nil
	}
	return l, nil
}

// logFile is a buffered log file that can be reopened under the same name
// while writers keep using it (SIGUSR1, for logrotate without
// copytruncate).
type logFile struct {
	*logBuffer
	path string
	mu   sync.Mutex
	f    *os.File
}

func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	l := &logFile{path: path, f: f}
	l.logBuffer = newLogBuffer(path, f, logBufferSize, l.appendLate)
	return l, nil
}

// appendLate writes a line that arrived after Close: the file is opened,
// appended to and closed again.
func (l *logFile) appendLate(p []byte) error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(p)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// reopen writes out what is buffered to the old file and goes on in a new
// file of the same name.
func (l *logFile) reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("reopen %s: %w", l.path, err)
	}
	old := l.swap(f)
	l.mu.Lock()
	l.f = f
	l.mu.Unlock()
	return old.(*os.File).Close()
}

// closeFile closes the file once the buffer is closed; it is idempotent.
func (l *logFile) closeFile() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
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
