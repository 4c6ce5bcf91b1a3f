# cowtrace: see README.md. Kernel-facing tests and the experiment need root.
# sudo's secure_path usually lacks Go's own install directory.
GO      ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN     ?= bin/cowtrace
PKGS    := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all build install uninstall run test test-short soak lint vmtest vmtest-rings bench readme clean

all: build

# The commit the binary is built from, stamped by the build itself: with
# GOFLAGS=-buildvcs=false (as on the project's machines) the go command
# stamps none, and `cowtrace version` would say only "(devel)". Recursively
# expanded, so git runs for a build only.
COMMIT      = $(shell git rev-parse HEAD 2>/dev/null)
COMMIT_TIME = $(shell TZ=UTC git log -1 --date=format-local:%Y-%m-%dT%H:%M:%SZ --format=%cd 2>/dev/null)
MODIFIED    = $(shell git status --porcelain 2>/dev/null | grep -q . && echo true)
LDFLAGS     = -X main.commit=$(COMMIT) -X main.commitTime=$(COMMIT_TIME) -X main.modified=$(MODIFIED)

# A static binary: no libc, nothing to install on the target.
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/cowtrace

# make install [PREFIX=/usr/local] [DESTDIR=]: the binary, its man page and
# its bash, zsh and fish completions, the last three written by the binary
# itself from its command table (cowtrace man, cowtrace completion SHELL).
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
INSTALLED   = $(DESTDIR)$(BINDIR)/cowtrace $(DESTDIR)$(MANDIR)/man1/cowtrace.1 \
	$(DESTDIR)$(BASHCOMPDIR)/cowtrace $(DESTDIR)$(ZSHCOMPDIR)/_cowtrace $(DESTDIR)$(FISHCOMPDIR)/cowtrace.fish

install: build
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(MANDIR)/man1' '$(DESTDIR)$(BASHCOMPDIR)' '$(DESTDIR)$(ZSHCOMPDIR)' '$(DESTDIR)$(FISHCOMPDIR)'
	install -m 755 '$(BIN)' '$(DESTDIR)$(BINDIR)/cowtrace'
	'$(abspath $(BIN))' man >'$(DESTDIR)$(MANDIR)/man1/cowtrace.1'
	'$(abspath $(BIN))' completion bash >'$(DESTDIR)$(BASHCOMPDIR)/cowtrace'
	'$(abspath $(BIN))' completion zsh >'$(DESTDIR)$(ZSHCOMPDIR)/_cowtrace'
	'$(abspath $(BIN))' completion fish >'$(DESTDIR)$(FISHCOMPDIR)/cowtrace.fish'
	chmod 644 '$(DESTDIR)$(MANDIR)/man1/cowtrace.1' '$(DESTDIR)$(BASHCOMPDIR)/cowtrace' '$(DESTDIR)$(ZSHCOMPDIR)/_cowtrace' '$(DESTDIR)$(FISHCOMPDIR)/cowtrace.fish'

uninstall:
	rm -f $(INSTALLED)

# The seed's experiment on this machine's kernel.
run: build
	./$(BIN)

# Every test; the kernel-facing ones skip, saying why, when not root.
test:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 $(PKGS)

# Busy process trees (pipelines, make -j2, threads that exec, perf stat
# inside, orphans) under cowtrace run under perf record, every process
# held to perf's counts, SOAK_ROUNDS times each, and 4*SOAK_ROUNDS
# attaches per mode to a shell forking every millisecond under perf
# record -a (root; perf, gcc, make).
SOAK_ROUNDS ?= 30
soak:
	COWTRACE_SOAK_ROUNDS=$(SOAK_ROUNDS) $(GO) test -count=1 -timeout 120m -run 'TestTreesUnderPerf|TestAttachWhileForkingUnderPerf' -v ./cmd/cowtrace

# Unit tests only: no kernel, no root.
test-short:
	$(GO) test -count=1 -short $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Debian's kernels under qemu TCG (vmtest/kernels.go): 5.10, 6.1, 6.12, 7.3
# with kprobes, 6.1's PREEMPT_RT flavour (no THP) and 6.1 booted with
# lockdown=confidentiality (no kprobes, no tracefs); and Debian's 6.1 arm64
# kernel under qemu-system-aarch64 (6.1-arm64). The experiment, its
# variants, the matrix, doctor and the kernel-facing test binaries in each,
# each kernel checked for the best method it offers (see vmtest/main.go).
# make vmtest VMTEST_FLAGS='-readme docs/kernels.md' refreshes its "Verified
# kernels" table;
# VMTEST_FLAGS='-kernels 6.1-lockdown -run doctor' runs one command on one boot.
vmtest:
	$(GO) run ./vmtest $(VMTEST_FLAGS)

# What `cowtrace run` costs by CPU count: memory, descriptors and start-up in
# one Debian 6.1 guest per vCPU count, one after another (slow: the 48-vCPU
# guest alone takes minutes under TCG). RINGS_COMPARE=PATH measures a second,
# static cowtrace binary in the same guests, e.g. one built before a change.
RINGS ?= 2,16,48
vmtest-rings:
	$(GO) run ./vmtest -rings $(RINGS) $(if $(RINGS_COMPARE),-rings-compare $(RINGS_COMPARE))

# What tracing costs the traced, side by side with perf stat, perf record and
# bpftrace (root; apt-get install -y linux-perf bpftrace gcc): Go benchmarks of
# the hot path, CPU per copy-on-write fault, then interleaved rounds of the two
# 1 GiB workloads (cowtrace's experiment worker, and a C program under
# cowtrace run). ROUNDS=30 on a quiet machine; BENCH_FLAGS='-workload fork'
# for cowtrace run's rows alone.
ROUNDS ?= 10
BENCH_FLAGS ?=
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./perfevents ./internal/engine
	$(GO) run ./bench/faultcost
	GO=$(GO) $(GO) run ./bench -rounds $(ROUNDS) $(BENCH_FLAGS)

# Every cowtrace output shown in README.md and docs/*.md, run again on this
# machine (root; see internal/readme).
readme: build
	$(GO) run ./internal/readme -cowtrace $(BIN) README.md docs/*.md

clean:
	rm -rf bin
