#!/bin/bash
# AppArmor checks of berth, for the pure cgroup v2 + AppArmor VM (../shared/vm/run-in-vm).
# Run from the repo:
#   cd /work/main && /work/shared/vm/run-in-vm -- bash integration/vm/apparmor.sh
# Env (pass with run-in-vm --env VAR=VAL):
#   BERTH     berth binary (default target/x86_64-unknown-linux-gnu/release/berth)
#   ITEST_BIN integration test binary: also runs its apparmor:: tests (built on the host)
#   RTT       runtime-tools checkout (default /work/rtt): runs linux_process_apparmor_profile
#             when its .t is there; RTT= skips it
# Prints one line per check; exits non-zero when any check failed.
set -uo pipefail

repo=$PWD
BERTH=${BERTH:-$repo/target/x86_64-unknown-linux-gnu/release/berth}
RTT=${RTT-/work/rtt}
PY=/usr/bin/python3
ROOT=/run/berth-aa
fails=0
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
check() { # check NAME WANT GOT
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: want [$2] got [$3]"; fi
}
t_start=$(date +%s)
echo "== guest $(uname -r); apparmor enabled: $(cat /sys/module/apparmor/parameters/enabled); lsm: $(cat /sys/kernel/security/lsm)"
echo "== berth: $BERTH ($("$BERTH" --version | head -1))"
[ -x "$BERTH" ] || { echo "no berth binary at $BERTH"; exit 2; }

