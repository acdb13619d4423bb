//go:build !linux

package main

import "io"

// keepSchedulerAwake does nothing here: the setting was measured on Linux,
// where Picket restarts itself through /proc/self/exe.
func keepSchedulerAwake(io.Writer) {}
