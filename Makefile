# ccmr — see README.md. Every target installs what it needs through `deps`.
GO       ?= go
BIN      ?= bin/ccmr
VERSION  ?= $(shell bash scripts/release-version.sh 2>/dev/null || echo devel)
# Every time stamp a release carries: the last commit's (make release).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
# The platforms of make release. darwin/amd64 and darwin/arm64 join when
# `GOOS=darwin go build ./cmd/ccmr` builds on this branch; windows/amd64
# when it does (docs/cli.md, Installation).
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64
# release-check (CI) rebuilds the Linux binaries twice; the verifier builds for
# macOS and Windows come from the same flags but are not compared in CI (each
# cold build of another GOOS costs minutes on two cores).
RELEASE_CHECK_PLATFORMS ?= linux/amd64 linux/arm64
FUZZTIME ?= 60s
LDFLAGS  := -s -w -X main.version=$(VERSION)

export CGO_ENABLED = 0

.PHONY: all build deps test cross cross-test bench fuzz demo conformance e2e clean release release-check deb deb-check notice

all: build

## build: the static ccmr binary in bin/ccmr
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/ccmr

## deps: install the Debian packages the tests use (idempotent)
deps:
	CCMR_SYSTEMD=1 bash scripts/deps.sh

## test: every test; external tools are required, not skipped
test: deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	CCMR_REQUIRE_TOOLS=1 $(GO) test -count=1 ./...

## cross: the verifier side (verify, log, evidence, policy) builds and type-checks,
## tests included, for the systems security engineers verify on; device backends
## say "needs Linux" there. go build and go vet only: no test runs.
## CROSS_BLOCKED_windows lists what cannot build for Windows yet, printed on each
## run: vmr (the runtime-log store, imported by cmd/ccmr and by the verifier's
## tests) uses Unix-only calls. Empty it once vmr builds there.
CROSS_TARGETS ?= darwin/amd64 darwin/arm64 windows/amd64 linux/arm64
CROSS_PKGS    := ./verifier/... ./bundle/... ./eventlog/... ./mr/... ./cmd/ccmr
CROSS_BLOCKED_windows :=
cross:
	@set -e; for t in $(CROSS_TARGETS); do \
		os=$${t%/*}; arch=$${t#*/}; pkgs="$(CROSS_PKGS)"; \
		if [ "$$os" = windows ] && [ -n "$(CROSS_BLOCKED_windows)" ]; then \
			echo "cross: $$t: NOT CHECKED: $(CROSS_BLOCKED_windows) (vmr builds only on Unix); non-test build of the rest"; \
			GOOS=$$os GOARCH=$$arch $(GO) build $(filter-out ./cmd/ccmr,$(CROSS_PKGS)); \
			pkgs=$$($(GO) list $(CROSS_PKGS) | grep -vxF "$$(cd . && $(GO) list $(CROSS_BLOCKED_windows))"); \
		else \
			echo "cross: $$t"; \
			GOOS=$$os GOARCH=$$arch $(GO) build -o /dev/null ./cmd/ccmr; \
		fi; \
		GOOS=$$os GOARCH=$$arch $(GO) vet $$pkgs; \
	done
	@echo "cross: darwin/arm64 backends (their needs-Linux paths and tests)"
	GOOS=darwin GOARCH=arm64 $(GO) vet ./backend/...

## cross-test: the verifier-side tests for linux/arm64 under qemu-user (installs
## qemu-user; minutes, not seconds: not part of .ci/run)
cross-test:
	CCMR_CROSS=1 bash scripts/deps.sh
	GOARCH=arm64 $(GO) test -count=1 -exec qemu-aarch64 $(filter-out ./cmd/ccmr,$(CROSS_PKGS))

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
	PLATFORMS='$(RELEASE_CHECK_PLATFORMS)' bash scripts/release-check.sh

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

## fleet-bench: the fleet verifier at full size (docs/fleet.md): 3 `ccmr verifier serve`
## processes on a PostgreSQL the test starts, FLEET_MACHINES sim machines × FLEET_ROUNDS,
## one replica SIGKILLed halfway; consistency checks, then throughput and p99
## against `ccmr verify --state` one process per bundle. Minutes: not in make test.
FLEET_MACHINES ?= 1000
FLEET_ROUNDS ?= 20
fleet-bench: deps
	CCMR_FLEET_BENCH=1 FLEET_MACHINES=$(FLEET_MACHINES) FLEET_ROUNDS=$(FLEET_ROUNDS) $(GO) test -count=1 -timeout 3h -run TestFleetBench -v ./fleet | grep -E '^(\s+bench|\s+\S+_test.go|--- |ok|FAIL|PASS)'
