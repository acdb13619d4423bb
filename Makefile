# Picket — the two commands a new user types are `make run` and `make test`.
GO       ?= go
# The Go every target builds and tests with: 1.27.3, fetched once through the
# module proxy (about 76 MB) when the Go on the PATH is another. Go 1.26.8, the
# version go.mod names for the language, lacks two point releases of fixes
# (1.26.9, 1.26.10); 1.27.3 is the newer Go the build machines are set up to
# fetch (the proxy also has 1.27.4, not yet tried here).
# `make GOTOOLCHAIN=local ...` uses the Go on the PATH instead.
export GOTOOLCHAIN := go1.27.3
BIN      := bin/picket
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
CONFIG   ?= config.toml

.PHONY: all build run test test-short vet fmt bench bench-go bench-db bench-compare loadtest fuzz soak clean tools install

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/picket

## run: build and start Picket with the repository's config.toml
run: build
	./$(BIN) serve -config $(CONFIG)

## test: vet, formatting, and the whole test suite with the race detector
test: tools vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

## vet: go vet here, and for macOS, Windows and FreeBSD: Picket builds (and its tests compile) there too
vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	GOOS=windows $(GO) vet ./...
	GOOS=freebsd $(GO) build ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## tools: what the tests need from the system, installed (Debian, as root) only when missing:
## curl for the README flow, Chromium and NSS tools for the browser tests, iproute2 and iptables
## for the transparent-gateway test (it runs as root only, in a network namespace it creates),
## and the real servers the end-to-end tests start on loopback: clamd and c-icap (anti-virus
## engines), slapd (a directory), haproxy (a load balancer), squid (a parent proxy and a peer),
## mitmproxy, h2load, wrk and hey (load peers and generators), dpkg-dev and lintian (the package).
tools:
	@missing=""; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v certutil >/dev/null 2>&1 || missing="$$missing libnss3-tools"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	command -v clamd >/dev/null 2>&1 || missing="$$missing clamav-daemon"; \
	command -v c-icap >/dev/null 2>&1 || missing="$$missing c-icap libc-icap-mod-virus-scan"; \
	command -v slapd >/dev/null 2>&1 || missing="$$missing slapd"; \
	command -v ldapadd >/dev/null 2>&1 || missing="$$missing ldap-utils"; \
	command -v haproxy >/dev/null 2>&1 || missing="$$missing haproxy"; \
	command -v squid >/dev/null 2>&1 || missing="$$missing squid"; \
	command -v mitmdump >/dev/null 2>&1 || missing="$$missing mitmproxy"; \
	command -v h2load >/dev/null 2>&1 || missing="$$missing nghttp2-client"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v hey >/dev/null 2>&1 || missing="$$missing hey"; \
	command -v lintian >/dev/null 2>&1 || missing="$$missing lintian"; \
	command -v dpkg-deb >/dev/null 2>&1 || missing="$$missing dpkg-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## bench: Go micro-benchmarks of the hot paths, the load run (loadtest), then
## the reputation database at real size (bench-db).
bench: bench-go loadtest bench-db

