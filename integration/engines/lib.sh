# Shared helpers for integration/engines/<engine>.sh (bash; source it, then `set -u` is assumed).
#
#   eng_init NAME              start: NAME is the engine ("podman"); sets ENG_TMP (a fresh temp dir)
#   eng_escape_cgroup          move this shell out of any cgroup under process_api (see below)
#   eng_check NAME FUNC [ARG]  run one check; prints "ok - NAME" or "not ok - NAME: REASON"
#   eng_skip NAME REASON       prints "ok - NAME # SKIP REASON" (counted as passed)
#   eng_summary                prints "# NAME: N passed, M failed"; returns 1 if any failed
#   (fixtures.sh, sourced here and by lib-ctr.sh: eng_busybox_rootfs/_tar/_archive, eng_pty)
#   eng_stop_checks            (in the cleanup trap) kill the check running when interrupted
#   eng_release_cgroups        (in the cleanup trap) leave and remove the cgroups eng_escape_cgroup made
#   eng_kill_cgroup_tree REL   SIGKILL what is left in /sys/fs/cgroup/*/REL and rmdir it bottom-up
#   eng_wait_for SECS CMD...   retry CMD every 0.1 s until it succeeds or SECS pass
#
# A check is a shell function run in a subshell (so it can't change the script's state) with its
# output to a file; it passes when it returns 0. On failure the reason is the last line it
# printed, and its last lines are shown as "#   ..." diagnostics. A check that runs longer than
# ENG_CHECK_TIMEOUT seconds (default 60) is killed with its children and fails.
# Helpers for checks: expect_eq WHAT WANT GOT, expect_match WHAT REGEX GOT, fail MSG.

ENG_NAME=engine
ENG_PASS=0
ENG_FAIL=0
ENG_TMP=
ENG_CGROUPS=()
ENG_RUNNING=
ENG_CHECK_TIMEOUT=${ENG_CHECK_TIMEOUT:-60}
. "${BASH_SOURCE[0]%/*}/fixtures.sh"

eng_init() {
  ENG_NAME=$1
  [ "$(id -u)" = 0 ] || { echo "$ENG_NAME: must run as root" >&2; exit 2; }
  ENG_TMP=$(mktemp -d "/tmp/berth-$ENG_NAME.XXXXXX") || exit 2
  chmod 755 "$ENG_TMP"
  ENG_T0=$(date +%s.%N)
}

# Shells on the dev machine start inside memory:/process_api/<id>, which must never be written
# to; engines and runtimes place relative cgroups under their caller's cgroup. So for every
# hierarchy where this shell sits under process_api, move it to /sys/fs/cgroup/<h>/berth-engines-NAME-PID
# (children inherit it). Nothing is written under process_api itself.
eng_escape_cgroup() {
  local line hier path mnt dir
  while IFS= read -r line; do
    hier=${line#*:}; hier=${hier%%:*}; path=${line#*:*:}
    case $path in *process_api*) ;; *) continue ;; esac
    if [ -z "$hier" ]; then mnt=$(_eng_cg2_mount)
    else mnt=/sys/fs/cgroup/${hier#name=}; [ -d "$mnt" ] || mnt=/sys/fs/cgroup/$hier; fi
    [ -n "$mnt" ] && [ -d "$mnt" ] || { echo "$ENG_NAME: no mount for cgroup hierarchy '$hier'" >&2; exit 2; }
    dir=$mnt/berth-engines-$ENG_NAME-$$
    mkdir -p "$dir" && echo $$ > "$dir/cgroup.procs" || { echo "$ENG_NAME: cannot move to $dir" >&2; exit 2; }
    ENG_CGROUPS+=("$dir")
  done < /proc/self/cgroup
  if grep -q process_api /proc/self/cgroup; then
    echo "$ENG_NAME: still under process_api, refusing to go on" >&2; exit 2
  fi
}

_eng_cg2_mount() {
  awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts
}

# Undo eng_escape_cgroup: move this shell to the hierarchy's root and remove our cgroup.
eng_release_cgroups() {
  local dir
  for dir in "${ENG_CGROUPS[@]}"; do
    echo $$ > "$(dirname "$dir")/cgroup.procs" 2>/dev/null
    eng_kill_cgroup_dir "$dir"
  done
  ENG_CGROUPS=()
}

# SIGKILL every process left in a cgroup dir (ours) and its children, then rmdir bottom-up.
eng_kill_cgroup_dir() {
  local dir=$1 d p i
  case $dir in *process_api*|/sys/fs/cgroup|/sys/fs/cgroup/*/) return 0 ;; esac
  [ -d "$dir" ] || return 0
  for i in 1 2 3 4 5 6 7 8 9 10; do
    while IFS= read -r d; do
      while read -r p; do [ "$p" != $$ ] && kill -9 "$p" 2>/dev/null; done < "$d/cgroup.procs"
    done < <(find "$dir" -type d)
    find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
    [ -d "$dir" ] || return 0
    sleep 0.1
  done
  echo "# warning: could not remove cgroup $dir (left: $(find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null |
    while read -r p; do printf '%s ' "$p:$(cat /proc/$p/comm 2>/dev/null)"; done))" >&2
}

# REL is a path relative to each hierarchy's root (e.g. berth-engines-podman-123). Where that
# is the cgroup this shell escaped to (same name), eng_release_cgroups does it after the shell
# has left.
eng_kill_cgroup_tree() {
  local rel=${1#/} m own
  [ -n "$rel" ] || return 0
  for m in /sys/fs/cgroup/*/; do
    for own in "${ENG_CGROUPS[@]}"; do [ "$own" = "$m$rel" ] && continue 2; done
    eng_kill_cgroup_dir "$m$rel"
  done
}

