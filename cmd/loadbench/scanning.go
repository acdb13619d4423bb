package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// scanning measures download scanning: time to first byte of a body that is
// not scanned (with the scanner on and off), time to last byte of scanned
// downloads in buffer and trickle modes, and the resident memory of 20
// concurrent 100 MiB scanned downloads against the configured budget.
func scanning(bin, dir, origin string) error {
	off, err := startPicket(bin, picketEnv, dir, "noscan", "[scanner]\nenabled = false\n")
	if err != nil {
		return err
	}
	defer off.stop()
	buffer, err := startPicket(bin, picketEnv, dir, "buffer", "[scanner]\nmode = \"buffer\"\nmemory_budget = \"64MiB\"\n")
	if err != nil {
		return err
	}
	defer buffer.stop()
	trickle, err := startPicket(bin, picketEnv, dir, "trickle", "[scanner]\nmode = \"trickle\"\n")
	if err != nil {
		return err
	}
	defer trickle.stop()

	fmt.Printf("\n%-52s %14s %14s %14s\n", "download scanning (median of 5)", "first byte", "last byte", "picket CPU")
	for _, c := range []struct {
		name, path string
		p          *picket
	}{
		{"10 MiB image, not scanned, scanner off", "/10m.png", off},
		{"10 MiB image, not scanned, scanner on", "/10m.png", buffer},
		{"10 MiB executable, buffer", "/10m.exe", buffer},
		{"10 MiB executable, trickle", "/10m.exe", trickle},
		{"100 MiB executable, buffer (32 MiB scanned)", "/100m.exe", buffer},
		{"100 MiB executable, trickle (32 MiB scanned)", "/100m.exe", trickle},
	} {
		cpu0 := c.p.cpu()
		first, last, err := timeDownload(origin+c.path, c.p.url, 5)
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		cpu := (c.p.cpu() - cpu0) / 5
		fmt.Printf("%-52s %14s %14s %14s\n", c.name, first.Round(10*time.Microsecond), last.Round(100*time.Microsecond), cpu.Round(100*time.Microsecond))
	}

	// 20 concurrent 100 MiB scanned downloads, memory_budget 64 MiB.
	rss0 := buffer.rss()
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := timeDownload(origin+"/100m.exe", buffer.url, 1); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Printf("\n20 concurrent 100 MiB scanned downloads (buffer, memory_budget 64 MiB): RSS before %.1f MiB, peak %.1f MiB\n",
		mib(rss0), mib(buffer.hwm()))
	return engineRows(bin, dir, origin)
}

// timeDownload fetches url through proxy n times and returns the median
// times to the first and the last byte.
func timeDownload(url string, proxy *url.URL, n int) (time.Duration, time.Duration, error) {
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), DisableCompression: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 2 * time.Minute}
	var firsts, lasts []time.Duration
	buf := make([]byte, 64<<10)
	for range n {
		start := time.Now()
		resp, err := c.Get(url)
		if err != nil {
			return 0, 0, err
		}
		var first time.Duration
		for {
			k, err := resp.Body.Read(buf)
			if k > 0 && first == 0 {
				first = time.Since(start)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				resp.Body.Close()
				return 0, 0, err
			}
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		firsts, lasts = append(firsts, first), append(lasts, time.Since(start))
	}
	slices.Sort(firsts)
	slices.Sort(lasts)
	return firsts[n/2], lasts[n/2], nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
