# ccmr — see README.md. Every target installs what it needs through `deps`.
GO       ?= go
BIN      ?= bin/ccmr
VERSION  ?= $(shell bash scripts/release-version.sh 2>/dev/null || echo devel)
# Every time stamp a release carries: the last commit's (make release).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
# The platforms of make release. darwin/amd64 and darwin/arm64 join when
# `GOOS=darwin go build ./cmd/ccmr` builds on this branch; windows/amd64
# when it does (docs/cli.md, Installation).
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64
FUZZTIME ?= 60s
LDFLAGS  := -s -w -X main.version=$(VERSION)

export CGO_ENABLED = 0

.PHONY: all build deps test bench fuzz demo conformance e2e clean release release-check deb deb-check notice

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
demo:
	@echo 'demo: building $(BIN) (the first time, go downloads the modules it needs: a minute or so)'
	@$(MAKE) --no-print-directory build
	bash scripts/demo.sh

## release: static binaries, SBOMs, Debian packages and SHA256SUMS in dist/
release:
	VERSION='$(VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' PLATFORMS='$(RELEASE_PLATFORMS)' OUT=dist bash scripts/release.sh

## release-check: make release twice from two clean copies of HEAD; the bytes must match
release-check:
	PLATFORMS='$(RELEASE_PLATFORMS)' bash scripts/release-check.sh

## deb: the Debian package of this machine's architecture in dist/
deb: build
	VERSION='$(VERSION)' SOURCE_DATE_EPOCH='$(SOURCE_DATE_EPOCH)' ARCH=$$($(GO) env GOARCH) BINARY=$(BIN) OUT=dist bash scripts/deb.sh

## deb-check: build the package, install it in an empty root, run it (and the Containerfile where a runtime is)
deb-check:
	bash scripts/deb-check.sh

## notice: write NOTICE again (a test fails while it is stale)
notice:
	$(GO) run ./internal/cmd/notice > NOTICE.tmp && mv NOTICE.tmp NOTICE

clean:
	rm -rf bin dist
