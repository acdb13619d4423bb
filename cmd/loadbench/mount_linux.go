package main

import "syscall"

// bindMount mounts the file src over dst (a bind mount; Linux mount
// namespaces only).
func bindMount(src, dst string) error {
	return syscall.Mount(src, dst, "", syscall.MS_BIND, "")
}
