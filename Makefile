# Meshwarden. `make demo` runs the whole thing; `make test` runs every test.
# Both do their own set-up on a fresh machine (Go modules, the Consul agent
# build, cached under $(CACHE)).

GO        ?= go
CACHE     ?= $(HOME)/.cache/meshwarden
BIN       := bin
FILTERS   := $(shell grep -v '^\#' filters/order.txt | grep -v '^$$')
WASM      := $(addprefix $(BIN)/filters/,$(addsuffix .wasm,$(FILTERS)))
TEST_TIMEOUT ?= 30m
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
# The commit goes in with -X too: GOFLAGS may carry -buildvcs=false (it does
# on the build machine), which leaves the go command's vcs.* stamp out.
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILDINFO := github.com/meshwarden/meshwarden/internal/buildinfo
FUZZTIME  ?= 10s

export MESHWARDEN_CACHE := $(CACHE)
export MESHWARDEN_FILTERS_DIR := $(CURDIR)/$(BIN)/filters

.PHONY: all build filters filters-sha256 cli consul pebble prometheus test test-unit fuzz check demo bench clean help

all: build

help: ## Show targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: filters cli ## Build the .wasm filters and the meshwarden CLI

filters: $(WASM) ## Build the proxy-wasm filters with the standard Go toolchain (reproducible: official builds)

# -trimpath -buildvcs=false make the build reproducible: the same source and
# toolchain give the same bytes anywhere, so filters/official.sha256 names
# them and the gateway runs exactly those modules natively.
$(BIN)/filters/%.wasm: FORCE
	@mkdir -p $(@D)
	GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -trimpath -buildvcs=false -o $@ ./filters/$*/wasm

filters-sha256: filters ## Record the official builds' sha256 in filters/official.sha256 (after changing a filter)
	@{ sed -n '/^#/p' filters/official.sha256; echo "go $$($(GO) env GOVERSION)"; \
	  cd $(BIN)/filters && sha256sum $(addsuffix .wasm,$(FILTERS)); } > filters/official.sha256.new
	@mv filters/official.sha256.new filters/official.sha256
	@cat filters/official.sha256

cli: ## Build bin/meshwarden
	$(GO) build -trimpath -ldflags "-X $(BUILDINFO).version=$(VERSION) -X $(BUILDINFO).commit=$(COMMIT)" -o $(BIN)/meshwarden ./cmd/meshwarden

consul: ## Build the Consul agent once (cached under $(CACHE))
	@scripts/ensure-consul.sh >/dev/null

pebble: ## Build the Pebble ACME test CA once (cached under $(CACHE))
	@scripts/ensure-pebble.sh >/dev/null

prometheus: ## Install Debian's prometheus (rollout tests, demo chapter 9, promtool rule tests) if missing
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		{ echo "installing Debian's prometheus (apt-get)"; SUDO=; [ "$$(id -u)" -eq 0 ] || SUDO=sudo; \
		  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null || \
		  { echo "could not install prometheus: run apt-get install prometheus (the rollout e2e and demo chapter 9 are skipped without it)"; }; }

test: consul pebble prometheus filters ## Run every test (unit, wasm conformance, real Consul, e2e) and brief fuzzing
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

test-unit: ## Run the tests that need no Consul agent
	$(GO) test -short -count=1 ./...

fuzz: ## Run each fuzz target for FUZZTIME (make fuzz FUZZTIME=5m for longer)
	@scripts/fuzz.sh $(FUZZTIME)

check: filters ## gofmt, vet, go mod tidy, wasm build, official filter hashes: fails on any diff
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./filters/... ./internal/auditevent/... ./internal/dyeing/... ./internal/guestfmt/... ./internal/guestjson/... ./internal/guestcrypto/... ./internal/guesturl/...
	$(GO) mod tidy && git diff --exit-code go.mod go.sum
	@goversion=$$($(GO) env GOVERSION); if ! grep -qx "go $$goversion" filters/official.sha256; then \
	  echo "note: filters/official.sha256 records another Go toolchain than $$goversion: official hashes not checked"; \
	else cd $(BIN)/filters && sha256sum $(addsuffix .wasm,$(FILTERS)) | while read -r sum f; do \
	  grep -q "^$$sum  $$f$$" $(CURDIR)/filters/official.sha256 || { echo "filters/official.sha256 is stale for $$f: run make filters-sha256 and commit it"; exit 1; }; done; fi
	@echo check: ok

demo: consul prometheus build ## Bring everything up and show dyed, audited, traced traffic (and rollouts, with Debian's prometheus)
	$(BIN)/meshwarden demo --bin-dir $(BIN)

bench: filters ## Regenerate the figures in docs/BENCHMARKS.md
	@scripts/bench.sh

clean:
	rm -rf $(BIN)

FORCE:
