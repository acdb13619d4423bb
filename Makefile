# Picket — the two commands a new user types are `make run` and `make test`.
GO       ?= go
BIN      := bin/picket
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
CONFIG   ?= config.toml

.PHONY: all build run test test-short vet fmt bench bench-go bench-load clean tools

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

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## tools: what the tests need from the system, installed (Debian, as root) only when missing:
## curl for the README flow, Chromium and NSS tools for the browser tests, iproute2 and iptables
## for the transparent-gateway test (it runs as root only, in a network namespace it creates).
tools:
	@missing=""; \
	command -v curl >/dev/null 2>&1 || missing="$$missing curl"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v certutil >/dev/null 2>&1 || missing="$$missing libnss3-tools"; \
	command -v ip >/dev/null 2>&1 || missing="$$missing iproute2"; \
	command -v iptables >/dev/null 2>&1 || missing="$$missing iptables"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

## bench: Go micro-benchmarks, then a load run through the proxy vs. direct
bench: bench-go bench-load

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./...

bench-load: build
	$(GO) run ./cmd/loadbench -bin $(BIN)

clean:
	rm -rf bin
