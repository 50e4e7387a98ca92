# berth: `make demo` runs a real container end to end; `make test` runs unit and integration tests.
CARGO ?= $(shell command -v cargo 2>/dev/null || echo $(HOME)/.cargo/bin/cargo)
BERTH := target/x86_64-unknown-linux-gnu/release/berth
DEMO := /tmp/berth-demo

.PHONY: all build deps demo demo-bundle test unit integration vmtest bench clean lint

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
	$(MAKE) --no-print-directory engines

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
