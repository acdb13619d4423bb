package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/scanner"
	"github.com/picket-proxy/picket/scanner/clamd"
	"github.com/picket-proxy/picket/scanner/icap"
)

// engine is an engine client with its first health check and its Close.
type engine interface {
	scanner.Engine
	Check(ctx context.Context) error
	Close() error
}

// newEngines builds the external anti-virus engines of [scanner.clamd] and
// [scanner.icap], in that order; close stops them. Each is checked once at
// start: an engine that does not answer is logged, not fatal (Picket keeps
// serving and reports it unhealthy).
func newEngines(c config.ScannerSection, log zerolog.Logger) (list []scanner.EngineConfig, closeAll func(), err error) {
	var open []engine
	closeAll = func() {
		for _, e := range open {
			e.Close()
		}
	}
	if a := c.Clamd; a.Address != "" {
		e, err := clamd.New(clamd.Config{Name: a.Name, Address: a.Address, Timeout: a.Timeout.D(),
			StreamMaxLength: int64(a.StreamMaxLength), MaxConnections: a.MaxConnections,
			IdleConnections: a.IdleConnections, HealthInterval: a.HealthInterval.D()})
		if err != nil {
			return nil, closeAll, fmt.Errorf("scanner.clamd: %w", err)
		}
		open = append(open, e)
		list = append(list, scanner.EngineConfig{Engine: e, FailClosed: a.Fail == "closed"})
	}
	if a := c.ICAP; a.URL != "" || a.ReqmodURL != "" {
		e, err := icap.New(icap.Config{Name: a.Name, URL: a.URL, ReqmodURL: a.ReqmodURL, Timeout: a.Timeout.D(),
			MaxConnections: a.MaxConnections, IdleConnections: a.IdleConnections, HealthInterval: a.HealthInterval.D()})
		if err != nil {
			closeAll()
			return nil, func() {}, fmt.Errorf("scanner.icap: %w", err)
		}
		open = append(open, e)
		list = append(list, scanner.EngineConfig{Engine: e, FailClosed: a.Fail == "closed"})
	}
	for i, e := range open {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := e.Check(ctx)
		cancel()
		h := e.Health()
		ev := log.Info()
		if err != nil {
			ev = log.Warn().Err(err)
		}
		ev.Str("engine", e.Name()).Str("address", h.Address).Str("version", h.Version).Str("signatures", h.Signatures).
			Bool("fail_closed", list[i].FailClosed).Msg(map[bool]string{true: "anti-virus engine ready", false: "anti-virus engine not answering: scanning goes on without it until it does"}[err == nil])
	}
	return list, closeAll, nil
}
