# berth: `make demo` runs a real container end to end; `make test` runs unit and integration tests.
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
BERTH := target/x86_64-unknown-linux-gnu/release/berth
DEMO := /tmp/berth-demo

.PHONY: all build deps demo demo-bundle test unit integration vmtest bench clean lint soak faults

all: build

deps:
	@scripts/deps.sh build

build: deps
	$(CARGO) build --release

demo: build
	@scripts/deps.sh demo
	scripts/demo.sh $(CURDIR)/$(BERTH)

# The runtime alone: a busybox bundle run with the runc-style CLI.
demo-bundle: build
	@scripts/busybox-bundle.sh $(BERTH) $(DEMO) sh -c 'echo "hostname: $$(hostname)"; echo "my pid: $$$$"; echo "mounts:"; cat /proc/self/mounts'
	@echo "== berth run (bundle $(DEMO))"
	cd $(DEMO) && $(CURDIR)/$(BERTH) --root /run/berth-demo run demo-$$$$

test: deps
	@scripts/deps.sh test
	$(CARGO) build --release
	$(CARGO) test --release -- --test-threads=2
	$(MAKE) --no-print-directory faults
	$(MAKE) --no-print-directory engines
	$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=3

unit:
	$(CARGO) test --release --lib --bins

# The house rules: the tree formatted as rustfmt.toml says, no clippy warning in any target.
lint:
	@scripts/deps.sh lint
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# cgroup v2 tests (and rootless on a delegated v2 subtree), then the AppArmor checks, in one boot
# of the pure-v2 VM kit
# (../shared/vm/run-in-vm; CI has it).
vmtest: build
	integration/vm/run-v2.sh

integration: build
	$(CARGO) test --release --test integration -- --test-threads=2

# soak: SOAK_N runtime lifecycles and SOAK_N `container run --rm` on a user network, then every
# kind of leftover counted (integration/soak.rs; CI runs the same tests with the default 25),
# plus the parallel load tests. Figures on stderr (`soak: ...` lines).
SOAK_N ?= 1000
.PHONY: soak faults
soak: deps
	@scripts/deps.sh test
	BERTH_SOAK_N=$(SOAK_N) $(CARGO) test --release --test integration soak:: -- --test-threads=1 --nocapture

# faults: the breakout tests with their weakened rounds and the crash-point tests. The hooks
# (BERTH_WEAKEN, BERTH_CRASH_AT) exist only in debug builds: a debug berth runs under the
# (release-built) integration tests through BERTH_BIN.
BERTH_DEBUG := target/x86_64-unknown-linux-gnu/debug/berth
faults: deps
	@scripts/deps.sh test
	$(CARGO) build --bin berth
	BERTH_BIN=$(CURDIR)/$(BERTH_DEBUG) $(CARGO) test --release --test integration -- breakouts:: crash:: image_crash_at crash_points_of_ fulldisk:: --test-threads=2

# fuzz: berth's coverage-guided fuzz targets (fuzz/: libFuzzer through the libfuzzer-sys crate)
# for FUZZ_SECONDS each: config.json, docker seccomp profiles compiled, image references,
# manifests and indexes, layer tars unpacked for real (as root), Dockerfiles, word expansion,
# .dockerignore, CNI results, registry auth headers. Built on stable Rust: sanitizer coverage
# through -Cpasses/-Cllvm-args (no -Z flag, no cargo-fuzz), in fuzz/'s own workspace and target
# dir. One line of figures per target; a crash saves its input under fuzz/artifacts/TARGET/
# and fails. `make test` runs each for 3 s (CI's smoke pass); the in-binary fuzzer below runs
# inside `make test`'s unit tests too.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= config_json seccomp_profile image_reference manifest_index layer_unpack dockerfile \
	word_expansion dockerignore cni_result registry_auth
FUZZ_RUSTFLAGS := --cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
	-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
	-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks
.PHONY: fuzz fuzz-build fuzz-outcome
fuzz: fuzz-build
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: deps
	@scripts/deps.sh fuzz
	cd fuzz && RUSTFLAGS="$(FUZZ_RUSTFLAGS)" $(CARGO) build --release --bins

# fuzz-outcome: the in-binary outcome-guided mutation fuzzer (src/fuzz/; its targets also cover
# --format templates and the Engine API's request reader and create bodies), FUZZ_SECS each
# (`make test` runs it for 2 s per target with the unit tests).
FUZZ_SECS ?= 300
fuzz-outcome:
	BERTH_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --release --lib fuzz_ -- --test-threads=1 --nocapture
	BERTH_FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --release --bin berth fuzz_ -- --test-threads=1 --nocapture

# engines: berth under real engines, each with a private daemon on this machine (root; the
# packages come from `scripts/deps.sh engines`). One `ok - NAME` line per check, see integration/engines/.
.PHONY: engines engines-podman engines-containerd engines-docker engines-api
engines: engines-podman engines-containerd engines-docker engines-api

engines-podman: build
	@scripts/deps.sh engines
	integration/engines/podman.sh $(CURDIR)/$(BERTH)

engines-containerd: build
	@scripts/deps.sh engines
	integration/engines/containerd.sh $(CURDIR)/$(BERTH)

engines-docker: build
	@scripts/deps.sh engines
	integration/engines/docker.sh $(CURDIR)/$(BERTH)

# The Docker Engine API service driven by the docker CLI, docker-compose and the Python SDK.
engines-api: build
	@scripts/deps.sh test
	integration/engines/api.sh $(CURDIR)/$(BERTH)

# link/symbol-order.txt, the layout of the binary's functions (see scripts/symbol-order.py): a
# build of the same code and profile (symbol names carry hashes of the profile) runs the
# runtime's commands under valgrind's callgrind.
.PHONY: symbol-order
symbol-order:
	@scripts/deps.sh bench
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	CARGO_TARGET_DIR=target/symbol-order $(CARGO) build --release
	python3 scripts/symbol-order.py target/symbol-order/x86_64-unknown-linux-gnu/release/berth link/symbol-order.txt

-include bench/bench.mk

clean:
	$(CARGO) clean
