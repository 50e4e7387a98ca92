#!/bin/bash
# berth under docker 20.10 (dockerd -> containerd -> runc v2 shim -> berth), two ways:
#  - `dockerd --add-runtime berth=BERTH` and `docker run --runtime berth`;
#  - daemon.json {"runtimes": {"berth": {"path": BERTH}}, "default-runtime": "berth"}.
# A private dockerd (own data-root, exec-root, socket, pidfile; cgroupfs under /berth-dockertest;
# no docker0: --bridge=none and one user network) is started and stopped by pid; it runs its own
# containerd. Traffic stays on loopback and the user network's bridge.
# Usage: integration/engines/docker.sh /abs/path/to/berth   (as root; `scripts/deps.sh engines`
# installs docker.io). Debian's CLI /usr/bin/docker is used. ENG_VERBOSE=1, ENG_KEEP=1 help debugging.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib-ctr.sh"
eng_init docker "${1:-}"

D=$ENG_TMP
SOCK=$D/docker.sock
CGP=berth-dockertest                 # --cgroup-parent: containers in /sys/fs/cgroup/*/CGP/ID
NET=berth-dockertest-net
IMG=localhost/busybox:latest
DOCKER=/usr/bin/docker               # Debian's CLI, not another docker on PATH
new_cgroups=$(eng_cgroups_absent $CGP)
ipt_filter_had=0; iptables -t filter -S DOCKER > /dev/null 2>&1 && ipt_filter_had=1
ipt_nat_had=0; iptables -t nat -S DOCKER > /dev/null 2>&1 && ipt_nat_had=1
etc_docker_had=0; [ -e /etc/docker ] && etc_docker_had=1
key_had=0; [ -e /etc/docker/key.json ] && key_had=1       # dockerd 20.10 always writes its trust key there
run_ctrd_had=0; [ -e /run/containerd ] && run_ctrd_had=1  # the shims' sockets: /run/containerd/s
run_docker_had=0; [ -e /run/docker ] && run_docker_had=1    # dockerd makes /run/docker/plugins
PORT=$((20000 + RANDOM % 10000))
BRIDGE=bdk$PORT                      # the user network's bridge (named, so cleanup knows it)
DOCKERD_PID=

DK() { timeout 60 "$DOCKER" -H "unix://$SOCK" "$@"; }

start_dockerd() {   # ARGS...: extra dockerd flags
  dockerd --data-root "$D/data" --exec-root "$D/exec" -H "unix://$SOCK" --pidfile "$D/docker.pid" \
    --exec-opt native.cgroupdriver=cgroupfs --cgroup-parent "/$CGP" --bridge=none \
    --iptables=true --ip-masq=false --storage-driver overlay2 "$@" \
    >> "$D/dockerd.log" 2>&1 < /dev/null &
  DOCKERD_PID=$!
  local i
  for i in $(seq 1 150); do
    DK version > /dev/null 2>&1 && return 0
    kill -0 $DOCKERD_PID 2>/dev/null || break
    sleep 0.2
  done
  tail -n 3 "$D/dockerd.log"; echo "dockerd did not come up"; return 1
}

