# pgtrail: make demo runs the main job end to end; make test runs every test.
# Everything the tests need is built into .cache/ (git-ignored) on first use.

GO          ?= go
CACHE       := $(CURDIR)/.cache
BIN         := $(CACHE)/bin
VERSITYGW   := $(BIN)/versitygw
PGTRAIL     := $(BIN)/pgtrail
export PGTRAIL_VERSITYGW := $(VERSITYGW)

.PHONY: all build tools test test-short demo vet fmt clean

all: build

build:
	@echo "building pgtrail and pgtrail-query (DuckDB, cgo) into $(BIN): the first build takes a few minutes, later ones seconds"
	$(GO) build -o $(PGTRAIL) ./cmd/pgtrail
	$(GO) build -o $(BIN)/pgtrail-query ./cmd/pgtrail-query

# versitygw is the S3 server with real Object Lock the tests run against (Apache-2.0).
tools: $(VERSITYGW)

$(VERSITYGW):
	@mkdir -p $(BIN)
	@echo "building versitygw v1.8.0 (S3 server for tests; about two minutes the first time)"
	GOBIN=$(BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...

test: tools vet
	$(GO) test -count=1 -timeout 30m ./...

test-short: tools
	$(GO) test -count=1 -short ./...

demo: build
	@echo "building and starting the demo (cmd/pgtrail-demo); it runs in under a minute"
	$(GO) run ./cmd/pgtrail-demo -pgtrail $(PGTRAIL)

clean:
	rm -rf $(CACHE)

.PHONY: bench bench-smoke

# pgtrail against no audit, pgaudit, a plain trigger and a naive chain, then the stream daemon and
# verification, side by side on a throwaway cluster (about half an hour). Installs pgaudit with
# apt-get when missing and root. Writes bench/results/latest.md; docs/benchmarks.md explains it.
bench: tools
	$(GO) run ./bench/cmd/pgtrail-bench

# Every benchmark part with tiny sizes (under two minutes) so that the harness keeps working; it
# checks that each number is produced, not its size. No apt: pgaudit is skipped when missing, and
# the S3 rows when versitygw is (make tools).
bench-smoke:
	$(GO) run ./bench/cmd/pgtrail-bench -smoke -q
