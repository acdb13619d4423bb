package main

import (
	"fmt"
	"io"
	"os"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
)

// logs are the two loggers of a running Picket and the files behind them.
type logs struct {
	app, access zerolog.Logger
	files       []*os.File
}

func (l *logs) Close() {
	for _, f := range l.files {
		_ = f.Close()
	}
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
		f, err := os.OpenFile(resolve(dest), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
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
	return l, nil
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