stop_dockerd() {
  if [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    local ids; ids=$(DK ps -aq 2>/dev/null)
    [ -n "$ids" ] && DK rm -f $ids > /dev/null 2>&1
    DK network rm $NET > /dev/null 2>&1
    eng_stop_pid "$DOCKERD_PID" 20
  fi
  DOCKERD_PID=
  # dockerd stops its containerd; make sure of it, and of shims and containers
  eng_stop_pid "$(cat "$D/exec/containerd/containerd.pid" 2>/dev/null)" 10
  local root id
  for root in "$D"/exec/runtime-*/*/; do
    [ -d "$root" ] || continue
    for id in $("$BERTH" --root "$root" list -q 2>/dev/null); do "$BERTH" --root "$root" delete --force "$id" > /dev/null 2>&1; done
  done
  for id in $(eng_pids_mentioning "$D/exec/containerd") $(eng_pids_mentioning "-host-port $PORT "); do
    eng_stop_pid "$id" 5
  done
}

cleanup() {
  local t r c l
  stop_dockerd
  eng_umount_under "$D"
  for t in filter nat; do
    [ $t = filter ] && [ $ipt_filter_had = 1 ] && continue
    [ $t = nat ] && [ $ipt_nat_had = 1 ] && continue
    iptables -t $t -S 2>/dev/null | grep -E '^-A (INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) .*-j DOCKER' |
      while read -r _ r; do eval "iptables -t $t -D $r"; done
    for c in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do iptables -t $t -F "$c"; done
    for c in $(iptables -t $t -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ { print $2 }'); do iptables -t $t -X "$c"; done
  done
  if ip link show "$BRIDGE" > /dev/null 2>&1; then   # only if dockerd could not remove it
    for l in $(ip -o link show master "$BRIDGE" | awk -F': ' '{ print $2 }' | sed 's/@.*//'); do ip link del "$l"; done
    ip link del "$BRIDGE"
  fi
  eng_cgroups_remove $new_cgroups
  [ $key_had = 0 ] && rm -f /etc/docker/key.json
  [ $etc_docker_had = 0 ] && rmdir /etc/docker 2>/dev/null
  [ $run_ctrd_had = 0 ] && rmdir /run/containerd/s /run/containerd 2>/dev/null
  [ $run_docker_had = 0 ] && rmdir /run/docker/plugins /run/docker 2>/dev/null
  if [ -n "${ENG_KEEP:-}" ]; then echo "# kept $D"; else rm -rf "$D"; fi
  eng_release_cgroups
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- checks: --add-runtime berth=BERTH, docker run --runtime berth ----------------------

R=(--runtime berth)
berth_status() { "$BERTH" --root "$D/exec/runtime-runc/moby" state "$1" 2>&1 | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p'; }
state() { DK inspect -f "$1" "$2"; }

t_daemon1() {
  echo '{}' > "$D/daemon-flags.json"    # not the host's /etc/docker/daemon.json
  start_dockerd --config-file "$D/daemon-flags.json" --add-runtime "berth=$BERTH" || return 1
  expect_in "docker info runtimes" "$(DK info -f '{{range $k, $v := .Runtimes}}{{$k}} {{end}}')" berth
}

t_load() {
  eng_busybox_archive "$D/busybox.tar" $IMG || return 1
  DK load -i "$D/busybox.tar" || return 1
  DK image inspect $IMG > /dev/null
}

t_run_rm() {
  local out rc
  out=$(DK run --rm "${R[@]}" $IMG sh -c 'echo hello; exit 3'); rc=$?
  expect "output" "$out" hello && expect "exit status" $rc 3 || return 1
  expect "containers left" "$(DK ps -aq | wc -l)" 0
}

t_detached_logs() {
  DK run -d --name d1 "${R[@]}" $IMG sh -c 'echo started; trap "echo got-term; exit 0" TERM; while :; do sleep 0.1; done' > /dev/null || return 1
  local i
  for i in $(seq 1 30); do [ "$(DK logs d1 2>&1)" = started ] && break; sleep 0.1; done
  expect "logs" "$(DK logs d1 2>&1)" started || return 1
  # the container is berth's (its state lives in the root dockerd gives the shim)
  expect "berth state" "$(berth_status "$(state '{{.Id}}' d1)")" running
}

t_exec() {
  local out rc
  out=$(DK exec d1 sh -c 'echo in-exec; exit 6'); rc=$?
  expect "exec output" "$out" in-exec && expect "exec exit status" $rc 6 || return 1
  expect "exec -u nobody" "$(DK exec -u nobody d1 id -u)" 65534
}

t_pause() {
  DK pause d1 > /dev/null || return 1
  expect "status" "$(state '{{.State.Status}}' d1)" paused || return 1
  DK unpause d1 > /dev/null || return 1
  expect "status" "$(state '{{.State.Status}}' d1)" running
}

t_stop() {
  local t0=$(date +%s)
  DK stop d1 > /dev/null || return 1
  [ $(( $(date +%s) - t0 )) -lt 8 ] || { echo "stop took until the SIGKILL timeout"; return 1; }
  expect "status" "$(state '{{.State.Status}} {{.State.ExitCode}}' d1)" "exited 0" || return 1
  expect_in "logs" "$(DK logs d1 2>&1)" got-term || return 1
  DK rm d1 > /dev/null
}

http_get() {   # PORT PATH: HTTP/1.0 GET on 127.0.0.1 with bash's /dev/tcp
  exec 3<> "/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  timeout 5 cat <&3
  exec 3>&-
}

t_publish() {
  DK network create -o "com.docker.network.bridge.name=$BRIDGE" $NET > /dev/null || return 1
  DK run -d --name web --network $NET -p "127.0.0.1:$PORT:80" "${R[@]}" $IMG httpd -f -p 80 -h /var/www > /dev/null || return 1
  local i out
  for i in $(seq 1 50); do
    out=$(http_get $PORT /index.html 2>/dev/null) && case $out in *"hello from busybox"*) return 0 ;; esac
    sleep 0.1
  done
  echo "GET http://127.0.0.1:$PORT/index.html: '$(echo "$out" | head -n 1)'"; return 1
}

t_dns() {
  local out
  out=$(DK run --rm --network $NET "${R[@]}" $IMG wget -qO- http://web/index.html 2>&1)
  expect "wget http://web/ from a second container" "$out" "hello from busybox"
}

t_memory() {
  local id
  id=$(DK run -d --memory 64m "${R[@]}" $IMG sleep 1000) || return 1
  expect "limit inside" "$(DK exec "$id" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" 67108864 || return 1
  expect "limit on the host" "$(cat /sys/fs/cgroup/memory/$CGP/$id/memory.limit_in_bytes 2>&1)" 67108864 || return 1
  DK update --memory 48m --memory-swap 96m "$id" > /dev/null || return 1
  expect "after docker update" "$(DK exec "$id" cat /sys/fs/cgroup/memory/memory.limit_in_bytes)" 50331648 || return 1
  DK rm -f "$id" > /dev/null
}

t_restart() {
  local pid1 pid2
  DK run -d --name r1 "${R[@]}" $IMG sh -c 'echo run; sleep 1000' > /dev/null || return 1
  pid1=$(state '{{.State.Pid}}' r1)
  DK restart -t 1 r1 > /dev/null || return 1
  pid2=$(state '{{.State.Pid}}' r1)
  expect "status" "$(state '{{.State.Status}}' r1)" running || return 1
  [ "$pid1" != "$pid2" ] || { echo "same pid $pid1 after restart"; return 1; }
  local i
  for i in $(seq 1 30); do [ "$(DK logs r1 2>&1 | grep -c run)" = 2 ] && break; sleep 0.1; done
  expect "runs logged" "$(DK logs r1 2>&1 | grep -c run)" 2 || return 1
  DK rm -f r1 > /dev/null
}

t_restart_policy() {
  DK run -d --name r2 --restart on-failure:2 "${R[@]}" $IMG sh -c 'echo attempt; exit 1' > /dev/null || return 1
  local i st
  for i in $(seq 1 100); do
    st=$(state '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}' r2)
    [ "$st" = "exited 2 1" ] && break
    sleep 0.2
  done
  expect "status restarts exit" "$st" "exited 2 1" || return 1
  expect "attempts logged" "$(DK logs r2 2>&1 | grep -c attempt)" 3 || return 1
  DK rm -f r2 > /dev/null
}

t_error() {
  local out rc
  out=$(DK run --rm "${R[@]}" $IMG /nonexistent 2>&1); rc=$?
  expect "exit status (command not found)" $rc 127 || return 1
  expect_in "docker error" "$out" '"/nonexistent"'
}

# ---- checks: daemon.json runtimes + default-runtime berth ----------------------------------

t_daemon2() {
  stop_dockerd
  printf '{\n  "runtimes": { "berth": { "path": "%s" } },\n  "default-runtime": "berth"\n}\n' "$BERTH" > "$D/daemon.json"
  start_dockerd --config-file "$D/daemon.json" || return 1
  expect "docker info default runtime" "$(DK info -f '{{.DefaultRuntime}}')" berth
}

t_default_run() {
  local id out
  id=$(DK run -d $IMG sh -c 'echo default; sleep 1000') || return 1
  expect "runtime" "$(state '{{.HostConfig.Runtime}}' "$id")" berth || return 1
  expect "berth state" "$(berth_status "$id")" running || return 1
  out=$(DK exec "$id" sh -c 'echo exec-ok')
  expect "exec" "$out" exec-ok || return 1
  DK rm -f "$id" > /dev/null || return 1
  out=$(DK run --rm $IMG sh -c 'echo hello; exit 2'); 
  expect "run --rm exit status" $? 2 && expect "output" "$out" hello
}

eng_check "dockerd --add-runtime berth starts (private roots, cgroupfs)" t_daemon1
if [ -z "$DOCKERD_PID" ]; then eng_finish; exit 1; fi
eng_check "docker load of a local busybox" t_load
eng_check "docker run --rm --runtime berth: output, exit status" t_run_rm
eng_check "docker run -d, docker logs" t_detached_logs
eng_check "docker exec: output, exit status, -u" t_exec
eng_check "docker pause/unpause" t_pause
eng_check "docker stop (SIGTERM reaches the container)" t_stop
eng_check "docker run -p 127.0.0.1:PORT:80, reached from the host" t_publish
eng_check "user network: name resolution between two containers" t_dns
eng_check "docker run --memory, docker update --memory" t_memory
eng_check "docker restart" t_restart
eng_check "docker run --restart on-failure:2" t_restart_policy
eng_check "berth's error reaches docker (exit 127)" t_error
eng_check "daemon.json runtimes + default-runtime berth" t_daemon2
eng_check "default runtime: run, exec, run --rm" t_default_run
eng_finish
