# ccmr — see README.md. Every target installs what it needs through `deps`.
GO       ?= go
BIN      ?= bin/ccmr
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo devel)
FUZZTIME ?= 60s
LDFLAGS  := -s -w -X main.version=$(VERSION)

export CGO_ENABLED = 0

.PHONY: all build deps test bench fuzz demo conformance e2e clean

all: build

## build: the static ccmr binary in bin/ccmr
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ccmr

## deps: install the Debian packages the tests use (idempotent)
deps:
	bash scripts/deps.sh

## test: every test; external tools are required, not skipped
test: deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	CCMR_REQUIRE_TOOLS=1 $(GO) test -count=1 ./...

## bench: Go benchmarks plus ccmr against the peer tools on the same input
bench: deps build
	bash scripts/bench.sh

## fuzz: a short run of every fuzz target (FUZZTIME each)
fuzz:
	FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

## conformance: replay every log of ../shared/testdata/public (or $CCMR_CORPUS)
## against its published values; fails when the corpus is missing
conformance:
	CCMR_REQUIRE_CORPUS=1 CCMR_CONFORMANCE_DOC=$(CURDIR)/docs/conformance.md $(GO) test -count=1 -run 'Conformance|CorpusNeverCrashes' -v ./eventlog/logfile | grep -E '^(conformance:|--- |ok|FAIL|PASS)'
	CCMR_REQUIRE_CORPUS=1 $(GO) test -count=1 -run 'Corpus|Conformance' ./eventlog/... ./verifier/...

## e2e: ccmr on a real kernel: Debian cloud kernel under QEMU with swtpm and IMA (docs/e2e.md)
e2e: build
	CCMR_E2E=1 bash scripts/deps.sh
	CCMR=$(BIN) bash e2e/run.sh

## demo: the main job on the software device
demo: build
	bash scripts/demo.sh

clean:
	rm -rf bin
