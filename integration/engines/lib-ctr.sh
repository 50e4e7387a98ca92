# Helpers shared by integration/engines/containerd.sh and docker.sh (sourced, bash).
# Output convention: one `ok - NAME` / `not ok - NAME: REASON` line per check and a final
# `# ENGINE: N passed, M failed`.

ENG_PASS=0
ENG_FAIL=0
. "${BASH_SOURCE[0]%/*}/fixtures.sh"

# eng_init ENGINE BERTH: root check, leave process_api, make $ENG_TMP, set $BERTH (absolute).
eng_init() {
  ENG=$1
  BERTH=$(readlink -f "${2:-}" 2>/dev/null)
  if [ -z "${2:-}" ] || [ ! -x "$BERTH" ]; then
    echo "usage: $0 /abs/path/to/berth" >&2; exit 2
  fi
  [ "$(id -u)" = 0 ] || { echo "$0: needs root" >&2; exit 2; }
  eng_leave_process_api || exit 2
  ENG_TMP=$(mktemp -d "/tmp/berth-$ENG.XXXXXX") || exit 2
  ENG_T0=$(date +%s)
}

# Engines resolve relative cgroup paths against their own cgroup; this machine's shells start
# under /process_api (which must never be touched): move this shell out of it in every
# hierarchy where it sits there. Children (daemons, shims, containers) inherit this.
eng_leave_process_api() {
  local _ ctrls path dir
  while IFS=: read -r _ ctrls path; do
    case $path in /process_api*) ;; *) continue ;; esac
    if [ -z "$ctrls" ]; then dir=/sys/fs/cgroup/unified; else dir=/sys/fs/cgroup/${ctrls#name=}; fi
    mkdir -p "$dir/berth-engines" && echo $$ > "$dir/berth-engines/cgroup.procs" || return 1
  done < /proc/self/cgroup
  if grep -q ':/process_api' /proc/self/cgroup; then
    echo "$0: still under /process_api, refusing" >&2; return 1
  fi
}

# Undo eng_leave_process_api at the end: this shell moves to the hierarchy's root (never back
# under /process_api) and the berth-engines cgroups go once empty.
eng_release_cgroups() {
  local dir
  for dir in /sys/fs/cgroup/*/berth-engines; do
    [ -d "$dir" ] || continue
    echo $$ > "$(dirname "$dir")/cgroup.procs" 2>/dev/null
    rmdir "$dir" 2>/dev/null
  done
}

# eng_check NAME CMD...: run CMD in this shell (so it can set variables for later checks),
# output to a file; its last line is the reason when it fails.
eng_check() {
  local name=$1 rc reason; shift
  "$@" > "$ENG_TMP/check.out" 2>&1 < /dev/null
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "ok - $name"; ENG_PASS=$((ENG_PASS + 1))
  else
    reason=$(grep -v '^[[:space:]]*$' "$ENG_TMP/check.out" | tail -n 1 | tr -d '\r' | cut -c1-300)
    echo "not ok - $name: ${reason:-exit status $rc}"; ENG_FAIL=$((ENG_FAIL + 1))
    if [ -n "${ENG_VERBOSE:-}" ]; then sed 's/^/#   /' "$ENG_TMP/check.out"; fi
  fi
}

# eng_skip NAME REASON: count a check that could not run (a prerequisite failed) as failed.
eng_skip() { echo "not ok - $1: $2"; ENG_FAIL=$((ENG_FAIL + 1)); }

eng_finish() {
  echo "# $ENG: $ENG_PASS passed, $ENG_FAIL failed ($(( $(date +%s) - ENG_T0 ))s)"
  [ "$ENG_FAIL" -eq 0 ]
}

# expect WHAT GOT WANT: fail with a readable reason unless GOT == WANT.
expect() { [ "$2" = "$3" ] || { echo "$1: got '$2', want '$3'"; return 1; }; }
# expect_in WHAT HAYSTACK NEEDLE (fixed string)
expect_in() {
  case $2 in *"$3"*) return 0 ;; esac
  echo "$1: '$3' not in '$(printf %s "$2" | tr '\n' ' ' | cut -c1-200)'"; return 1
}

# eng_stop_pid PID [SECONDS]: SIGTERM, wait, then SIGKILL.
eng_stop_pid() {
  local pid=$1 n=$(( ${2:-10} * 10 ))
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null
  while [ $n -gt 0 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; n=$((n - 1)); done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  return 0
}

# eng_pids_mentioning STRING: pids whose command line contains STRING (shims of our daemon).
eng_pids_mentioning() {
  local f
  for f in /proc/[0-9]*/cmdline; do
    { tr '\0' ' ' < "$f"; } 2>/dev/null | grep -qF -- "$1" && { f=${f#/proc/}; echo "${f%/cmdline}"; }
  done
}

# eng_umount_under DIR: unmount everything mounted below DIR, deepest first.
eng_umount_under() {
  awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
  done
}

# eng_cgroups_absent NAME: print the cgroup dirs /sys/fs/cgroup/*/NAME that do not exist yet
# (those the run may create); eng_cgroups_remove removes them (empty ones, deepest first).
eng_cgroups_absent() {
  local h
  for h in /sys/fs/cgroup/*/; do
    case $h in */process_api/) continue ;; esac
    [ -e "$h$1" ] || echo "$h$1"
  done
}
eng_cgroups_remove() {
  local d
  for d in "$@"; do
    [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
  return 0
}
