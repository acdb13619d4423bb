package main

import (
	"fmt"
	"strings"
)

// The rows of the table: each scenario measured by each of its generators
// over the rounds, one line per generator, then whether the row is met.

// roundsOf is how many rounds sc's row has: at least tunnelRounds for a
// tunnel row (the bar for them is over at least 9 rounds).
func roundsOf(sc scenario) int {
	if sc.kind() == tunnelRow {
		return max(rounds, tunnelRounds)
	}
	return rounds
}

// row measures one scenario with each generator and prints its lines and
// its verdict.
func (b *bench) row(sc scenario, field []column) {
	origin := b.origin.URL
	switch {
	case sc.h2:
		origin = b.h2Origin.URL // offers h2: direct runs are HTTP/2 too
	case sc.https:
		origin = b.tlsOrigin.URL // http/1.1 only
	}
	cache := newCacheWatch(b.pickets[sc.kind()])
	var verdicts []string
	met := true
	for g, gen := range generators(sc) {
		direct, directT, tallies := b.measure(sc, field, gen, origin)
		name := sc.name
		if g > 0 {
			name = ""
		}
		printRow(name, gen.name, sc.kind(), field, direct, tallies)
		if verbose {
			printVerbose(sc, field, &directT, tallies)
		}
		ok, why := verdict(sc, field, tallies)
		met = met && ok
		verdicts = append(verdicts, gen.name+": "+why)
	}
	word := "MET"
	if !met {
		word = "NOT MET"
	}
	fmt.Printf("    %s (%s); picket %s\n", word, strings.Join(verdicts, "; "), cache)
}

// measure runs sc's rounds with gen: each round measures direct, then
// every contestant in an order rotated by one per round, so that a slow or
// fast stretch of the shared machine does not favour whoever runs at a
// fixed position. It returns the median direct rate, the direct runs'
// counters and each column's tally.
func (b *bench) measure(sc scenario, field []column, gen generator, origin string) (float64, tally, []tally) {
	k := sc.kind()
	tallies := make([]tally, len(field))
	var directs []float64
	var directT tally // this process's CPU and the machine's counters in the direct runs
	for round := range roundsOf(sc) {
		direct := directT.observe(func() result { return gen.run(b, sc, origin, nil) })
		directs = append(directs, direct.rate())
		directT.n += direct.n
		for j := range field {
			i := (j + round) % len(field)
			p := field[i].procs[k]
			if p == nil {
				continue
			}
			cpu0 := p.cpu()
			r := tallies[i].observe(func() result { return gen.run(b, sc, origin, p.url) })
			tallies[i].add(r, direct, p.cpu()-cpu0)
		}
	}
	return median(directs), directT, tallies
}

// The bars of issue 26: Picket at or above the best peer and within 1.2×
// its floor's CPU per request; on tunnel rows, at least 0.95× the best
// peer and within 1.15× go-tunnel's CPU per tunnel.
const (
	floorBar       = 1.2
	tunnelFloorBar = 1.15
	tunnelPeerBar  = 0.95
)

// isPeer reports whether column c is a peer Picket is compared with (not
// Picket, its A/B twin or the floor).
func isPeer(c column) bool { return c.name != "picket" && c.name != "picket-b" && c.name != "floor" }

// verdict says whether Picket meets the row's bars on one generator's
// figures, and by how much.
func verdict(sc scenario, field []column, tallies []tally) (bool, string) {
	k := sc.kind()
	peerBar, cpuBar := 1.0, floorBar
	if k == tunnelRow {
		peerBar, cpuBar = tunnelPeerBar, tunnelFloorBar
	}
	pk := &tallies[0]
	if pk.n == 0 {
		return false, "no request through picket"
	}
	ok := true
	var parts []string
	best, bestName := 0.0, ""
	for i, c := range field {
		if isPeer(c) && c.procs[k] != nil && tallies[i].ratio() > best {
			best, bestName = tallies[i].ratio(), c.name
		}
	}
	if bestName != "" {
		rel := pk.ratio() / best
		ok = ok && rel >= peerBar
		parts = append(parts, fmt.Sprintf("%.2f× best peer (%s)", rel, bestName))
	}
	for i, c := range field {
		if c.name == "floor" && c.procs[k] != nil && tallies[i].n > 0 {
			rel := pk.cpuPerReq() / tallies[i].cpuPerReq()
			ok = ok && rel <= cpuBar
			parts = append(parts, fmt.Sprintf("CPU %.2f× floor", rel))
		}
	}
	if pk.errs > 0 {
		ok = false
		parts = append(parts, fmt.Sprintf("%d errors", pk.errs))
	}
	word := "met"
	if !ok {
		word = "not met"
	}
	return ok, word + ", " + strings.Join(parts, ", ")
}

// printRow prints one generator's line of a row: the direct rate, Picket's
// ratio, CPU per request, latencies and CPU as a ratio to the floor, then
// each other column's ratio and CPU per request.
func printRow(name, gen string, k rowKind, field []column, direct float64, tallies []tally) {
	row := fmt.Sprintf("%-42s %-3s %10.0f", name, gen, direct)
	t := &tallies[0]
	p50, p99 := t.latency()
	row += fmt.Sprintf(" | %6.2f %10s %6s %6s %6s", t.ratio(), t.perReq(), p50, p99, floorRatio(k, field, tallies))
	errs := []string{fmt.Sprintf("picket %d", t.errs)}
	anyErr := t.errs > 0
	for i, c := range field[1:] {
		if c.procs[k] == nil {
			row += fmt.Sprintf(" | %-16s", "-")
			continue
		}
		t := &tallies[i+1]
		row += fmt.Sprintf(" | %5.2f %10s", t.ratio(), t.perReq())
		errs = append(errs, fmt.Sprintf("%s %d", c.name, t.errs))
		anyErr = anyErr || t.errs > 0
	}
	if anyErr {
		row += fmt.Sprintf("  (errors: %s)", strings.Join(errs, ", "))
	}
	fmt.Println(row)
}

// floorRatio is Picket's CPU per request as a ratio to the floor's on a
// row of kind k ("-" without a floor).
func floorRatio(k rowKind, field []column, tallies []tally) string {
	for i, c := range field {
		if c.name == "floor" && c.procs[k] != nil && tallies[i].n > 0 && tallies[0].n > 0 {
			return fmt.Sprintf("%.2f", tallies[0].cpuPerReq()/tallies[i].cpuPerReq())
		}
	}
	return "-"
}

func printVerbose(sc scenario, field []column, directT *tally, tallies []tally) {
	fmt.Printf("    %-10s client+origin CPU/req %s, %s\n", "direct", perReq(directT.self, directT.n), directT.machineString())
	for i, c := range field {
		if c.procs[sc.kind()] == nil {
			continue
		}
		t := &tallies[i]
		p50, p99 := t.latency()
		fmt.Printf("    %-10s ratios per round %.2f, latency p50 %s p99 %s, client+origin CPU/req %s, %s\n",
			c.name, t.ratios, p50, p99, perReq(t.self, t.n), t.machineString())
		if t.firstErr != "" {
			fmt.Printf("    %-10s first error: %s\n", "", t.firstErr)
		}
	}
}
