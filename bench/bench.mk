# `make bench`: start-up benchmark of berth against runc and crun (needs root).
# Include from the top Makefile:   include bench/bench.mk
# Pass options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--iterations 50 --json bench.json"

BENCH_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
BENCH_ARGS ?=

.PHONY: bench
bench:
	@scripts/deps.sh bench
	$(CARGO) build --release
	BERTH=$(CURDIR)/$(BERTH) python3 $(BENCH_DIR)/bench.py $(BENCH_ARGS)

# Engine layer: image unpack (berth vs umoci), pull (berth vs skopeo), container run and network
# cost (berth vs podman with runc/crun/berth), shim memory (vs conmon); see bench/engine.py.
# Options with ENGINE_BENCH_ARGS, e.g. ENGINE_BENCH_ARGS="--container-iterations 50 --json engine.json"
.PHONY: bench-engine
bench: bench-engine
bench-engine:
	@scripts/deps.sh bench
	$(CARGO) build --release
	python3 $(BENCH_DIR)/engine.py --berth $(CURDIR)/$(BERTH) $(ENGINE_BENCH_ARGS)

# The Docker Engine API service against dockerd 20.10 + containerd: `docker run --rm busybox true`
# through each socket, and their idle memory; see bench/api.py.
# Options with API_BENCH_ARGS, e.g. API_BENCH_ARGS="--iterations 50 --json api.json"
.PHONY: bench-api
bench: bench-api
bench-api:
	@scripts/deps.sh bench
	$(CARGO) build --release
	python3 $(BENCH_DIR)/api.py --berth $(CURDIR)/$(BERTH) $(API_BENCH_ARGS)
