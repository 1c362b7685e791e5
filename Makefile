# chains-sensor. `make` builds; `make run` watches the default-route interface; `make test` runs
# every test. Both need root for the kernel: they get it as root, else through sudo (see
# scripts/lib.sh), else run what needs no root (run reads the bundled capture; test runs the
# tests that need no root; with CHAINS_REQUIRE_BPF=1 those that need it fail instead of
# skipping).

CLANG ?= clang-19
ARCH_INCLUDE ?= /usr/include/$(shell uname -m)-linux-gnu
BPF2GO_CFLAGS ?= -O2 -g -Wall -Werror -I$(ARCH_INCLUDE)
# sudo's secure_path leaves out /usr/local/go/bin, where Go's own installer puts go.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
FUZZTIME ?= 60s
# Go 1.21+ fetches the toolchain go.mod names; some distributions' go.env says local.
GOTOOLCHAIN ?= auto
export GOTOOLCHAIN
# The race detector needs cgo and a C compiler: the pinned clang is one.
RACE_CC ?= $(CLANG)
# The packages whose tests run under the race detector, and the others.
RACE_PKGS = ./sensor/... ./stages/...
PLAIN_PKGS = $(shell $(GO) list ./... | grep -v -e '/sensor$$' -e '/sensor/' -e '/stages$$' -e '/stages/')
LIB = . scripts/lib.sh

export BPF2GO_CC := $(CLANG)
export BPF2GO_CFLAGS

.PHONY: all build install run generate check-generate test test-as-is test-timing bench bench-as-is fuzz fuzz-list vet clean

all: build

# The version the program names (its pcapng files' section header says it).
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o chains-sensor ./cmd/chains-sensor

# Install the binary, the systemd unit and (when it is not there yet) its flags file:
#   sudo make install && sudo systemctl enable --now chains-sensor
# DESTDIR stages the files elsewhere (a package build); PREFIX is where the binary goes (the
# unit's ExecStart names /usr/local/bin: a PREFIX other than /usr/local rewrites it).
PREFIX ?= /usr/local
UNITDIR ?= /etc/systemd/system
install: build
	install -D -m 0755 chains-sensor $(DESTDIR)$(PREFIX)/bin/chains-sensor
	install -d $(DESTDIR)$(UNITDIR)
	sed 's|/usr/local/bin/chains-sensor|$(PREFIX)/bin/chains-sensor|' dist/systemd/chains-sensor.service \
		>$(DESTDIR)$(UNITDIR)/chains-sensor.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/chains-sensor.service
	@if [ -e $(DESTDIR)/etc/default/chains-sensor ]; then \
		echo "keeping $(DESTDIR)/etc/default/chains-sensor"; \
	else install -D -m 0644 dist/systemd/chains-sensor.default $(DESTDIR)/etc/default/chains-sensor; fi
	@if [ -z "$(DESTDIR)" ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# Watch the default-route interface, as root or through sudo; where neither is possible, read the
# bundled capture instead.
run: build
	@$(LIB); if can_be_root; then as_root ./chains-sensor attach; \
	else no_root_hint "watching an interface"; \
	echo "reading the bundled capture instead" >&2; \
	./chains-sensor read cmd/chains-sensor/testdata/sample.pcap; fi

generate:
	$(GO) generate ./gen/

# Regenerate and fail when the committed gen/ differs from what the pinned clang makes.
check-generate: generate
	git diff --exit-code -- gen/

vet:
	$(GO) vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))"

# vet as the user, then every test as root (through sudo where needed), or as the user where
# neither is possible.
test: vet
	@$(LIB); if can_be_root; then as_root $(MAKE) --no-print-directory GO=$(GO) test-as-is; \
	else no_root_hint "running the kernel and end-to-end tests"; \
	echo "running the tests with the privileges there are: those that need root skip" >&2; \
	$(MAKE) --no-print-directory GO=$(GO) test-as-is; fi

# Every test with the privileges this shell has: sensor/ and stages/ under the race detector.
test-as-is:
	$(GO) test -count=1 $(PLAIN_PKGS)
	CGO_ENABLED=1 CC=$(RACE_CC) $(GO) test -race -count=1 $(RACE_PKGS)

# The checks with a wall-clock bound (a lone packet printed within 100 ms), left out of the
# default suite because a loaded machine fails them for reasons of its own. Needs root.
test-timing:
	CHAINS_TIMING=1 $(GO) test -count=1 -run 'Latency' ./...

# The benchmarks and the load benchmark, as root (through sudo where needed): the kernel ones
# and loadbench.sh need it.
bench: build
	@$(LIB); if can_be_root; then as_root $(MAKE) --no-print-directory GO=$(GO) bench-as-is; \
	else no_root_hint "benchmarking the kernel programs"; exit 1; fi

bench-as-is:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	SENSOR=$(CURDIR)/chains-sensor bash scripts/loadbench.sh

# Every fuzz target in turn, FUZZTIME each (go test fuzzes one target at a time). The targets
# are what `go test -list` finds: "PACKAGE TARGET" a line.
fuzz-list:
	@out=$$($(GO) test -list '^Fuzz' ./...) || { echo "$$out" >&2; exit 1; }; \
	echo "$$out" | awk '$$1 ~ /^Fuzz/ { t[n++] = $$1 } $$1 == "ok" { for (i = 0; i < n; i++) print $$2, t[i]; n = 0 }'

fuzz:
	@list=$$($(MAKE) --no-print-directory -s fuzz-list) || exit 1; \
	[ -n "$$list" ] || { echo "no fuzz targets found" >&2; exit 1; }; \
	echo "$$list" | while read -r pkg target; do \
		echo "fuzz $$target in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) "$$pkg" || exit 1; \
	done

clean:
	rm -f chains-sensor