# ---- profiles ---------------------------------------------------------------------------------
profile() { # profile NAME
    cat <<PROF
#include <tunables/global>
profile $1 flags=(attach_disconnected,mediate_deleted) {
  #include <abstractions/base>
  file,
  network,
  capability,
  mount,
  umount,
  pivot_root,
  signal,
  ptrace,
  unix,
  deny /etc/berth-fixture r,
  deny /tmp/aa-denied/** w,
}
PROF
}
t=$(date +%s)
profile berth-vm > /tmp/berth-vm.profile
# runtime-tools' linux_process_apparmor_profile asks for this name.
profile acme_secure_profile > /tmp/acme.profile
apparmor_parser -r /tmp/berth-vm.profile /tmp/acme.profile || { echo "apparmor_parser failed"; exit 2; }
echo "== profiles loaded in $(( $(date +%s) - t )) s: $(grep -E 'berth-vm|acme' /sys/kernel/security/apparmor/profiles | tr '\n' ' ')"

# ---- bundle -----------------------------------------------------------------------------------
B=/tmp/aa-bundle
"$repo/scripts/busybox-bundle.sh" "$BERTH" "$B" sh >/dev/null
echo berth-fixture > "$B/rootfs/etc/berth-fixture"
setcfg() { # setcfg PROFILE-or-empty ARGS-JSON
    "$PY" - "$B/config.json" "$1" "$2" <<'PY'
import json, sys
p, prof, args = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
c = json.load(open(p))
c["process"]["args"] = args
c["root"]["readonly"] = False
if prof:
    c["process"]["apparmorProfile"] = prof
else:
    c["process"].pop("apparmorProfile", None)
c["linux"]["cgroupsPath"] = "/berth-aa"
json.dump(c, open(p, "w"), indent=1)
PY
}
SCRIPT='cat /proc/self/attr/current; echo; cat /etc/berth-fixture >/dev/null 2>&1 && echo fixture-readable || echo fixture-denied; mkdir -p /tmp/aa-denied; (echo x > /tmp/aa-denied/f) 2>/dev/null && echo write-ok || echo write-denied; cat /etc/passwd >/dev/null && echo passwd-ok'
clean() { tr -d '\0' | grep -v '^$' | tr '\n' '|'; }
b() { "$BERTH" --root "$ROOT" "$@"; }

# ---- 1. run with process.apparmorProfile --------------------------------------------------------
t=$(date +%s)
setcfg berth-vm "[\"sh\",\"-c\",\"$SCRIPT\"]"
out=$(cd "$B" && b run aa1 2>&1 | clean)
check "run: label, denied read, denied write, allowed read" "berth-vm (enforce)|fixture-denied|write-denied|passwd-ok|" "$out"
setcfg "" "[\"sh\",\"-c\",\"$SCRIPT\"]"
out=$(cd "$B" && b run aa2 2>&1 | clean)
check "run without a profile: unconfined, nothing denied" "unconfined|fixture-readable|write-ok|passwd-ok|" "$out"
echo "   ($(( $(date +%s) - t )) s)"

# ---- 2. the running init, from the host ---------------------------------------------------------
t=$(date +%s)
setcfg berth-vm '["sleep","1000"]'
(cd "$B" && b run -d aa3 </dev/null >/dev/null 2>&1)
pid=$(b state aa3 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
check "host view of the init's label" "berth-vm (enforce)" "$(tr -d '\0\n' < /proc/$pid/attr/current)"

# ---- 3. exec ------------------------------------------------------------------------------------
check "exec in a confined container inherits the profile" "berth-vm (enforce)|" "$(b exec aa3 cat /proc/self/attr/current 2>&1 | clean)"
b delete -f aa3
setcfg "" '["sleep","1000"]'
(cd "$B" && b run -d aa4 </dev/null >/dev/null 2>&1)
check "exec in an unconfined container" "unconfined|" "$(b exec aa4 cat /proc/self/attr/current 2>&1 | clean)"
out=$(b exec --apparmor berth-vm aa4 sh -c "$SCRIPT" 2>&1 | clean)
check "exec --apparmor berth-vm" "berth-vm (enforce)|fixture-denied|write-denied|passwd-ok|" "$out"
out=$(b exec --apparmor berth-no-such-profile aa4 true 2>&1); rc=$?
lines=$(printf '%s\n' "$out" | grep -c .)
if [ $rc -ne 0 ] && [ "$lines" = 1 ] && printf '%s' "$out" | grep -q berth-no-such-profile; then
    pass "exec --apparmor unknown profile: one line, exit $rc: $out"
else
    fail "exec --apparmor unknown profile: exit $rc, $lines lines: $out"
fi
check "container still running after the failed exec" "running" "$(b state aa4 | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
b delete -f aa4
echo "   ($(( $(date +%s) - t )) s)"

# ---- 4. create with an unknown profile ----------------------------------------------------------
setcfg berth-no-such-profile '["true"]'
out=$(cd "$B" && b create aa5 2>&1); rc=$?
lines=$(printf '%s\n' "$out" | grep -c .)
if [ $rc -ne 0 ] && [ "$lines" = 1 ] && printf '%s' "$out" | grep -q berth-no-such-profile; then
    pass "create with an unknown profile: one line, exit $rc: $out"
else
    fail "create with an unknown profile: exit $rc, $lines lines: $out"
fi
left=$(ls "$ROOT" 2>/dev/null | grep -v '^~' | tr '\n' ' ')
check "nothing left in --root after the failed create" "" "$left"
check "no cgroup left after the failed create" "no" "$([ -d /sys/fs/cgroup/berth-aa ] && echo yes || echo no)"

# ---- 5. the integration tests -------------------------------------------------------------------
if [ -n "${ITEST_BIN:-}" ]; then
    t=$(date +%s)
    echo "== $ITEST_BIN apparmor:: (BERTH_BIN=$BERTH)"
    BERTH_BIN=$BERTH "$ITEST_BIN" apparmor:: --test-threads=1 > /tmp/itest-apparmor.log 2>&1; rc=$?
    grep -E '^test |test result|panicked|SKIPPED' /tmp/itest-apparmor.log
    if [ $rc = 0 ]; then
        pass "integration tests apparmor:: ($(( $(date +%s) - t )) s)"
    else
        fail "integration tests apparmor::"
    fi
fi

# ---- 6. runtime-tools linux_process_apparmor_profile -------------------------------------------
case_t=$RTT/validation/linux_process_apparmor_profile/linux_process_apparmor_profile.t
if [ -n "$RTT" ] && [ -x "$case_t" ]; then
    t=$(date +%s)
    log=/tmp/rtt-apparmor.log
    (cd "$RTT" && RUNTIME=$BERTH timeout 600 "$case_t") > "$log" 2>&1; rc=$?
    res=$("$PY" /work/shared/conformance/tapcheck.py "$log" $rc 2>/dev/null)
    echo "== runtime-tools linux_process_apparmor_profile: $res ($(( $(date +%s) - t )) s)"
    grep -E '^(not )?ok' "$log" | grep -iE 'apparmor|not ok' | head -5
    case "$res" in PASS*) pass "runtime-tools linux_process_apparmor_profile" ;;
                   *) fail "runtime-tools linux_process_apparmor_profile"; tail -20 "$log" ;; esac
fi

echo "== $fails failed; $(( $(date +%s) - t_start )) s in the guest"
[ "$fails" = 0 ]
