//go:build !linux

package main

import "errors"

// bindMount needs Linux's mount namespaces; elsewhere the URL mix runs
// without its host names (-hosts 0).
func bindMount(src, dst string) error {
	return errors.New("host names need a Linux mount namespace (-hosts 0 runs without them)")
}
