# plantedge — `make help` lists the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO      ?= go
# Builds and tests use this toolchain (the go command fetches it once): the
# standard library of 1.26.8 has known vulnerabilities the agent reaches
# (README, Quick start; make vulncheck). GOTOOLCHAIN=local keeps the machine's.
export GOTOOLCHAIN ?= go1.27.3

.PHONY: help build test deps bench lint vulncheck demo package
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/plantedge
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plantedge ./cmd/plantedge

deps: ## install what the tests need (Mosquitto, node-opcua) if missing
	./.ci/deps

test: deps ## run every test with the race detector
	@# -parallel 4: the agent package's tests mostly wait (for a broker, an
	@# emulator, a backoff), not compute: four at a time took it from 883 s
	@# to 532 s on two cores, the load under 1.5.
	$(GO) test -race -count=1 -timeout 18m -parallel 4 ./...
	@# skipped under -race: gopcua races with itself while renewing (gopcua/opcua#882)
	$(GO) test -count=1 -timeout 5m -run '^TestSecureChannelRenewal$$' ./connectors/opcua/

bench: ## run the benchmarks exactly as the Benchmarks table quotes them (docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 3 ./buffer/
	$(GO) test -run '^$$' -bench 'DrainBacklog|IngestMQTT' -benchtime 1x ./agent/
	$(GO) test -run '^$$' -bench IngestOPCUA -benchtime 1x -count 2 ./agent/
	$(GO) test -run '^$$' -bench OPCUASessions -benchtime 1x -count 3 ./agent/
	$(GO) test -run '^$$' -bench StoppedStatus -benchtime 3x -count 3 ./agent/
	$(GO) test -run '^$$' -bench . -benchtime 20000x ./connectors/mqtt/
	$(GO) test -run '^$$' -bench Notifications -benchtime 20x ./connectors/opcua/
	$(GO) test -run '^$$' -bench BrowseNodeOPCUA -benchtime 1x -count 3 ./connectors/opcua/
	$(GO) test -run '^$$' -bench 'Browse$$' -benchtime 1x -count 3 ./connectors/opcua/
	$(GO) test -run '^$$' -bench Apply -benchtime 200000x ./agent/mapping/
	$(GO) test -run '^$$' -bench SparkplugBirths -benchtime 3x -count 3 ./agent/mapping/
	$(GO) test -run '^$$' -bench ParseAnchorRedefined -benchtime 3x -count 2 ./agent/config/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./odoo/

STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(STATICCHECK) ./...

vulncheck: ## known vulnerabilities the code reaches (govulncheck, pinned database snapshot)
	./.ci/vulncheck

demo: ## run the embedded demo
	$(GO) run ./cmd/plantedge demo

# --- packages (packaging/README.md) ---
NFPM ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
DIST ?= dist
PKG_VERSION ?= $(shell packaging/version.sh)
PKG_ARCH ?= $(shell $(GO) env GOARCH)
# 32-bit ARM (armv7, hard float: Debian's armhf) is PKG_ARCH=arm7 (or armhf, or
# Go's arm): Go's GOARCH=arm GOARM=7, nfpm's arm7 (.deb armhf, .rpm armv7hl).
PKG_GOARCH = $(if $(filter arm arm7 armhf,$(PKG_ARCH)),arm,$(PKG_ARCH))
PKG_GOARM = $(if $(filter arm arm7 armhf,$(PKG_ARCH)),GOARM=7)
PKG_NFPM_ARCH = $(if $(filter arm armhf,$(PKG_ARCH)),arm7,$(PKG_ARCH))
PKG_FORMATS ?= deb rpm
PKG_EXAMPLE_CONFIG ?= packaging/plantedge.yaml
PKG_BIN = $(DIST)/.build/linux_$(PKG_ARCH)/plantedge
PKG_LDFLAGS = -s -w -X main.version=$(PKG_VERSION) -X main.commit=$(COMMIT)

package: ## build the .deb and .rpm into dist/ (PKG_ARCH=arm64 or arm7 cross-builds)
	@test -f '$(PKG_EXAMPLE_CONFIG)' || { echo "package: $(PKG_EXAMPLE_CONFIG) missing" >&2; exit 1; }
	@mkdir -p '$(DIST)/.build/linux_$(PKG_ARCH)'
	CGO_ENABLED=0 GOOS=linux GOARCH=$(PKG_GOARCH) $(PKG_GOARM) $(GO) build -trimpath -ldflags '$(PKG_LDFLAGS)' -o '$(PKG_BIN)' ./cmd/plantedge
	@for f in $(PKG_FORMATS); do \
		echo "nfpm: plantedge $(PKG_VERSION) $(PKG_ARCH) $$f"; \
		PLANTEDGE_VERSION='$(PKG_VERSION)' PLANTEDGE_ARCH='$(PKG_NFPM_ARCH)' \
		PLANTEDGE_BIN='$(PKG_BIN)' PLANTEDGE_CONFIG='$(PKG_EXAMPLE_CONFIG)' \
		$(NFPM) pkg --config packaging/nfpm.yaml --packager $$f --target '$(DIST)/' || exit 1; \
	done