## bench-db: generate a feed directory of DB_ENTRIES entries (URLs, domains,
## SHA-256 signatures) in a temporary directory and measure bin/picket on it
## with config.toml: first load, restart from the compiled file, resident
## memory after start and after a lookup sweep, a reload, and the lookup
## benchmarks on the same database; DB_RUNS runs.
DB_ENTRIES ?= 5000000
DB_RUNS    ?= 3
bench-db: build
	$(GO) run ./cmd/dbbench -bin $(BIN) -entries $(DB_ENTRIES) -runs $(DB_RUNS)

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## bench-compare: the Go benchmarks of BASE (a git revision) and of the working
## tree, BENCHCOUNT runs each, taken in turns (a noisy stretch of the machine
## hits both), compared by benchstat (installed when missing). Regressions are
## caught this way, never by timed tests. BENCH and BENCHPKGS narrow it, e.g.
## make bench-compare BASE=main BENCH=GET BENCHPKGS=./proxy
BASE       ?= HEAD
BENCHCOUNT ?= 6
BENCH      ?= .
BENCHPKGS  ?= ./...
BENCHSTAT  := $(shell $(GO) env GOPATH)/bin/benchstat
bench-compare:
	@test -x $(BENCHSTAT) || $(GO) install golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
	@set -e; tmp=$$(mktemp -d); \
	  trap 'git worktree remove --force "$$tmp/base" >/dev/null 2>&1 || true; rm -rf "$$tmp"' EXIT; \
	  git worktree add -q --detach "$$tmp/base" $(BASE); \
	  for i in $$(seq $(BENCHCOUNT)); do \
	    echo "run $$i of $(BENCHCOUNT): $(BASE), then the working tree"; \
	    (cd "$$tmp/base" && $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count 1 $(BENCHPKGS)) >> "$$tmp/base.txt"; \
	    $(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count 1 $(BENCHPKGS) >> "$$tmp/working-tree.txt"; \
	  done; \
	  cd "$$tmp" && $(BENCHSTAT) base.txt working-tree.txt

## loadtest: picket (filtering on, the 5 M-entry reputation database
## generated into a temporary directory, URLs spread over 64 host names on
## 127.0.0.1) against direct requests on loopback, every row twice: every
## contestant's access log off, then on. PEERS=1 adds squid, tinyproxy, a
## bare goproxy and, on intercepted rows, mitmproxy (installed from Debian
## when missing, with wrk and hey); FLOOR=1 adds the floor (go-forward on
## HTTP and intercepted rows, go-tunnel on tunnel rows) and Picket's CPU per
## request as a ratio to it. Each row is driven by the in-process generator
## and by wrk (HTTP rows) or hey (HTTPS rows), ROUNDS rounds of DURATION per
## proxy (tunnel rows at least 9), direct first, proxies in a rotated order;
## the table shows each proxy's median ratio to direct and whether the row is
## met. hey runs the two keep-alive rows for 5 s at least (its start races).
## PEERS=1 FLOOR=1 ROUNDS=9 took 47 minutes on 2 cores (docs/benchmarks.md);
## the default ROUNDS=5 takes less. Needs root (a mount namespace for the
## host names).
DURATION ?= 1s
ROUNDS ?= 5
loadtest: build
	@missing=""; \
	  for t in wrk hey; do command -v $$t >/dev/null 2>&1 || missing="$$missing $$t"; done; \
	  if [ -n "$(PEERS)" ]; then \
	    command -v squid >/dev/null 2>&1 || missing="$$missing squid"; \
	    command -v tinyproxy >/dev/null 2>&1 || missing="$$missing tinyproxy"; \
	    command -v mitmdump >/dev/null 2>&1 || missing="$$missing mitmproxy"; \
	  fi; \
	  if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi; \
	  if [ -n "$(PEERS)" ]; then systemctl stop squid tinyproxy 2>/dev/null || true; fi
	$(GO) build -o bin/loadbench ./cmd/loadbench
	./bin/loadbench -bin $(BIN) -duration $(DURATION) -rounds $(ROUNDS) $(if $(PEERS),-peers) $(if $(FLOOR),-floor) $(if $(PROFILE),-profile $(PROFILE))

## fuzz: every fuzz target for FUZZTIME each (their seed corpora also run in `make test`).
## FUZZMINIMIZE bounds the minimizing of each new input: at Go's default (60s) a target whose inputs are
## slow to minimize (a ClientHello, a config file) spent its whole FUZZTIME minimizing (22 executions in 45s).
FUZZTIME ?= 30s
FUZZMINIMIZE ?= 200x
# every Fuzz function of the tree, as package:Name (a target added to a test file is fuzzed without more)
FUZZ_TARGETS ?= $(shell grep -r --include='*_test.go' -o '^func Fuzz[A-Za-z0-9_]*' . | sed -E 's|^(.*)/[^/]*_test\.go:func |\1:|' | sort)

fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "== $$name ($$pkg, $(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) $$pkg; \
	done

## soak: SOAK (default 2m) of mixed traffic through the built binary; fails on a wrong body or a leak
SOAK ?= 2m
soak: build
	$(GO) run ./cmd/soak -bin $(BIN) -duration $(SOAK)

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
CONFDIR  ?= /etc/picket
DATADIR  ?= /var/lib/picket
UNITDIR  ?= /etc/systemd/system
SYSUSERSDIR ?= /usr/lib/sysusers.d

## install: as root: the binary, config.toml (an existing one is kept), the
## data directory, the systemd unit and the picket user. DESTDIR stages it.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/picket
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	@if [ -e $(DESTDIR)$(CONFDIR)/config.toml ]; then echo "keeping the existing $(CONFDIR)/config.toml"; \
	  else install -m 0640 $(CONFIG) $(DESTDIR)$(CONFDIR)/config.toml; fi
	install -d -m 0750 $(DESTDIR)$(DATADIR)
	cp -Rn data/feeds data/signatures $(DESTDIR)$(DATADIR)/
	ln -sfn $(DATADIR) $(DESTDIR)$(CONFDIR)/data
	sed -e 's#/usr/local/bin/picket#$(BINDIR)/picket#' -e 's#/etc/picket#$(CONFDIR)#g' -e 's#/var/lib/picket#$(DATADIR)#g' \
	  deploy/picket.service > picket.service.tmp
	install -D -m 0644 picket.service.tmp $(DESTDIR)$(UNITDIR)/picket.service && rm -f picket.service.tmp
	install -D -m 0644 deploy/picket.sysusers $(DESTDIR)$(SYSUSERSDIR)/picket.conf
	@if [ -z "$(DESTDIR)" ]; then \
	  systemd-sysusers $(SYSUSERSDIR)/picket.conf 2>/dev/null || id picket >/dev/null 2>&1 || \
	    useradd --system --home-dir $(DATADIR) --shell /usr/sbin/nologin picket; \
	  chown root:picket $(CONFDIR)/config.toml && chown -R picket:picket $(DATADIR); \
	  systemctl daemon-reload 2>/dev/null || true; \
	  echo "installed: systemctl enable --now picket; the admin token appears in $(DATADIR)/admin.token on first start"; \
	fi

## deb: the Debian package $(DEBOUT)/picket_<version>_amd64.deb, built by nfpm
## (a Go tool of this module: go tool nfpm): /usr/bin/picket,
## /etc/picket/config.toml (a conffile), /var/lib/picket (the CA, the feeds,
## the state; /etc/picket/data links to it), the systemd unit and the
## sysusers file; postinst makes the picket user. The version is the tag
## (v1.2.3 -> 1.2.3) or 0.0~git<date>.<commit>. DEBBUILD is the staging
## directory. See docs/operations.md#install-the-debian-package.
DEBVERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) && echo "$${v#v}" | sed 's/-\([0-9]*\)-g/+\1.g/' || \
	echo "0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$$(git rev-parse --short=8 HEAD 2>/dev/null || echo 0)$$(git diff --quiet HEAD 2>/dev/null || echo .dirty)")
