package main

import (
	"fmt"

	"github.com/picket-proxy/picket/config"
	"github.com/picket-proxy/picket/policy"
	"github.com/picket-proxy/picket/proxy"
)

// upstreamConfig maps [upstream] (the parent proxies and what goes direct)
// into c.
func upstreamConfig(u config.Upstream, c *proxy.Config) error {
	for _, s := range u.Proxies {
		pu, err := config.ParentProxy(s)
		if err != nil {
			return fmt.Errorf("upstream.proxies: %w", err)
		}
		c.Parents = append(c.Parents, pu)
	}
	if len(u.DirectHosts) > 0 {
		hosts, err := policy.CompileHosts(u.DirectHosts)
		if err != nil {
			return fmt.Errorf("upstream.direct_hosts: %w", err)
		}
		c.DirectHosts = hosts.Match
	}
	nets, err := prefixes(u.DirectNetworks)
	if err != nil {
		return fmt.Errorf("upstream.direct_networks: %w", err)
	}
	c.DirectNetworks = nets
	c.ParentBackoff, c.ParentMaxBackoff = u.Backoff.D(), u.MaxBackoff.D()
	return nil
}
