package config

// Reputation is the [reputation] section. Placeholder: the reputation engineer
// replaces this file with the real section ([P3]).
type Reputation struct{}

func (c *Reputation) defaults() {}

func (c *Reputation) validate(p *problems) {}