DEBOUT   ?= bin
DEBBUILD ?= bin/deb-stage
deb:
	@rm -rf $(DEBBUILD) && mkdir -p $(DEBBUILD) $(DEBOUT)
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -buildmode=pie \
	  -ldflags '-s -w -X main.version=$(DEBVERSION)' -o $(DEBBUILD)/picket ./cmd/picket
	sed -e 's#/usr/local/bin/picket#/usr/bin/picket#' \
	  -e 's#Installed by `make install` to /etc/systemd/system/picket.service#Installed by the picket package#' \
	  deploy/picket.service > $(DEBBUILD)/picket.service
	@{ echo "picket ($(DEBVERSION)) unstable; urgency=medium"; echo; \
	  echo "  * Built from commit $$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)."; echo; \
	  echo " -- Picket maintainers <maintainers@picket-proxy.org>  $$(git log -1 --format=%cD 2>/dev/null || date -R)"; \
	} | gzip -9n > $(DEBBUILD)/changelog.gz
	gzip -9n < deploy/deb/picket.8 > $(DEBBUILD)/picket.8.gz
	sed 's#@STAGE@#$(abspath $(DEBBUILD))#g' deploy/nfpm.yaml > $(DEBBUILD)/nfpm.yaml
	DEBVERSION='$(DEBVERSION)' $(GO) tool nfpm package --config $(DEBBUILD)/nfpm.yaml --packager deb \
	  --target $(DEBOUT)/picket_$(DEBVERSION)_amd64.deb

clean:
	rm -rf bin