# Kill a process and all its descendants (SIGKILL), parents first so nobody reports a dead child.
_eng_kill_tree() {
  local all p
  all=$(_eng_tree "$1")
  for p in $all; do kill -9 "$p" 2>/dev/null; done
}
_eng_tree() {
  local c
  echo "$1"
  for c in $(cat /proc/[0-9]*/stat 2>/dev/null | awk -v p="$1" '$4 == p { print $1 }'); do
    _eng_tree "$c"
  done
}

eng_check() {
  local name=$1 out rc wd pid start took; shift
  out=$ENG_TMP/check.out
  start=$(date +%s.%N)
  ( "$@" ) > "$out" 2>&1 < /dev/null &
  pid=$!
  ( sleep "$ENG_CHECK_TIMEOUT"; echo "timed out after ${ENG_CHECK_TIMEOUT}s" >> "$out"; _eng_kill_tree "$pid" ) &
  wd=$!
  ENG_RUNNING="$pid $wd"
  wait "$pid"; rc=$?
  _eng_kill_tree "$wd" 2>/dev/null; wait "$wd" 2>/dev/null
  ENG_RUNNING=
  took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  if [ "$rc" = 0 ]; then
    echo "ok - $name"
    ENG_PASS=$((ENG_PASS + 1))
  else
    local reason
    reason=$(grep -v '^[[:space:]]*$' "$out" | tail -n 1 | cut -c1-300)
    echo "not ok - $name: ${reason:-exit status $rc}"
    grep -v '^[[:space:]]*$' "$out" | tail -n 15 | sed 's/^/#   /'
    ENG_FAIL=$((ENG_FAIL + 1))
  fi
  [ -n "${ENG_VERBOSE:-}" ] && echo "#   (${took}s)"
  return 0
}

# In the cleanup trap: kill the check (and its watchdog) that was running when the script was
# interrupted, with everything they started.
eng_stop_checks() {
  local p
  [ -n "${ENG_RUNNING:-}" ] && echo "# interrupted: stopping the running check, cleaning up"
  for p in ${ENG_RUNNING:-}; do _eng_kill_tree "$p"; { wait "$p"; } 2>/dev/null; done
  ENG_RUNNING=
}

eng_skip() {
  echo "ok - $1 # SKIP $2"
  ENG_PASS=$((ENG_PASS + 1))
}

eng_summary() {
  local took
  took=$(awk -v a="$ENG_T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
  echo "# $ENG_NAME: $ENG_PASS passed, $ENG_FAIL failed (${took}s)"
  [ "$ENG_FAIL" = 0 ]
}

fail() { echo "$*"; return 1; }

expect_eq() {
  [ "$2" = "$3" ] && return 0
  echo "$1: expected '$2', got '$(printf '%s' "$3" | head -c 200 | tr '\n' '|')'"
  return 1
}

expect_match() {
  printf '%s' "$3" | grep -Eq -- "$2" && return 0
  echo "$1: expected /$2/, got '$(printf '%s' "$3" | head -c 200 | tr '\n' '|')'"
  return 1
}

eng_wait_for() {
  local secs=$1 i n; shift
  n=$(awk -v s="$secs" 'BEGIN { printf "%d", s * 10 }')
  for ((i = 0; i < n; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  "$@"
}

# A TCP port on 127.0.0.1 nothing listens on (from 20000-29999, random start).
eng_free_port() {
  local p i used
  used=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print strtonum("0x" a[2]) }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
  p=$((20000 + RANDOM % 10000))
  for ((i = 0; i < 10000; i++)); do
    printf '%s\n' "$used" | grep -qx "$p" || { echo "$p"; return 0; }
    p=$((20000 + (p - 20000 + 1) % 10000))
  done
  return 1
}

# A free /24 in 10.BASE.N.0 (N from 1) no route of the host overlaps with, printed as CIDR.
eng_free_subnet() {
  local base=${1:-213} n routes
  routes=$(ip -4 route show table all 2>/dev/null)
  for ((n = 1 + RANDOM % 200; n < 255; n++)); do
    printf '%s\n' "$routes" | grep -q "10\.$base\.$n\." && continue
    printf '%s\n' "$routes" | grep -Eq "^10\.$base\.0\.0/(16|8)|^10\.0\.0\.0/8" && continue
    echo "10.$base.$n.0/24"; return 0
  done
  return 1
}
