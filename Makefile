# chains-sensor. `make` builds; `make test` runs every test (kernel and end-to-end tests need
# root; with CHAINS_REQUIRE_BPF=1 they fail instead of skipping).

CLANG ?= clang-19
ARCH_INCLUDE ?= /usr/include/$(shell uname -m)-linux-gnu
BPF2GO_CFLAGS ?= -O2 -g -Wall -Werror -I$(ARCH_INCLUDE)
# sudo's secure_path leaves out /usr/local/go/bin, where Go's own installer puts go.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
FUZZTIME ?= 60s

export BPF2GO_CC := $(CLANG)
export BPF2GO_CFLAGS

.PHONY: all build run generate check-generate test bench fuzz vet clean

all: build

build:
	$(GO) build -o chains-sensor ./cmd/chains-sensor

# Watch the default-route interface as root; without root, read the bundled capture.
run: build
	@if [ "$$(id -u)" -eq 0 ]; then ./chains-sensor attach; \
	else echo "not root: reading the bundled capture instead of attaching (sudo make run to go live)" >&2; \
	./chains-sensor read cmd/chains-sensor/testdata/sample.pcap; fi

generate:
	$(GO) generate ./gen/

# Regenerate and fail when the committed gen/ differs from what the pinned clang makes.
check-generate: generate
	git diff --exit-code -- gen/

vet:
	$(GO) vet ./...
	test -z "$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/'))"

test: vet
	$(GO) test -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
	scripts/loadbench.sh

# Every fuzz target in turn, FUZZTIME each (go test fuzzes one target at a time).
FUZZ_TARGETS = ./sensor/:FuzzParseFrame ./sensor/:FuzzCaptureFrame ./stages/:FuzzSanitizeName ./stages/:FuzzJSONString \
	./stages/:FuzzSinks ./stages/:FuzzDNS ./stages/:FuzzHTTP ./stages/:FuzzTLS ./stages/:FuzzFlow \
	./cmd/chains-sensor/:FuzzReadPipeline

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $${t#*:} in $${t%%:*} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) "$${t%%:*}" || exit 1; \
	done

clean:
	rm -f chains-sensor
