# plantedge — `make help` lists the targets.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
GO      ?= go

.PHONY: help build test deps bench lint demo
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## build bin/plantedge
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/plantedge ./cmd/plantedge

deps: ## install what the tests need (Mosquitto, node-opcua) if missing
	./.ci/deps

test: deps ## run every test with the race detector
	$(GO) test -race -count=1 -timeout 15m ./...

bench: ## run the benchmarks (figures in README)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

demo: ## run the embedded demo
	$(GO) run ./cmd/plantedge demo
