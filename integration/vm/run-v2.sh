#!/bin/bash
# Runs the cgroup v2 integration tests (integration/cgroups_v2.rs) and the AppArmor checks
# (integration/vm/apparmor.sh) in ONE boot of the pure cgroup v2 + AppArmor VM
# (../shared/vm/run-in-vm, see its README). The tests are built on the host (the guest runs
# ~20x slower); the guest gets the test binary, which finds berth at the path cargo
# compiled into it (CARGO_BIN_EXE_berth; the guest sees the host's / read-only).
#
#   integration/vm/run-v2.sh [TEST-FILTER-OR-LIBTEST-ARGS...]
#                      (default filter: cgroups_v2 rootless::rootless_v2
#                       rootless_engine::rootless_engine_v2, network6::macvlan_and_ipvlan_on_a_lan
#                       (the guest kernel has ipvlan, the host's does not), then the
#                       AppArmor checks)
#
# Env: CARGO_TARGET_DIR as for cargo; RUN_IN_VM (default: ../shared/vm/run-in-vm next to the
# repo); VM_TIMEOUT (seconds, default 900); VM_RUNC=1 also measures runc's memory floor.
# Exit status: the test binary's (124 timeout, 125 VM failure, from run-in-vm).
set -euo pipefail

if [ "${1-}" = "--guest" ]; then
    # ---- inside the VM ---------------------------------------------------------------------
    shift
    bin=$1; shift
    echo "== guest: $(uname -r), $(nproc) cpus, cgroup root: $(stat -fc %T /sys/fs/cgroup)"
    echo "== controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
    # A block device for io.max (the guest's root is 9p): loop creates loop0..7.
    modprobe loop 2>/dev/null || true
    ls /sys/block | tr '\n' ' '; echo
    t0=$(date +%s)
    set +e
    # The default filter: the cgroup v2 tests and rootless on a delegated v2 subtree.
    default_filter=0
    if [ $# = 0 ]; then set -- cgroups_v2 rootless::rootless_v2 rootless_engine::rootless_engine_v2 network6::macvlan_and_ipvlan_on_a_lan; default_filter=1; fi
    "$bin" "$@" --test-threads=1 --nocapture 2>&1 | grep -vE '^$'
    rc=${PIPESTATUS[0]}
    set -e
    echo "== test binary exit: $rc, $(( $(date +%s) - t0 )) s in the guest"
    if [ "${VM_RUNC:-0}" = 1 ] && command -v runc >/dev/null; then
        echo "== runc memory floor (same probe, BERTH_BIN=runc)"
        BERTH_BIN=$(command -v runc) "$bin" cgroups_v2::works_under_1mib_memory_limit --nocapture 2>&1 \
            | grep -E 'floor|result' || true
    fi
    # Nothing may be left behind.
    left=$(find /sys/fs/cgroup -maxdepth 1 -name 'berth-it-*' | wc -l)
    echo "== cgroup dirs left under /sys/fs/cgroup: $left"
    if [ "$left" != 0 ] && [ "$rc" = 0 ]; then rc=1; fi
    # The AppArmor checks share this boot (the guest has AppArmor enabled); only with the
    # default filter, so a filtered run stays a cgroup-only run.
    if [ "$default_filter" = 1 ] && [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ]; then
        echo "== AppArmor checks (integration/vm/apparmor.sh)"
        aa=0
        BERTH="$(dirname "$bin")/../berth" ITEST_BIN="$bin" bash "$(dirname "$0")/apparmor.sh" || aa=$?
        echo "== apparmor.sh exit: $aa"
        if [ "$aa" != 0 ] && [ "$rc" = 0 ]; then rc=$aa; fi
    fi
    exit "$rc"
fi

# ---- on the host ---------------------------------------------------------------------------
repo=$(cd "$(dirname "$0")/../.." && pwd)
vm=${RUN_IN_VM:-$repo/../shared/vm/run-in-vm}
[ -x "$vm" ] || { echo "run-v2.sh: no run-in-vm at $vm (set RUN_IN_VM)" >&2; exit 2; }
cd "$repo"
cargo=${CARGO:-$(command -v cargo || echo "$HOME/.cargo/bin/cargo")}
t0=$(date +%s)
json=$("$cargo" test --release --no-run --message-format=json)
bin=$(printf '%s\n' "$json" | python3 -c '
import json, sys
for l in sys.stdin:
    try:
        m = json.loads(l)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "integration" and m.get("executable"):
        print(m["executable"])
' | tail -1)
[ -n "$bin" ] || { echo "run-v2.sh: no integration test binary in cargo's output" >&2; exit 2; }
echo "== host: built $bin in $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
rc=0
"$vm" --timeout "${VM_TIMEOUT:-900}" --env "VM_RUNC=${VM_RUNC:-0}" -- \
    bash "$repo/integration/vm/run-v2.sh" --guest "$bin" "$@" || rc=$?
echo "== host: VM run took $(( $(date +%s) - t1 )) s (exit $rc)"
exit "$rc"
