#!/bin/bash
# podman 4.3 (Debian) with conmon in front of RUNTIME: each check one line.
# Usage: integration/engines/podman.sh /abs/path/to/berth   (any runc-compatible runtime works:
#        /usr/bin/runc for reference; /work/conf/crun-wrap for crun on a hybrid host)
# Needs (scripts/deps.sh engines): podman, netavark, aardvark-dns, conmon, busybox-static, python3,
# iptables, curl. Everything lives in a temp dir: own --root/--runroot/tmp dir, containers.conf and
# storage.conf through CONTAINERS_CONF/CONTAINERS_STORAGE_CONF (no global config is read or
# written), cgroupfs manager, cgroups under /berth-engines-podman-PID, file events log, own
# networks (own bridge names and subnets). The exit trap removes all of it.
# ENG_KEEP=1 keeps the temp dir; ENG_VERBOSE=1 shows each check's time.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

RUNTIME=${1:?usage: $0 /abs/path/to/runtime}
case $RUNTIME in /*) ;; *) RUNTIME=$(command -v "$RUNTIME") || { echo "no runtime $1" >&2; exit 2; } ;; esac
[ -x "$RUNTIME" ] || { echo "$RUNTIME: not executable" >&2; exit 2; }
for t in podman conmon python3 iptables curl; do
  command -v $t >/dev/null || { echo "podman.sh: $t missing (scripts/deps.sh engines)" >&2; exit 2; }
done

CGP=/berth-engines-podman-$$          # --cgroup-parent of every container (conmon: $CGP/conmon)
IMG=localhost/berth-busybox:test
NET=bpm-$$                            # named network; bridges bpm<pid>n (named), bpm<pid>d (default)
BR_NAMED=bpm$$n BR_DEF=bpm$$d
NETAVARK_RUN=/run/containers/networks # rootful netavark/aardvark state: not configurable in 4.3
LOCK=/dev/shm/libpod_lock             # podman's SHM locks: fixed path for root
pre_run=0; [ -e "$NETAVARK_RUN" ] && pre_run=1
pre_lock=0; [ -e "$LOCK" ] && pre_lock=1
pre_varlib=0; [ -e /var/lib/containers ] && pre_varlib=1   # image tools' blob-info cache lives there
pre_chains=$( { iptables-save; ip6tables-save; } 2>/dev/null | awk '/^:/ { print $1 }' | sort -u)
pre_aardvark=$(pgrep -x aardvark-dns | sort)

pm() {
  podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp" --cgroup-manager=cgroupfs \
    --events-backend=file --runtime "$RUNTIME" "$@"
}
# run/create with our cgroup parent
pmrun() { local c=$1; shift; pm "$c" --cgroup-parent="$CGP" "$@"; }

cleanup() {
  trap - EXIT INT TERM
  local ns p c
  case $T in /tmp/berth-podman.?*) ;; *) return ;; esac   # never match "/" below
  eng_stop_checks
  # netns of our containers, to remove if podman leaves them
  ns=$(pm ps -aq 2>/dev/null | xargs -r podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp" \
       inspect -f '{{.NetworkSettings.SandboxKey}}' 2>/dev/null | grep -E '^/run/netns/[A-Za-z0-9-]+$')
  pm rm -af -t 0 >/dev/null 2>&1
  pm network rm -f "$NET" "$NET-def" >/dev/null 2>&1
  pm system reset -f >/dev/null 2>&1
  # conmon (and anything else) still running from our dirs: by pid
  for p in /proc/[0-9]*; do
    grep -qF "$T/" "$p/cmdline" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null
  done
  for p in $ns; do [ -e "$p" ] && { umount "$p" 2>/dev/null; rm -f "$p"; }; done
  for c in "$BR_NAMED" "$BR_DEF"; do ip link show "$c" >/dev/null 2>&1 && ip link del "$c"; done
  eng_kill_cgroup_tree "$CGP"
  # mounts left under the temp dir, deepest first
  findmnt -rno TARGET | grep -F "$T/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  _cleanup_chains 0
  # State podman and netavark share between all rootful instances (not configurable in 4.3):
  # removed only when it appeared during this run and no other podman is running.
  if ! pgrep -x podman >/dev/null && ! pgrep -x conmon >/dev/null; then
    # aardvark-dns started during the run (netavark stops it with the last container)
    for p in $(pgrep -x aardvark-dns); do
      printf '%s\n' "$pre_aardvark" | grep -qx "$p" || kill "$p" 2>/dev/null
    done
    _cleanup_chains 1
    [ "$pre_run" = 0 ] && { rm -rf "$NETAVARK_RUN"; rmdir /run/containers 2>/dev/null; }
    [ "$pre_lock" = 0 ] && rm -f "$LOCK"
    [ "$pre_varlib" = 0 ] && rm -rf /var/lib/containers
  fi
  eng_release_cgroups
  if [ -n "${ENG_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}

# iptables chains netavark made during the run (NETAVARK*). Empty ones nothing jumps to are
# deleted always; with ALL=1 (no other podman running) also the ones still in use: the rules
# jumping to them are dropped, then they are flushed and deleted.
_cleanup_chains() {
  local all=${1:-0} ipt table chain rule
  for ipt in iptables ip6tables; do
    command -v $ipt >/dev/null || continue
    for table in filter nat mangle; do
      for chain in $($ipt -t $table -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^NETAVARK/ { print $2 }'); do
        printf '%s\n' "$pre_chains" | grep -qx ":$chain" && continue
        if [ "$all" = 1 ]; then
          $ipt -t $table -S 2>/dev/null | grep -E -- "-j $chain( |\$)" | while read -r rule; do
            eval "$ipt -t $table ${rule/-A /-D }" 2>/dev/null
          done
          $ipt -t $table -F "$chain" 2>/dev/null
        fi
        $ipt -t $table -X "$chain" 2>/dev/null   # fails (harmless) while not empty or in use
      done
    done
  done
}
T=
eng_init podman
T=$ENG_TMP
trap cleanup EXIT
trap 'exit 130' INT TERM
eng_escape_cgroup

# podman (root) sets RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 and runs itself with nproc clamped
# to pid_max; without CAP_SYS_RESOURCE (as on the dev machine) no runtime can raise them, so ask
# for what we have.
nofile="$(ulimit -Sn):$(ulimit -Hn)"
np=$(ulimit -Hu); pidmax=$(cat /proc/sys/kernel/pid_max)
[ "$np" = unlimited ] || [ "$np" -gt "$pidmax" ] && np=$pidmax
mkdir -p "$T/tmp" "$T/networks"
cat > "$T/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile", "nproc=$np:$np"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$T/events.log"
tmp_dir = "$T/tmp"
volume_path = "$T/volumes"
runtime = "berth"
# errors come back through the runtime's --log FILE --log-format json, as for runc
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", "$(basename "$RUNTIME")"]
[engine.runtimes]
berth = ["$RUNTIME"]
[network]
network_backend = "netavark"
network_config_dir = "$T/networks"
default_network = "$NET-def"
EOF
cat > "$T/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$T/root"
runroot = "$T/runroot"
EOF
export CONTAINERS_CONF=$T/containers.conf CONTAINERS_STORAGE_CONF=$T/storage.conf

state() { pm inspect -f '{{.State.Status}}' "$1" 2>&1; }
exitcode() { pm inspect -f '{{.State.ExitCode}}' "$1" 2>&1; }
hostpid() { pm inspect -f '{{.State.Pid}}' "$1" 2>&1; }
# a v1 (or v2) cgroup file of a running container, read from the host
cgfile() {
  local pid ctl=$1 file=$2 c rel
  pid=$(hostpid "$3")
  if [ -d "/sys/fs/cgroup/$ctl" ]; then
    rel=$(awk -F: -v c="$ctl" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' "/proc/$pid/cgroup")
    cat "/sys/fs/cgroup/$ctl$rel/$file"
  else
    rel=$(awk -F: '$1 == 0 { print $3 }' "/proc/$pid/cgroup")
    c=$file; case $file in memory.limit_in_bytes) c=memory.max ;; esac
    cat "/sys/fs/cgroup$rel/$c"
  fi
}

# podman 4.3 has no --interface-name: create the network, then name its bridge ourselves in the
# netavark config file (so cleanup knows the bridge and never touches another podman's podmanN).
mknet() {
  pm network create --subnet "$3" "$1" >/dev/null &&
  sed -i "s/\"network_interface\": \"[^\"]*\"/\"network_interface\": \"$2\"/" "$T/networks/$1.json" &&
  grep -q "\"network_interface\": \"$2\"" "$T/networks/$1.json"
}
# the default network (default_network in containers.conf) exists for podman without a file:
# write its file so it gets our bridge name and subnet.
mkdefnet() {
  cat > "$T/networks/$NET-def.json" <<EOF
{
  "name": "$NET-def",
  "id": "$(printf '%s' "$NET-def" | sha256sum | cut -d' ' -f1)",
  "driver": "bridge",
  "network_interface": "$BR_DEF",
  "created": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "subnets": [ { "subnet": "$sub_def", "gateway": "${sub_def%.0/24}.1" } ],
  "ipv6_enabled": false,
  "internal": false,
  "dns_enabled": false,
  "ipam_options": { "driver": "host-local" }
}
EOF
  pm network inspect "$NET-def" | grep -q "\"network_interface\": \"$BR_DEF\""
}

# ---------------------------------------------------------------- setup (fatal if it fails)
sub_def=$(eng_free_subnet 213) && sub_named=$(eng_free_subnet 214) || { echo "no free subnet" >&2; exit 2; }
setup_err=$T/setup.err
{
  eng_busybox_tar "$T/busybox.tar" &&
  pm import --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' "$T/busybox.tar" "$IMG" >/dev/null &&
  mkdefnet && mknet "$NET" "$BR_NAMED" "$sub_named"
} 2> "$setup_err" || { echo "podman.sh: setup failed:" >&2; cat "$setup_err" >&2; exit 2; }
echo "# podman $(podman --version | awk '{print $3}'), runtime $RUNTIME ($("$RUNTIME" --version 2>/dev/null | head -n1))"

# ---------------------------------------------------------------- checks
c_run_rm() {
  local out
  out=$(pmrun run --rm --name rm1 "$IMG" sh -c 'echo hello $((40+2))') || fail "podman run failed: $out" || return
  expect_eq output "hello 42" "$out" || return
  [ -z "$(pm ps -aq --filter name=rm1)" ] || fail "container rm1 still exists after --rm"
}

c_run_stdin() {
  local out
  out=$(printf 'line-a\nline-b\n' | pmrun run --rm -i "$IMG" sh -c 'wc -l') || fail "run -i failed: $out" || return
  expect_eq "lines read from stdin" 2 "$(echo $out)"
}

c_run_d_logs() {
  local id out
  id=$(pmrun run -d --name d1 "$IMG" sh -c 'echo to-stdout; echo to-stderr >&2; trap "exit 0" TERM; while :; do sleep 0.1; done') ||
    fail "run -d failed: $id" || return
  expect_eq state running "$(state d1)" || return
  eng_wait_for 5 sh -c "podman --root $T/root --runroot $T/runroot --tmpdir $T/tmp logs d1 2>&1 | grep -q to-stderr"
  out=$(pm logs d1 2>&1)
  expect_match "logs" 'to-stdout' "$out" && expect_match "logs" 'to-stderr' "$out"
}

c_it() {
  local out rc
  out=$(eng_pty 33 101 '# ' 'echo "n=$((6*7))"; tty; stty size; exit 5
' podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp" --cgroup-manager=cgroupfs \
     --events-backend=file --runtime "$RUNTIME" run -it --rm --cgroup-parent="$CGP" "$IMG" sh)
  rc=$?
  out=$(printf '%s' "$out" | tr -d '\r')
  expect_match "shell output" 'n=42' "$out" &&
  expect_match "tty" '/dev/pts/[0-9]+' "$out" &&
  expect_match "terminal size" '33 101' "$out" &&
  expect_eq "exit status" 5 "$rc"
}

c_exec() {
  local out rc
  out=$(pm exec d1 sh -c 'echo "pid1=$(cat /proc/1/comm) sum=$((2+3))"') || fail "exec failed: $out" || return
  expect_eq output "pid1=sh sum=5" "$out" || return
  out=$(pm exec -e FOO=bar -w /tmp d1 sh -c 'echo $FOO $(pwd)')
  expect_eq "exec -e -w" "bar /tmp" "$out" || return
  pm exec d1 sh -c 'exit 4'; rc=$?
  expect_eq "exec exit status" 4 "$rc" || return
  out=$(echo piped | pm exec -i d1 cat)
  expect_eq "exec -i" piped "$out"
}

c_exec_t() {
  local out rc
  out=$(pm exec -t d1 sh -c 'tty; test -t 1 && echo is-a-tty' | tr -d '\r') || fail "exec -t failed: $out" || return
  expect_match "exec -t" '/dev/pts/[0-9]+' "$out" && expect_match "exec -t" 'is-a-tty' "$out" || return
  out=$(eng_pty 24 90 '# ' 'echo "m=$((7*8))"; stty size; exit 6
' podman --root "$T/root" --runroot "$T/runroot" --tmpdir "$T/tmp" --cgroup-manager=cgroupfs \
     --events-backend=file --runtime "$RUNTIME" exec -it d1 sh)
  rc=$?
  out=$(printf '%s' "$out" | tr -d '\r')
  expect_match "exec -it output" 'm=56' "$out" && expect_match "exec -it size" '24 90' "$out" &&
  expect_eq "exec -it exit status" 6 "$rc"
}

c_top() {
  local out
  pm exec -d d1 sleep 1234 >/dev/null || fail "exec -d failed" || return
  eng_wait_for 5 sh -c "podman --root $T/root --runroot $T/runroot --tmpdir $T/tmp top d1 | grep -q 'sleep 1234'"
  out=$(pm top d1 2>&1)
  expect_match "top" 'sleep 1234' "$out" || return
  out=$(pm top d1 pid comm 2>&1)
  expect_match "top pid comm" '^1 +sh' "$out"
}

c_pause() {
  local before after fr
  pmrun run -d --name p1 "$IMG" sh -c 'i=0; while :; do i=$((i+1)); echo $i > /tmp/n.t; mv /tmp/n.t /tmp/n; sleep 0.05; done' >/dev/null ||
    fail "run -d failed" || return
  sleep 0.3
  pm pause p1 >/dev/null || fail "pause failed" || return
  expect_eq state paused "$(state p1)" || return
  [ -d /sys/fs/cgroup/freezer ] && { fr=$(cgfile freezer freezer.state p1); expect_eq "freezer.state" FROZEN "$fr" || return; }
  before=$(cat "$(pm mount p1)/tmp/n"); sleep 0.4; after=$(cat "$(pm mount p1)/tmp/n")
  expect_eq "counter while paused" "$before" "$after" || return
  pm unpause p1 >/dev/null || fail "unpause failed" || return
  expect_eq state running "$(state p1)" || return
  sleep 0.4; after=$(pm exec p1 cat /tmp/n)
  [ "$after" -gt "$before" ] || fail "counter did not move after unpause ($before -> $after)"
}

c_stop() {
  local t0 t1 out
  t0=$(date +%s)
  pm stop -t 20 d1 >/dev/null || fail "stop failed" || return
  t1=$(date +%s)
  expect_eq state exited "$(state d1)" || return
  expect_eq "exit code (trap TERM, exit 0)" 0 "$(exitcode d1)" || return
  [ $((t1 - t0)) -lt 10 ] || fail "stop took $((t1 - t0))s: SIGTERM not delivered?" || return
  # a PID 1 that ignores SIGTERM is killed after the timeout
  pmrun run -d --name s2 "$IMG" sleep 1000 >/dev/null || fail "run -d failed" || return
  pm stop -t 1 s2 >/dev/null 2>&1 || fail "stop -t 1 failed" || return
  expect_eq state exited "$(state s2)" && expect_eq "exit code" 137 "$(exitcode s2)"
}

c_kill() {
  pmrun run -d --name k1 "$IMG" sh -c 'trap "echo got-usr1" USR1; while :; do sleep 0.1; done' >/dev/null ||
    fail "run -d failed" || return
  sleep 0.3
  pm kill -s USR1 k1 >/dev/null || fail "kill -s USR1 failed" || return
  eng_wait_for 5 sh -c "podman --root $T/root --runroot $T/runroot --tmpdir $T/tmp logs k1 | grep -q got-usr1"
  expect_match "logs after USR1" got-usr1 "$(pm logs k1 2>&1)" || return
  pm kill k1 >/dev/null || fail "kill failed" || return
  pm wait k1 >/dev/null 2>&1
  expect_eq state exited "$(state k1)" && expect_eq "exit code" 137 "$(exitcode k1)"
}

c_memory() {
  local out
  pmrun run -d --name m1 --memory 64m "$IMG" sleep 1000 >/dev/null || fail "run --memory failed" || return
  expect_eq "memory limit (host)" 67108864 "$(cgfile memory memory.limit_in_bytes m1)" || return
  out=$(pm exec m1 sh -c 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')
  expect_eq "memory limit (inside)" 67108864 "$out"
  pm rm -f -t 0 m1 >/dev/null
}

c_pids() {
  local out rc
  pmrun run -d --name n1 --pids-limit 20 "$IMG" sleep 1000 >/dev/null || fail "run --pids-limit failed" || return
  expect_eq "pids.max (host)" 20 "$(cgfile pids pids.max n1)" || return
  pm rm -f -t 0 n1 >/dev/null
  # 8 background sleeps under a limit of 5 processes: a fork fails
  out=$(pmrun run --rm --pids-limit 5 "$IMG" sh -c 'cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max
    for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; echo survived' 2>&1); rc=$?
  expect_match "pids.max (inside)" '^5' "$out" &&
  expect_match "forking past the limit" "can't fork" "$out" || return
  [ "$rc" != 0 ] || fail "the shell survived the failed fork: $out"
}

c_publish() {
  local port out
  port=$(eng_free_port)
  pmrun run -d --name w1 -p "127.0.0.1:$port:8080" "$IMG" httpd -f -p 8080 -h /var/www >/dev/null ||
    fail "run -p failed" || return
  eng_wait_for 10 curl -fsS -m 2 "http://127.0.0.1:$port/index.html" >/dev/null
  out=$(curl -fsS -m 5 "http://127.0.0.1:$port/index.html" 2>&1)
  expect_eq "curl 127.0.0.1:$port" "hello from busybox" "$out" || return
  out=$(pm port w1)
  expect_match "podman port" "8080/tcp -> 127.0.0.1:$port" "$out"
  pm rm -f -t 0 w1 >/dev/null
}

c_network() {
  local out
  pmrun run -d --name srv --network "$NET" "$IMG" httpd -f -p 80 -h /var/www >/dev/null || fail "run srv failed" || return
  out=$(pmrun run --rm --network "$NET" "$IMG" sh -c \
    'for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -q -O- http://srv/index.html && exit 0; sleep 0.3; done; nslookup srv; exit 1' 2>&1) ||
    fail "client could not reach srv by name: $(echo $out)" || return
  expect_eq "wget http://srv/" "hello from busybox" "$out" || return
  out=$(pm inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' srv)
  expect_match "srv address in $sub_named" "^${sub_named%.0/24}\." "$out"
  pm rm -f -t 0 srv >/dev/null
}

c_read_only() {
  local out
  out=$(pmrun run --rm --read-only "$IMG" sh -c 'touch /x 2>&1; echo rc=$?; touch /tmp/y && echo tmp-ok; grep " / " /proc/mounts')
  expect_match "write to /" 'Read-only file system' "$out" && expect_match "write to /" 'rc=1' "$out" &&
  expect_match "write to /tmp" 'tmp-ok' "$out" && expect_match "root mount" ' / [^ ]+ ro[, ]' "$out"
}

c_cap_drop() {
  local out def want
  def=$(pmrun run --rm "$IMG" sh -c 'grep CapEff /proc/self/status' | awk '{print $2}')
  # CAP_CHOWN is bit 0, CAP_NET_RAW bit 13: both in podman's defaults
  [ $((0x$def & 0x2001)) = $((0x2001)) ] || fail "default CapEff $def lacks CAP_CHOWN or CAP_NET_RAW" || return
  want=$(printf '%016x' $((0x$def & ~0x2001)))
  out=$(pmrun run --rm --cap-drop CHOWN --cap-drop NET_RAW "$IMG" sh -c 'grep -E "Cap(Eff|Bnd|Prm)" /proc/self/status; chown 1 /tmp 2>&1; echo rc=$?')
  expect_match CapEff "CapEff:[[:space:]]+$want" "$out" &&
  expect_match CapBnd "CapBnd:[[:space:]]+$want" "$out" &&
  expect_match "chown without CAP_CHOWN" 'rc=1' "$out" || return
  out=$(pmrun run --rm --cap-drop ALL "$IMG" grep CapEff /proc/self/status)
  expect_match "--cap-drop ALL" 'CapEff:[[:space:]]+0000000000000000' "$out"
}

c_no_new_privs() {
  local out
  out=$(pmrun run --rm "$IMG" grep NoNewPrivs /proc/self/status)
  expect_match "default" 'NoNewPrivs:[[:space:]]+0' "$out" || return
  out=$(pmrun run --rm --security-opt no-new-privileges "$IMG" grep NoNewPrivs /proc/self/status)
  expect_match "--security-opt no-new-privileges" 'NoNewPrivs:[[:space:]]+1' "$out" || return
  out=$(pmrun run -d --name nnp --security-opt no-new-privileges "$IMG" sleep 100 >/dev/null &&
        pm exec nnp grep NoNewPrivs /proc/self/status)
  expect_match "exec in a no-new-privileges container" 'NoNewPrivs:[[:space:]]+1' "$out"
  pm rm -f -t 0 nnp >/dev/null
}

c_exit_codes() {
  local rc out
  pmrun run --rm "$IMG" sh -c 'exit 3'; rc=$?
  expect_eq "exit 3" 3 "$rc" || return
  out=$(pmrun run --rm "$IMG" no-such-command 2>&1); rc=$?
  expect_eq "command not found" 127 "$rc" || { echo "$out"; return 1; }
  out=$(pmrun run --rm "$IMG" /etc/passwd 2>&1); rc=$?
  expect_eq "not executable" 126 "$rc" || { echo "$out"; return 1; }
  out=$(pmrun run --rm "$IMG" /tmp 2>&1); rc=$?
  expect_eq "a directory" 126 "$rc" || { echo "$out"; return 1; }
  pmrun run -d --name x1 "$IMG" sleep 1000 >/dev/null || fail "run -d failed" || return
  out=$(pm exec x1 no-such-command 2>&1); rc=$?
  expect_eq "exec: command not found" 127 "$rc" || { echo "$out"; return 1; }
  out=$(pm exec x1 /etc/passwd 2>&1); rc=$?
  expect_eq "exec: not executable" 126 "$rc" || { echo "$out"; return 1; }
}

# What the runtime refuses reaches podman's stderr with the reason, and exit status 126.
c_runtime_errors() {
  local out rc shm
  # a sysctl in the host's ipc namespace; the host's own value, so nothing could change anyway
  shm=$(cat /proc/sys/kernel/shmmax)
  out=$(pmrun run --rm --ipc host --sysctl "kernel.shmmax=$shm" "$IMG" true 2>&1); rc=$?
  expect_eq "sysctl in the host ipc namespace: exit status" 126 "$rc" &&
  expect_match "sysctl in the host ipc namespace: message" 'kernel.shmmax.*[Ii][Pp][Cc]' "$out" || return
  [ "$(cat /proc/sys/kernel/shmmax)" = "$shm" ] || fail "kernel.shmmax changed on the host" || return
  # a memory limit too low for the container to start
  out=$(pmrun run --rm --memory 100k "$IMG" true 2>&1); rc=$?
  expect_eq "--memory 100k: exit status" 126 "$rc" &&
  expect_match "--memory 100k: message" 'memory limit' "$out" || return
  # a mount inside /proc
  out=$(pmrun run --rm --mount type=bind,src=/etc/hostname,dst=/proc/berth-x "$IMG" true 2>&1); rc=$?
  expect_eq "mount inside /proc: exit status" 126 "$rc" &&
  expect_match "mount inside /proc: message" 'inside /proc' "$out"
}

c_rm_cleanup() {
  local left
  pm rm -af -t 0 >/dev/null 2>&1
  [ -z "$(pm ps -aq)" ] || fail "containers left after rm -af: $(pm ps -a --format '{{.Names}}')" || return
  left=$(find /sys/fs/cgroup/*/"${CGP#/}" -mindepth 1 -type d -name 'libpod-*' 2>/dev/null)
  [ -z "$left" ] || fail "cgroups left after rm: $(echo $left)"
}

eng_check "run --rm" c_run_rm
eng_check "run -i (stdin)" c_run_stdin
eng_check "run -d + logs" c_run_d_logs
eng_check "run -it (terminal)" c_it
eng_check "exec" c_exec
eng_check "exec -t / -it" c_exec_t
eng_check "top" c_top
eng_check "pause/unpause" c_pause
eng_check "stop" c_stop
eng_check "kill" c_kill
eng_check "--memory" c_memory
eng_check "--pids-limit" c_pids
eng_check "-p 127.0.0.1:PORT (from the host)" c_publish
eng_check "named network (by name)" c_network
eng_check "--read-only" c_read_only
eng_check "--cap-drop" c_cap_drop
eng_check "--security-opt no-new-privileges" c_no_new_privs
eng_check "exit codes" c_exit_codes
eng_check "runtime errors reach podman" c_runtime_errors
eng_check "rm (nothing left)" c_rm_cleanup

eng_summary
