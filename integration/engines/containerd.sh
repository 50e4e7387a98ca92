#!/bin/bash
# berth under containerd 1.6 and its runc v2 shim, two ways:
#  - `ctr run --runc-binary BERTH` (the shim runs BERTH instead of runc);
#  - the CRI runtime handler `berth` configured in config.toml with options BinaryName = BERTH,
#    which is what a Kubernetes RuntimeClass (handler: berth) selects; driven by cri.py.
# A private containerd (own root, state, sockets; cgroupfs) is started and stopped by pid.
# Usage: integration/engines/containerd.sh /abs/path/to/berth   (as root; `scripts/deps.sh engines`
# installs containerd and python3-grpcio). ENG_VERBOSE=1 prints a failing check's whole output.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib-ctr.sh"
eng_init containerd "${1:-}"

D=$ENG_TMP
SOCK=$D/containerd.sock
NS=berth-ctrtest                 # ctr's namespace; also its cgroup parent (/NS/ID)
CGP=/berth-ctrtest-cri           # cgroup parent of the CRI pod
IMG=localhost/busybox:latest
RT=$D/rt                         # runtime --root (the shim appends the namespace)
new_cgroups=$(eng_cgroups_absent $NS; eng_cgroups_absent ${CGP#/})
run_ctrd_existed=0; [ -e /run/containerd ] && run_ctrd_existed=1   # shims keep sockets in /run/containerd/s
CTRD_PID=

C() { timeout 60 ctr -a "$SOCK" -n "$NS" "$@"; }
K() { timeout 60 ctr -a "$SOCK" -n k8s.io "$@"; }
CRI() { timeout 120 /usr/bin/python3 "$here/cri.py" "$SOCK" "$@"; }
RUNOPTS=(--runc-binary "$BERTH" --runc-root "$RT" --fifo-dir "$D/fifo")

cleanup() {
  local ns id root
  if [ -n "$CTRD_PID" ] && kill -0 "$CTRD_PID" 2>/dev/null; then
    for ns in $NS k8s.io; do
      for id in $(timeout 20 ctr -a "$SOCK" -n $ns task ls -q 2>/dev/null); do
        timeout 20 ctr -a "$SOCK" -n $ns task kill -s SIGKILL "$id" >/dev/null 2>&1
      done
      for id in $(timeout 20 ctr -a "$SOCK" -n $ns task ls -q 2>/dev/null); do
        timeout 20 ctr -a "$SOCK" -n $ns task delete -f "$id" >/dev/null 2>&1
      done
      for id in $(timeout 20 ctr -a "$SOCK" -n $ns container ls -q 2>/dev/null); do
        timeout 20 ctr -a "$SOCK" -n $ns container delete "$id" >/dev/null 2>&1
      done
    done
  fi
  # whatever the engine left, through the runtime itself (kills the processes, removes cgroups)
  for root in "$RT"/*/; do
    [ -d "$root" ] || continue
    for id in $("$BERTH" --root "$root" list -q 2>/dev/null); do
      "$BERTH" --root "$root" delete --force "$id" >/dev/null 2>&1
    done
  done
  for id in $(eng_pids_mentioning "$SOCK"); do eng_stop_pid "$id" 5; done   # shims
  eng_stop_pid "$CTRD_PID" 15
  eng_umount_under "$D"
  eng_cgroups_remove $new_cgroups
  if [ $run_ctrd_existed = 0 ]; then
    rmdir /run/containerd/s /run/containerd 2>/dev/null
  fi
  if [ -n "${ENG_KEEP:-}" ]; then echo "# kept $D"; else rm -rf "$D"; fi
  eng_release_cgroups
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$D/cni/bin" "$D/cni/net.d" "$D/logs"
cat > "$D/config.toml" <<EOT
version = 2
root = "$D/root"
state = "$D/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[debug]
  address = "$D/debug.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:latest"
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  # this machine's root lacks CAP_SYS_RESOURCE: don't ask for negative oom_score_adj
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$D/cni/bin"
    conf_dir = "$D/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"   # CRI refuses a default that is not under runtimes
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
      BinaryName = "$BERTH"
      Root = "$RT"
      SystemdCgroup = false
EOT

# ---- checks -----------------------------------------------------------------------------

t_daemon() {
  containerd --config "$D/config.toml" > "$D/containerd.log" 2>&1 < /dev/null &
  CTRD_PID=$!
  local i
  for i in $(seq 1 100); do
    C version > /dev/null 2>&1 && return 0
    kill -0 $CTRD_PID 2>/dev/null || break
    sleep 0.2
  done
  tail -n 3 "$D/containerd.log"; echo "containerd did not come up"; return 1
}

t_import() {
  eng_busybox_archive "$D/busybox.tar" $IMG || return 1
  eng_busybox_archive "$D/pause.tar" localhost/pause:latest sleep 2147483647 || return 1
  C image import "$D/busybox.tar" || return 1
  K image import "$D/busybox.tar" && K image import "$D/pause.tar" || return 1
  expect "image" "$(C image ls -q | grep -c "^$IMG\$")" 1
}

t_run_output() {
  local out
  out=$(C run --rm "${RUNOPTS[@]}" $IMG c-run sh -c 'echo hello; cat /proc/self/cgroup') || { echo "$out"; return 1; }
  expect_in "output" "$out" "hello" || return 1
  # the shim finds the container's cgroups through /proc/PID/cgroup: ctr asked for /NS/ID
  expect_in "memory cgroup" "$out" ":memory:/$NS/c-run" && expect_in "pids cgroup" "$out" ":pids:/$NS/c-run"
}

t_run_exit() {
  C run --rm "${RUNOPTS[@]}" $IMG c-exit sh -c 'exit 3'
  expect "ctr run exit status" $? 3
}

# On a terminal of its own (pty-run.py: the input side stays open; `script < /dev/null` types
# an EOF at a moment that depends on timing). On failure: what was left running.
t_run_tty() {
  local out rc
  out=$(eng_pty 24 80 '' '' ctr -a "$SOCK" -n "$NS" run --rm -t "${RUNOPTS[@]}" $IMG c-tty sh -c 'tty; exit 4'); rc=$?
  if [ "$rc" != 4 ]; then
    echo "terminal output: $(printf %s "$out" | od -c | head -3)"
    C task ls; "$BERTH" --root "$RT/$NS" list
    ps -eo pid,ppid,stat,wchan:24,args | grep -E "c-tty|containerd-shim" | grep -v grep
    tail -n 5 "$D/containerd.log"
  fi
  expect "exit status" "$rc" 4 && expect_in "tty" "$out" "/dev/pts/0"
}

task_status() { C task ls | awk -v id="$1" '$1 == id { print $3 }'; }
berth_status() { "$BERTH" --root "$RT/$NS" state "$1" 2>&1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }

t_run_detached() {
  C run -d --memory-limit 67108864 "${RUNOPTS[@]}" $IMG c-d \
    sh -c 'trap "exit 42" TERM; echo up; while :; do sleep 0.2; done' || return 1
  expect "task status" "$(task_status c-d)" RUNNING && expect "berth state" "$(berth_status c-d)" running
}

t_exec() {
  local out rc
  out=$(C task exec --fifo-dir "$D/fifo" --exec-id e1 c-d sh -c 'echo exec-ok; exit 5'); rc=$?
  expect "exec output" "$out" exec-ok && expect "exec exit status" $rc 5
}

t_pause_resume() {
  C task pause c-d || return 1
  expect "after pause" "$(task_status c-d)" PAUSED || return 1
  expect "berth state after pause" "$(berth_status c-d)" paused || return 1
  C task resume c-d || return 1
  expect "after resume" "$(task_status c-d)" RUNNING
}

t_metrics() {
  local out
  out=$(C task metrics c-d) || { echo "$out"; return 1; }
  expect "memory.limit_in_bytes" "$(echo "$out" | awk '$1 == "memory.limit_in_bytes" { print $2 }')" 67108864 || return 1
  expect_in "metrics" "$out" "memory.usage_in_bytes" || return 1
  [ "$(echo "$out" | awk '$1 == "pids.current" { print $2 }')" -ge 1 ] 2>/dev/null || { echo "pids.current missing: $out"; return 1; }
  [ "$(echo "$out" | awk '$1 == "cpuacct.usage" { print $2 }')" -gt 0 ] 2>/dev/null || { echo "cpuacct.usage missing"; return 1; }
}

t_ps() {
  local pid out
  pid=$(C task ls | awk '$1 == "c-d" { print $2 }')
  out=$(C task ps c-d) || return 1
  expect_in "task ps" "$out" "$pid"
}

t_kill() {
  local i out
  C task kill c-d || return 1            # SIGTERM: the trap exits 42
  for i in $(seq 1 50); do [ "$(task_status c-d)" = STOPPED ] && break; sleep 0.1; done
  expect "status after kill" "$(task_status c-d)" STOPPED || return 1
  out=$(C task delete c-d 2>&1)
  expect_in "exit code on delete" "$out" "exit code 42"
}

t_delete() {
  C container delete c-d || return 1
  [ ! -e "$RT/$NS/c-d" ] || { echo "runtime state $RT/$NS/c-d left"; return 1; }
  [ ! -e /sys/fs/cgroup/memory/$NS/c-d ] || { echo "cgroup /sys/fs/cgroup/memory/$NS/c-d left"; return 1; }
  expect "containers left" "$(C container ls -q | grep -c c-d)" 0
}

t_kill9() {
  C run -d "${RUNOPTS[@]}" $IMG c-k sleep 1000 || return 1
  C task exec --fifo-dir "$D/fifo" -d --exec-id bg c-k sleep 1000 || return 1
  C task kill -a -s SIGKILL c-k || return 1
  local i out
  for i in $(seq 1 50); do [ "$(task_status c-k)" = STOPPED ] && break; sleep 0.1; done
  expect "status" "$(task_status c-k)" STOPPED || return 1
  out=$(C task delete c-k 2>&1)
  expect_in "exit code" "$out" "exit code 137" && C container delete c-k
}

# A task that exited on its own is killed and deleted cleanly: the shim reads berth's "container
# not running" as "already finished" (any other words give "unknown error after kill", and under
# CRI a pod whose container exited could not be stopped or removed).
t_kill_exited() {
  C run -d "${RUNOPTS[@]}" $IMG c-x sh -c 'exit 5' || return 1
  local i out
  for i in $(seq 1 50); do [ "$(task_status c-x)" = STOPPED ] && break; sleep 0.1; done
  expect "status" "$(task_status c-x)" STOPPED || return 1
  out=$(C task kill -s SIGKILL c-x 2>&1)
  case "$out" in *"unknown error"*) echo "kill: $out"; return 1 ;; esac
  out=$(C task kill -a -s SIGKILL c-x 2>&1)
  case "$out" in *"unknown error"*) echo "kill -a: $out"; return 1 ;; esac
  # ctr prints the exit code on delete only when it is not 0.
  out=$(C task delete c-x 2>&1)
  expect_in "exit code" "$out" "exit code 5" && C container delete c-x
}

t_run_error() {
  local out
  out=$(C run --rm "${RUNOPTS[@]}" $IMG c-err /nonexistent 2>&1) && { echo "ctr run succeeded"; return 1; }
  C container delete c-err > /dev/null 2>&1
  # the runtime writes the error to --log (json); the shim reads it back into the task error
  expect_in "ctr error" "$out" '"/nonexistent"' && expect_in "ctr error" "$out" "no such file or directory"
}

t_exec_error() {
  local out
  C run -d "${RUNOPTS[@]}" $IMG c-e sleep 1000 || return 1
  out=$(C task exec --fifo-dir "$D/fifo" --cwd /nonexistent-dir --exec-id e1 c-e true 2>&1) && { echo "exec succeeded"; return 1; }
  C task kill -s SIGKILL c-e; sleep 0.3; C task delete c-e > /dev/null 2>&1; C container delete c-e
  expect_in "exec error" "$out" "/nonexistent-dir"
}

# ---- CRI: runtime handler "berth" (config.toml BinaryName), as a RuntimeClass selects it ----

POD=; CID=
export CRI_LOG_DIR=$D/logs
berth_k8s_status() { "$BERTH" --root "$RT/k8s.io" state "$1" 2>&1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
berth_k8s_pid() { "$BERTH" --root "$RT/k8s.io" state "$1" 2>&1 | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p'; }

t_cri_version() {
  /usr/bin/python3 -c 'import grpc' 2>/dev/null || { echo "python3-grpcio missing (scripts/deps.sh engines)"; return 1; }
  local out; out=$(CRI version) || return 1
  expect_in "cri version" "$out" "containerd"
}

t_cri_pod() {
  POD=$(CRI runp pod1 berth "$CGP") || return 1
  # the sandbox runs under BERTH (BinaryName) with the configured Root
  expect "sandbox state in berth" "$(berth_k8s_status "$POD")" running
}

t_cri_container() {
  [ -n "$POD" ] || { echo "no pod"; return 1; }
  CID=$(CRI create "$POD" c1 "$CGP" $IMG 67108864 sh -c 'echo started; sleep 1000') || return 1
  CRI start "$CID" || return 1
  expect "cri status" "$(CRI status "$CID" | awk '{ print $1 }')" RUNNING || return 1
  expect "berth state" "$(berth_k8s_status "$CID")" running
}

t_cri_log() {
  local i
  for i in $(seq 1 20); do grep -q 'stdout F started' "$D/logs/pod1/c1.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "no 'started' in $D/logs/pod1/c1.log: $(cat "$D/logs/pod1/c1.log" 2>&1)"; return 1
}

t_cri_exec() {
  local out rc
  out=$(CRI exec "$CID" sh -c 'echo exec-ok; exit 4'); rc=$?
  expect "exec output" "$out" exec-ok && expect "exec exit code" $rc 4
}

t_cri_memory() {
  expect "memory limit" "$(CRI exec "$CID" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" 67108864
}

t_cri_ipc() {
  local spid mine pod
  spid=$(berth_k8s_pid "$POD")
  [ -n "$spid" ] || { echo "no sandbox pid"; return 1; }
  pod=$(readlink /proc/$spid/ns/ipc)
  mine=$(CRI exec "$CID" readlink /proc/1/ns/ipc)
  expect "container ipc ns = sandbox's" "$mine" "$pod" || return 1
  [ "$(readlink /proc/self/ns/ipc)" != "$pod" ] || { echo "sandbox shares the host ipc ns"; return 1; }
}

t_cri_stats() {
  local ws; ws=$(CRI stats "$CID") || return 1
  [ "${ws:-0}" -gt 0 ] 2>/dev/null || { echo "working set: '$ws'"; return 1; }
}

t_cri_stop() {
  CRI stop "$CID" 2 || return 1
  expect "after stop" "$(CRI status "$CID" | awk '{ print $1 }')" EXITED
}

t_cri_exit_code() {
  local c2
  c2=$(CRI create "$POD" c2 "$CGP" $IMG 0 sh -c 'exit 7') || return 1
  CRI start "$c2" || return 1
  expect "exit code" "$(CRI wait "$c2" 20)" 7
}

t_cri_start_error() {
  local c3 out
  c3=$(CRI create "$POD" c3 "$CGP" $IMG 0 /nonexistent) || return 1
  CRI start "$c3" 2>/dev/null && { echo "start succeeded"; return 1; }
  out=$(CRI status "$c3")
  expect_in "status message" "$out" '"/nonexistent"'
}

t_cri_remove() {
  local id
  for id in $(K container ls -q); do
    [ "$id" = "$POD" ] && continue
    CRI rm "$id" || return 1
  done
  CRI stopp "$POD" && CRI rmp "$POD" || return 1
  expect "berth containers left" "$("$BERTH" --root "$RT/k8s.io" list -q | wc -l)" 0
}

eng_check "containerd starts (private root, sockets, cgroupfs)" t_daemon
if [ -z "$CTRD_PID" ] || ! kill -0 "$CTRD_PID" 2>/dev/null; then eng_finish; exit 1; fi
eng_check "ctr image import of a local busybox" t_import
eng_check "ctr run --runc-binary: output and cgroup paths" t_run_output
eng_check "ctr run: exit status of the container" t_run_exit
eng_check "ctr run -t: terminal" t_run_tty
eng_check "ctr run -d: task running" t_run_detached
eng_check "ctr task exec: output and exit status" t_exec
eng_check "ctr task pause/resume" t_pause_resume
eng_check "ctr task metrics (cgroup v1, --memory-limit)" t_metrics
eng_check "ctr task ps" t_ps
eng_check "ctr task kill (SIGTERM) and exit status" t_kill
eng_check "ctr task delete, container delete: nothing left" t_delete
eng_check "ctr task kill -a SIGKILL with an exec process" t_kill9
eng_check "ctr task kill/delete of a task that exited on its own" t_kill_exited
eng_check "berth's error reaches ctr (run, --log json)" t_run_error
eng_check "berth's error reaches ctr (exec, --log json)" t_exec_error
eng_check "cri: version" t_cri_version
eng_check "cri: pod sandbox with runtime handler berth (BinaryName)" t_cri_pod
eng_check "cri: create and start a container" t_cri_container
eng_check "cri: container log" t_cri_log
eng_check "cri: exec sync output and exit code" t_cri_exec
eng_check "cri: memory limit in the container's cgroup" t_cri_memory
eng_check "cri: ipc namespace shared with the sandbox" t_cri_ipc
eng_check "cri: container stats" t_cri_stats
eng_check "cri: stop container" t_cri_stop
eng_check "cri: exit code" t_cri_exit_code
eng_check "cri: berth's start error in the container status" t_cri_start_error
eng_check "cri: remove containers and pod" t_cri_remove
eng_finish
