//go:build !linux

package db

func adviseRandom([]byte, int) {}
