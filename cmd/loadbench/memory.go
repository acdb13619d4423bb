package main

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// stream64 posts 64 MiB through the proxy and reads the echo.
func stream64(origin string, proxy *url.URL) error {
	const size = 64 << 20
	var seed [32]byte
	body := io.LimitReader(rand.NewChaCha8(seed), size)
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", origin+"/echo", body)
	req.ContentLength = size
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != size {
		return fmt.Errorf("64 MiB echo: got %d bytes (%v)", n, err)
	}
	return nil
}

// connMemory opens n idle keep-alive client connections (each after one
// request) and then m idle CONNECT tunnels to the origin, and reports
// Picket's resident memory per connection and per tunnel.
func connMemory(p *picket, origin string, n, m int) error {
	host := strings.TrimPrefix(origin, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	open := func(count int, req string, want string) error {
		var mu sync.Mutex
		errs := make(chan error, 64)
		var wg sync.WaitGroup
		per := count / 64
		for w := 0; w < 64; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					c, err := net.DialTimeout("tcp", p.url.Host, 5*time.Second)
					if err != nil {
						errs <- err
						return
					}
					c.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(c, req); err != nil {
						errs <- err
						return
					}
					br := bufio.NewReader(c)
					resp, err := http.ReadResponse(br, nil)
					if err != nil || !strings.Contains(resp.Status, want) {
						errs <- fmt.Errorf("response %v %v", resp, err)
						return
					}
					if want == "200 OK" {
						io.Copy(io.Discard, resp.Body)
					}
					c.SetDeadline(time.Time{})
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		return <-errs
	}
	time.Sleep(500 * time.Millisecond)
	rss0 := p.rss()
	if err := open(n, "GET "+origin+"/1k HTTP/1.1\r\nHost: "+host+"\r\n\r\n", "200 OK"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	rss1 := p.rss()
	idle := len(conns)
	if err := open(m, "CONNECT "+host+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n", "200"); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	rss2 := p.rss()
	tunnels := len(conns) - idle
	fmt.Printf("\n%d idle keep-alive connections: RSS %.1f -> %.1f MiB, %.1f KiB each\n",
		idle, mib(rss0), mib(rss1), float64(rss1-rss0)/1024/float64(max(idle, 1)))
	fmt.Printf("%d idle CONNECT tunnels: RSS %.1f -> %.1f MiB, %.1f KiB each (client and upstream sides)\n",
		tunnels, mib(rss1), mib(rss2), float64(rss2-rss1)/1024/float64(max(tunnels, 1)))
	return nil
}
