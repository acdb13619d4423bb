package main

import "io"

func cmdServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("serve", "serve [-config FILE]", stderr)
	_ = fs.String("config", "config.toml", "configuration file")
	if code, ok := parseFlags(fs, args, false); !ok {
		return code
	}
	return 1
}
