#!/bin/bash
# berth's Docker Engine API service (`berth system service`) driven by the real clients: the docker
# CLI on the PATH (28 here; Debian's docker.io 20.10 client elsewhere), Debian's docker-compose
# 1.29 and the Python docker SDK (pip, in a venv the script makes). Each check one line.
# Usage: integration/engines/api.sh /abs/path/to/berth
# Needs (scripts/deps.sh test): docker CLI (docker.io or docker-ce-cli), docker-compose,
# docker-registry, skopeo, python3-venv, busybox-static, curl.
# Everything lives in a temp dir: the service's socket, --data-root and --root, a registry on a
# free 127.0.0.1 port, networks with their own subnets. Containers run under this script's own
# cgroup (berth-engines-api-PID). The exit trap stops the service and the registry by pid and
# removes containers, networks, mounts and the temp dir. API_N (default 100): how many
# concurrent `docker run -d` the concurrency check makes. ENG_KEEP=1 keeps the temp dir.
# API_ONLY=REGEX runs only the checks whose names match.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

BERTH=${1:?usage: $0 /abs/path/to/berth}
case $BERTH in /*) ;; *) BERTH=$(command -v "$BERTH") || { echo "no berth $1" >&2; exit 2; } ;; esac
[ -x "$BERTH" ] || { echo "$BERTH: not executable" >&2; exit 2; }
command -v docker >/dev/null || { echo "api.sh: docker CLI missing (scripts/deps.sh test)" >&2; exit 2; }
API_N=${API_N:-100}
# API_DOCKER=/usr/bin/docker runs the checks with Debian's 20.10 client instead of the PATH's.
if [ -n "${API_DOCKER:-}" ]; then
  docker() { "$API_DOCKER" "$@"; }
  export -f docker
  export API_DOCKER
fi

eng_init api
T=$ENG_TMP
eng_escape_cgroup
SOCK=$T/docker.sock
export DOCKER_HOST=unix://$SOCK DOCKER_CONFIG=$T/docker-config
mkdir -p "$DOCKER_CONFIG"
B() { "$BERTH" --root "$T/run" --data-root "$T/data" "$@"; }
SVC_PID=
REG_PID=
AREG_PID=

start_service() {
  B system service --host "unix://$SOCK" > "$T/service.log" 2>&1 &
  SVC_PID=$!
  eng_wait_for 10 test -S "$SOCK"
}

cleanup() {
  trap - EXIT INT TERM
  case $T in /tmp/berth-api.?*) ;; *) return ;; esac
  eng_stop_checks
  [ -n "$SVC_PID" ] && { kill "$SVC_PID" 2>/dev/null; wait "$SVC_PID" 2>/dev/null; }
  [ -n "$REG_PID" ] && { kill "$REG_PID" 2>/dev/null; wait "$REG_PID" 2>/dev/null; }
  [ -n "$AREG_PID" ] && { kill "$AREG_PID" 2>/dev/null; wait "$AREG_PID" 2>/dev/null; }
  for c in $(B container ls -aq --no-trunc 2>/dev/null); do B container rm -f "$c" >/dev/null 2>&1; done
  B network prune >/dev/null 2>&1
  B volume prune -a >/dev/null 2>&1
  for p in /proc/[0-9]*; do
    grep -qF "$T/" "$p/cmdline" 2>/dev/null && kill -9 "${p#/proc/}" 2>/dev/null && rm -rf "/run/berth/api.${p#/proc/}"
  done
  findmnt -rno TARGET | grep -F "$T/" | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
  eng_release_cgroups
  if [ -n "${ENG_KEEP:-}" ]; then echo "# kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

eng_busybox_archive "$T/busybox.tar" busybox:latest sh || exit 2
B image load -i "$T/busybox.tar" >/dev/null || { echo "api.sh: image load failed" >&2; exit 2; }
start_service || { echo "api.sh: the service did not start"; cat "$T/service.log"; exit 2; }

dr() { docker run --network none "$@"; }
# The service's own pid (SVC_PID may be the subshell that runs it).
svc_pid() {
  if [ "$(cat /proc/$SVC_PID/comm 2>/dev/null)" = berth ]; then echo "$SVC_PID"; else pgrep -P "$SVC_PID" -x berth; fi
}
# A check, then whatever containers it left (a failing one) removed, so the next starts clean.
chk() {
  if [ -n "${API_ONLY:-}" ] && ! printf '%s' "$1" | grep -Eq "$API_ONLY"; then return 0; fi
  eng_check "$@"
  for c in $(B container ls -aq 2>/dev/null); do B container rm -f "$c" >/dev/null 2>&1; done
}

check_ping_version_info() {
  local h v
  h=$(curl -sS -i --unix-socket "$SOCK" http://d/_ping) || return 1
  expect_match "ping" '^HTTP/1.1 200' "$h" || return 1
  expect_match "Api-Version header" 'Api-Version: 1\.44' "$h" || return 1
  expect_match "OSType header" '(?i)ostype: linux|Ostype: linux' "$h" || true
  v=$(docker version --format '{{.Server.APIVersion}} {{.Server.MinAPIVersion}} {{.Server.Os}}') || return 1
  expect_eq "docker version" "1.44 1.24 linux" "$v" || return 1
  v=$(docker info --format '{{.Images}} {{.OSType}} {{.LoggingDriver}}') || return 1
  expect_eq "docker info" "1 linux json-file" "$v"
}

check_run_logs_inspect_stop_rm() {
  local id st out
  id=$(dr -d --name web busybox sh -c 'echo hello; echo oops >&2; trap "exit 0" TERM; while :; do sleep 0.1; done') || return 1
  expect_match "run -d prints the id" '^[0-9a-f]{64}$' "$id" || return 1
  eng_wait_for 5 sh -c "docker logs web 2>&1 | grep -q oops"
  out=$(docker logs web 2>/dev/null)
  expect_eq "logs stdout" "hello" "$out" || return 1
  out=$(docker logs web 2>&1 >/dev/null)
  expect_eq "logs stderr" "oops" "$out" || return 1
  out=$(docker ps --format '{{.ID}} {{.Names}} {{.State}}')
  expect_eq "ps" "${id:0:12} web running" "$out" || return 1
  out=$(B container ls --format '{{.Names}}')
  expect_eq "berth container ls sees it" "web" "$out" || return 1
  st=$(docker inspect -f '{{.State.Status}} {{.State.Running}} {{.Name}} {{.Config.Image}}' web)
  expect_eq "inspect" "running true /web busybox" "$st" || return 1
  docker stop -t 5 web >/dev/null || return 1
  st=$(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' web)
  expect_eq "inspect after stop" "exited 0" "$st" || return 1
  out=$(docker stop web 2>&1) || return 1
  docker rm web >/dev/null || return 1
  out=$(docker inspect web 2>&1) && return 1
  expect_match "inspect of a removed container" 'No such (container|object): web' "$out" || return 1
  expect_eq "nothing left" "" "$(B container ls -aq)"
}

check_run_attached_exit_code() {
  local out rc
  out=$(dr --rm busybox sh -c 'echo out; echo err >&2; exit 3' 2>"$T/err"); rc=$?
  expect_eq "exit code" 3 "$rc" || return 1
  expect_eq "stdout" "out" "$out" || return 1
  expect_eq "stderr" "err" "$(cat "$T/err")" || return 1
  out=$(echo piped | dr -i --rm busybox sh -c 'cat; echo done')
  expect_eq "stdin through attach" "piped|done" "$(printf '%s' "$out" | tr '\n' '|')" || return 1
  eng_wait_for 5 sh -c "[ -z \"\$($BERTH --root $T/run --data-root $T/data container ls -aq)\" ]" || fail "--rm left a container"
}

check_exec() {
  local out rc
  dr -d --name ex busybox sleep 60 >/dev/null || return 1
  out=$(docker exec ex sh -c 'echo in; echo er >&2; exit 5' 2>"$T/err"); rc=$?
  expect_eq "exec exit code" 5 "$rc" || return 1
  expect_eq "exec stdout" "in" "$out" || return 1
  expect_eq "exec stderr" "er" "$(cat "$T/err")" || return 1
  out=$(echo feed | docker exec -i ex cat)
  expect_eq "exec -i" "feed" "$out" || return 1
  out=$(docker exec -e A=1 -w /tmp ex sh -c 'echo $A $(pwd)')
  expect_eq "exec env and workdir" "1 /tmp" "$out" || return 1
  out=$(docker exec ex /no/such/cmd 2>&1); rc=$?
  expect_eq "exec of a missing command: 127" 127 "$rc" || return 1
  expect_match "exec of a missing command: the reason" 'no/such/cmd' "$out" || return 1
  out=$(eng_pty 30 100 '' '' docker exec -t ex sh -c 'tty; stty size' | tr -d '\r')
  expect_match "exec -t gets a terminal" '^/dev/pts/[0-9]+' "$out" || return 1
  docker rm -f ex >/dev/null
}

check_bad_input() {
  local out
  out=$(curl -sS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' -d '{"Image": ' http://d/v1.44/containers/create -w ' %{http_code}' | tr -d '\n')
  expect_match "malformed body" '"message":.* 400$' "$out" || return 1
  out=$(curl -sS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' -d '{"Image": "busybox", "Cmd": 7}' http://d/v1.44/containers/create -w ' %{http_code}' | tr -d '\n')
  expect_match "wrong field type" 'Cmd.* 400$' "$out" || return 1
  head -c 9000000 /dev/zero | curl -sS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/json' --data-binary @- http://d/v1.44/containers/create -o /dev/null -w '%{http_code}' > "$T/code" 2>/dev/null
  expect_eq "huge body" 413 "$(cat "$T/code")" || return 1
  printf 'NOT HTTP\r\n\r\n' | timeout 5 curl -sS --unix-socket "$SOCK" http://d/_ping >/dev/null || return 1
  out=$(curl -sS --unix-socket "$SOCK" http://d/v1.44/containers/nope/json -w ' %{http_code}' | tr -d '\n')
  expect_match "missing container" 'No such container: nope.* 404$' "$out" || return 1
  out=$(curl -sS --unix-socket "$SOCK" http://d/v1.44/swarm -w ' %{http_code}' | tr -d '\n')
  expect_match "swarm" 'swarm.* 503$' "$out" || return 1
  expect_eq "no container made" "" "$(B container ls -aq)" || return 1
  kill -0 "$SVC_PID" || fail "the service died"
}

check_run_tty() {
  local out
  out=$(eng_pty 30 100 '' '' docker run --rm -t --network none busybox sh -c 'tty; stty size; exit 2' | tr -d '\r'); local rc=$?
  expect_match "run -t gets a terminal" '^/dev/pts/[0-9]+' "$out" || return 1
  expect_match "run -t window size" '30 100' "$out" || return 1
  out=$(eng_pty 30 100 '' 'echo typed-$((40+2))
exit 0
' docker run --rm -it --network none busybox sh | tr -d '\r')
  expect_match "run -it relays the terminal both ways" 'typed-42' "$out"
}

# start_registry [auth]: a docker-registry on a free 127.0.0.1 port (REG, REG_PID); with
# "auth", htpasswd basic auth for user "api" password "secret" (AREG, AREG_PID).
start_registry() {
  local port cfg i auth="" name=plain
  if [ "${1:-}" = auth ]; then
    name=auth
    htpasswd -Bbn api secret > "$T/htpasswd" || return 1
    auth=$(printf 'auth:\n  htpasswd:\n    realm: berth-api\n    path: %s\n' "$T/htpasswd")
  fi
  for i in 1 2 3 4 5; do
    port=$(eng_free_port) || return 1
    cfg=$T/registry-$name.yml
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:%s\n  secret: berth-api-test\n%s\n' "$T/registry-$name" "$port" "$auth" > "$cfg"
    docker-registry serve "$cfg" > "$T/registry-$name.log" 2>&1 &
    local pid=$!
    if eng_wait_for 10 sh -c "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$port/v2/ | grep -Eq '200|401'"; then
      if [ $name = auth ]; then AREG=127.0.0.1:$port AREG_PID=$pid; else REG=127.0.0.1:$port REG_PID=$pid; fi
      return 0
    fi
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  done
  return 1
}

check_pull_with_auth() {
  local out
  eng_busybox_archive "$T/auth.tar" "private/box:1" sh -c 'echo private' || return 1
  skopeo copy -q --dest-tls-verify=false --dest-creds api:secret "docker-archive:$T/auth.tar" "docker://$AREG/private/box:1" || fail "skopeo push failed"
  out=$(docker pull "$AREG/private/box:1" 2>&1) && { echo "$out"; fail "pulled without credentials"; }
  expect_match "refused without credentials" '(unauthorized|401|authentication|credentials)' "$out" || return 1
  out=$(echo wrong | docker login -u api --password-stdin "$AREG" 2>&1) && { echo "$out"; fail "login with a wrong password succeeded"; }
  expect_match "login refused" '401' "$out" || return 1
  out=$(echo secret | docker login -u api --password-stdin "$AREG" 2>&1) || { echo "$out"; fail "docker login failed"; }
  expect_match "docker login" 'Login Succeeded' "$out" || return 1
  # The CLI now sends X-Registry-Auth from its config.
  out=$(docker pull "$AREG/private/box:1" 2>&1); local rc=$?
  docker logout "$AREG" >/dev/null 2>&1
  [ $rc = 0 ] || { echo "$out"; fail "pull with X-Registry-Auth failed"; }
  expect_eq "run the private image" "private" "$(docker run --rm --network none "$AREG/private/box:1")" || return 1
  docker rmi "$AREG/private/box:1" >/dev/null
}

check_images_pull_tag_rmi() {
  local out id
  eng_busybox_archive "$T/pull.tar" "pulled/box:v1" sh -c 'echo from-registry' || return 1
  skopeo copy -q --dest-tls-verify=false "docker-archive:$T/pull.tar" "docker://$REG/pulled/box:v1" || fail "skopeo push failed"
  out=$(docker pull "$REG/pulled/box:v1" 2>&1) || { echo "$out"; return 1; }
  expect_match "pull output" "Downloaded newer image for $REG/pulled/box:v1" "$out" || return 1
  out=$(docker images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
  expect_eq "images" "$REG/pulled/box:v1 busybox:latest " "$out" || return 1
  out=$(docker run --rm --network none "$REG/pulled/box:v1")
  expect_eq "run the pulled image" "from-registry" "$out" || return 1
  docker tag "$REG/pulled/box:v1" mine:2 || return 1
  id=$(docker inspect -f '{{.Id}}' mine:2)
  expect_eq "tag points at the same image" "$(docker inspect -f '{{.Id}}' "$REG/pulled/box:v1")" "$id" || return 1
  docker rmi mine:2 >/dev/null || return 1
  out=$(docker rmi "$REG/pulled/box:v1") || return 1
  expect_match "rmi deletes" "Deleted: $id" "$out" || return 1
  out=$(docker image inspect "$REG/pulled/box:v1" 2>&1) && return 1
  expect_match "image gone" 'No such image' "$out" || return 1
  out=$(docker run --network none "$REG/nosuch/image:1" 2>&1) && return 1
  expect_match "run of an image the registry does not have" '(manifest unknown|not found)' "$out" || return 1
  expect_eq "nothing made" "" "$(B container ls -aq)"
}

# docker import through the API (fromSrc=-: the tar in the body), with -c and -m; then
# /distribution/{name}/json against the registry (digest and size checked against skopeo's
# raw manifest, the platform against the config), with X-Registry-Auth for the auth registry.
check_import_distribution() {
  local out id n0 raw want
  docker create --name imp-src busybox >/dev/null || return 1
  docker export imp-src > "$T/rootfs.tar" || return 1
  docker rm imp-src >/dev/null
  id=$(docker import -c 'CMD ["sh", "-c", "echo imported $X"]' -c 'ENV X=yes' -c 'WORKDIR /tmp' -m 'from a tar' "$T/rootfs.tar" imp/box:1) || return 1
  expect_match "import prints the id" '^sha256:[0-9a-f]{64}$' "$id" || return 1
  expect_eq "the image under its name" "$id" "$(docker inspect -f '{{.Id}}' imp/box:1)" || return 1
  expect_eq "run it (CMD and ENV from -c)" "imported yes" "$(docker run --rm --network none imp/box:1)" || return 1
  out=$(docker inspect -f '{{.Comment}}|{{.Config.WorkingDir}}|{{len .RootFS.Layers}}' imp/box:1)
  expect_eq "inspect: comment, workdir, one layer" "from a tar|/tmp|1" "$out" || return 1
  expect_match "history has the message" 'from a tar' "$(docker history --format '{{.Comment}}' imp/box:1)" || return 1
  out=$(gzip -c "$T/rootfs.tar" | docker import - imp/box:2) || return 1
  expect_eq "no -m: docker's comment" "Imported from -" "$(docker inspect -f '{{.Comment}}' imp/box:2)" || return 1
  expect_eq "a gzip tar from stdin: the same layer" \
    "$(docker inspect -f '{{.RootFS.Layers}}' imp/box:1)" "$(docker inspect -f '{{.RootFS.Layers}}' "$out")" || return 1
  n0=$(B image ls -q | wc -l)
  out=$(docker import -c 'FROM busybox' "$T/rootfs.tar" imp/bad:1 2>&1) && return 1
  expect_match "a change docker refuses" 'FROM' "$out" || return 1
  out=$(head -c 5000 /dev/urandom | docker import - imp/bad:2 2>&1) && return 1
  expect_match "not a tar" 'Error' "$out" || return 1
  expect_eq "nothing made by the bad imports" "$n0" "$(B image ls -q | wc -l)" || return 1
  [ -z "$(ls "$T/data/image/tmp" 2>/dev/null)" ] || fail "the bad imports left $(ls "$T/data/image/tmp")"
  docker rmi imp/box:1 imp/box:2 >/dev/null || return 1
  out=$(docker inspect imp/box:1 2>&1) && return 1
  expect_match "inspect of a removed name with a slash (the CLI asks for a plugin too)" 'No such object: imp/box:1' "$out" || return 1
  n0=$(B image ls -q | wc -l)
  # /distribution: what the registry holds, nothing pulled.
  eng_busybox_archive "$T/dist.tar" "dist/box:1" sh -c true || return 1
  skopeo copy -q --dest-tls-verify=false "docker-archive:$T/dist.tar" "docker://$REG/dist/box:1" || fail "skopeo push failed"
  skopeo inspect --tls-verify=false --raw "docker://$REG/dist/box:1" > "$T/dist.raw" || return 1
  want=$(python3 -c 'import hashlib, json, sys; b = open(sys.argv[1], "rb").read(); print(json.loads(b)["mediaType"], "sha256:" + hashlib.sha256(b).hexdigest(), len(b))' "$T/dist.raw")
  out=$(curl -sS --unix-socket "$SOCK" "http://d/v1.44/distribution/$REG/dist/box:1/json") || return 1
  raw=$(printf '%s' "$out" | python3 -c 'import json, sys; d = json.load(sys.stdin); e = d["Descriptor"]; print(e["mediaType"], e["digest"], e["size"]); print(json.dumps(d["Platforms"], sort_keys=True))') || { echo "$out"; return 1; }
  expect_eq "distribution: the descriptor" "$want" "$(printf '%s' "$raw" | head -1)" || return 1
  expect_eq "distribution: the platform from the config" '[{"architecture": "amd64", "os": "linux"}]' "$(printf '%s' "$raw" | tail -1)" || return 1
  expect_eq "nothing pulled" "$n0" "$(B image ls -q | wc -l)" || return 1
  out=$(curl -sS -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://d/v1.44/distribution/$REG/dist/nosuch:1/json")
  expect_eq "distribution of a missing image: 404" 404 "$out" || return 1
  if [ -n "${AREG:-}" ]; then
    skopeo copy -q --dest-tls-verify=false --dest-creds api:secret "docker-archive:$T/dist.tar" "docker://$AREG/dist/box:1" || fail "skopeo push failed"
    out=$(curl -sS -o /dev/null -w '%{http_code}' --unix-socket "$SOCK" "http://d/v1.44/distribution/$AREG/dist/box:1/json")
    expect_eq "distribution without credentials: 401" 401 "$out" || return 1
    local hdr
    hdr=$(printf '{"username":"api","password":"secret","serveraddress":"%s"}' "$AREG" | base64 -w0 | tr '+/' '-_')
    out=$(curl -sS --unix-socket "$SOCK" -H "X-Registry-Auth: $hdr" "http://d/v1.44/distribution/$AREG/dist/box:1/json")
    expect_match "distribution with X-Registry-Auth" "\"digest\": ?\"$(echo "$want" | cut -d' ' -f2)\"" "$out" || return 1
  fi
}

check_network_and_volume() {
  local sub out
  sub=$(eng_free_subnet 231) || return 1
  docker network create --subnet "$sub" apinet >/dev/null || return 1
  out=$(docker network ls --format '{{.Name}}' | sort | tr '\n' ' ')
  expect_match "network ls" 'apinet' "$out" || return 1
  docker volume create apivol >/dev/null || return 1
  expect_eq "volume ls" "apivol" "$(docker volume ls -q)" || return 1
  docker run -d --name srv --network apinet -v apivol:/data busybox sh -c 'echo saved > /data/f; httpd -f -p 8080 -h /var/www' >/dev/null || return 1
  out=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' srv)
  expect_match "container address in the subnet" "^${sub%.0/24}\." "$out" || return 1
  out=$(docker run --rm --network apinet busybox wget -qO- http://srv:8080/index.html)
  expect_eq "reach a container by name" "hello from busybox" "$out" || return 1
  out=$(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' apinet)
  expect_match "network inspect lists the container" 'srv' "$out" || return 1
  docker rm -f srv >/dev/null || return 1
  out=$(docker run --rm --network none -v apivol:/data busybox cat /data/f)
  expect_eq "volume keeps data" "saved" "$out" || return 1
  docker volume rm apivol >/dev/null || return 1
  docker network rm apinet >/dev/null || return 1
  out=$(docker volume inspect apivol 2>&1) && return 1
  out=$(docker network ls --format '{{.Name}}')
  printf '%s\n' "$out" | grep -qx apinet && fail "network still listed"
  return 0
}

check_concurrent_runs() {
  local i ids n
  for ((i = 0; i < API_N; i++)); do
    docker run -d --network none --label api-batch=1 busybox sleep 300 > "$T/run.$i" 2>&1 &
  done
  wait
  n=$(cat "$T"/run.* | grep -Ecx '[0-9a-f]{64}')
  expect_eq "ids printed" "$API_N" "$n" || { grep -hvx '[0-9a-f]\{64\}' "$T"/run.* | head -3; return 1; }
  n=$(docker ps -q --filter label=api-batch=1 | wc -l)
  expect_eq "running (docker ps)" "$API_N" "$n" || return 1
  n=$(B container ls -q --filter label=api-batch=1 | wc -l)
  expect_eq "running (berth container ls)" "$API_N" "$n" || return 1
  docker rm -f $(docker ps -aq --filter label=api-batch=1) >/dev/null || return 1
  expect_eq "all removed" "" "$(B container ls -aq)"
}

check_service_killed() {
  local id out
  id=$(docker run -d --network none busybox sh -c 'while :; do sleep 0.1; done') || return 1
  # A stream in flight (logs -f) when the service is killed.
  docker logs -f "$id" > /dev/null 2>&1 &
  sleep 0.3
  local old; old=$(svc_pid)
  kill -9 "$old" "$SVC_PID" 2>/dev/null; wait "$SVC_PID" 2>/dev/null
  out=$(B container ls --format '{{.ID}} {{.Status}}')
  expect_match "still running without the service" "^${id:0:12} Up" "$out" || return 1
  start_service || fail "restart of the service failed"
  [ -e "/run/berth/api.$old" ] && fail "the killed service's console directory was not removed"
  out=$(docker inspect -f '{{.State.Running}}' "$id")
  expect_eq "seen again through the new service" "true" "$out" || return 1
  docker rm -f "$id" >/dev/null || return 1
  # SIGTERM: the service exits and removes its socket.
  kill "$SVC_PID"
  eng_wait_for 5 sh -c "! kill -0 $SVC_PID" || fail "the service did not exit on SIGTERM"
  [ -e "$SOCK" ] && fail "socket left after SIGTERM"
  return 0
}

check_compose() {
  local d=$T/compose out port
  command -v docker-compose >/dev/null || fail "docker-compose missing (scripts/deps.sh test)"
  port=$(eng_free_port) || return 1
  mkdir -p "$d"
  cat > "$d/docker-compose.yml" <<YML
version: "3.7"
services:
  web:
    image: busybox
    command: sh -c 'echo web-up; echo compose-page > /data/index.html; httpd -f -p 8080 -h /data'
    ports: ["127.0.0.1:$port:8080"]
    volumes: ["data:/data"]
  client:
    image: busybox
    command: sleep 300
volumes:
  data: {}
YML
  (cd "$d" && docker-compose -p apiproj up -d) || return 1
  out=$(cd "$d" && docker-compose -p apiproj ps --services --filter status=running | sort | tr '\n' ' ')
  expect_eq "compose ps" "client web " "$out" || return 1
  eng_wait_for 10 sh -c "cd $d && docker-compose -p apiproj logs web | grep -q web-up" || fail "compose logs lack web's output"
  out=$(cd "$d" && docker-compose -p apiproj exec -T client wget -qO- http://web:8080/index.html)
  expect_eq "client reaches web by name (compose exec)" "compose-page" "$out" || return 1
  out=$(curl -sS "http://127.0.0.1:$port/index.html")
  expect_eq "published port" "compose-page" "$out" || return 1
  (cd "$d" && docker-compose -p apiproj down -v) || return 1
  expect_eq "down: no container left" "" "$(B container ls -aq)" || return 1
  expect_eq "down -v: no volume left" "" "$(B volume ls -q)" || return 1
  docker network ls --format '{{.Name}}' | grep -q apiproj && fail "down left the network"
  return 0
}

check_python_sdk() {
  local venv=$T/venv out
  python3 -m venv "$venv" >/dev/null || fail "python3 -m venv failed (python3-venv)"
  "$venv/bin/pip" install -q docker >/dev/null 2>&1 || fail "pip install docker failed"
  out=$("$venv/bin/python" - <<'PY'
import docker
c = docker.DockerClient(base_url="unix://" + __import__("os").environ["DOCKER_HOST"][len("unix://"):])
assert c.ping()
assert c.version()["ApiVersion"] == "1.44"
print(c.containers.run("busybox", ["echo", "sdk-run"], remove=True, network_mode="none").decode().strip())
ct = c.containers.run("busybox", ["sleep", "60"], detach=True, network_mode="none", name="sdkbox", labels={"k": "v"})
ct.reload()
assert ct.status == "running", ct.status
code, out = ct.exec_run(["sh", "-c", "echo exec-out; exit 4"])
print(code, out.decode().strip())
assert [x.name for x in c.containers.list(filters={"label": "k=v"})] == ["sdkbox"]
ct.stop(timeout=1)
ct.reload()
print(ct.status, ct.attrs["State"]["ExitCode"])
ct.remove()
print(len(c.images.list()), c.volumes.create("sdkvol").name)
c.volumes.get("sdkvol").remove()
PY
) || { echo "$out"; return 1; }
  expect_eq "python docker SDK" "sdk-run|4 exec-out|exited 137|1 sdkvol" "$(printf '%s' "$out" | tr '\n' '|')"
}

check_network_connect() {
  local sa sb out
  sa=$(eng_free_subnet 232) || return 1
  sb=$(eng_free_subnet 233) || return 1
  docker network create --subnet "$sa" apinet-a >/dev/null || return 1
  docker network create --subnet "$sb" apinet-b >/dev/null || return 1
  docker run -d --name cn-srv --network apinet-a busybox httpd -f -p 8080 -h /var/www >/dev/null || return 1
  docker run -d --name cn-cli --network apinet-b busybox sleep 300 >/dev/null || return 1
  docker exec cn-cli timeout 3 wget -qO- http://cn-srv:8080/index.html >/dev/null 2>&1 && fail "reached before connect"
  docker network connect --alias websrv apinet-b cn-srv || return 1
  out=$(docker exec cn-cli timeout 10 wget -qO- http://websrv:8080/index.html)
  expect_eq "reached by alias after docker network connect" "hello from busybox" "$out" || return 1
  out=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}' cn-srv)
  expect_match "inspect shows both networks" "apinet-a=${sa%.0/24}\.[0-9]+ apinet-b=${sb%.0/24}\.[0-9]+" "$out" || return 1
  out=$(docker exec cn-srv ip -o -4 addr show | awk '{print $2}' | sort | tr '\n' ' ')
  expect_eq "interfaces in the container" "eth0 eth1 lo " "$out" || return 1
  docker network disconnect apinet-b cn-srv || return 1
  docker exec cn-cli timeout 3 wget -qO- http://websrv:8080/index.html >/dev/null 2>&1 && fail "reached after disconnect"
  expect_eq "interface gone" "eth0 lo " "$(docker exec cn-srv ip -o -4 addr show | awk '{print $2}' | sort | tr '\n' ' ')" || return 1
  # The same through berth's command line.
  B network connect apinet-b cn-srv || return 1
  out=$(docker exec cn-cli timeout 10 wget -qO- http://cn-srv:8080/index.html)
  expect_eq "reached by name after berth network connect" "hello from busybox" "$out" || return 1
  B network disconnect apinet-b cn-srv || return 1
  out=$(B network disconnect apinet-b cn-srv 2>&1) && return 1
  expect_match "disconnect twice: one line" '^berth: .*not connected' "$out" || return 1
  out=$(docker network connect nosuchnet cn-srv 2>&1) && return 1
  expect_match "connect to a missing network" 'not found' "$out" || return 1
  docker rm -f cn-srv cn-cli >/dev/null || return 1
  docker network rm apinet-a apinet-b >/dev/null
}

# The first network (the one a container was created with) disconnected, as docker allows:
# running (the interface goes at once, the other network stays, a restart does not bring it
# back) and stopped (started with only its loopback), then joined again; API and berth CLI.
check_network_disconnect_first() {
  local sa sb out ifs port
  sa=$(eng_free_subnet 234) || return 1
  sb=$(eng_free_subnet 235) || return 1
  ifs() { docker exec "$1" ip -o -4 addr show | awk '{print $2}' | sort | tr '\n' ' '; }
  docker network create --subnet "$sa" apifirst-a >/dev/null || return 1
  docker network create --subnet "$sb" apifirst-b >/dev/null || return 1
  port=$(eng_free_port) || return 1
  docker run -d --name nf-srv --network apifirst-a -p "127.0.0.1:$port:8080" busybox httpd -f -p 8080 -h /var/www >/dev/null || return 1
  docker run -d --name nf-cli --network apifirst-b busybox sleep 300 >/dev/null || return 1
  docker network connect apifirst-b nf-srv || return 1
  eng_wait_for 5 curl -sf "http://127.0.0.1:$port/index.html" || fail "the published port does not answer"
  docker network disconnect apifirst-a nf-srv || return 1
  expect_eq "running: the first interface gone" "eth1 lo " "$(ifs nf-srv)" || return 1
  curl -sf -m 3 "http://127.0.0.1:$port/index.html" >/dev/null && fail "the published port still answers"
  expect_eq "the published port went with the network" "" "$(docker port nf-srv)" || return 1
  out=$(docker exec nf-cli timeout 10 wget -qO- http://nf-srv:8080/index.html)
  expect_eq "still reached on the other network" "hello from busybox" "$out" || return 1
  out=$(docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}{{.HostConfig.NetworkMode}}' nf-srv)
  expect_eq "inspect: the other network only, the mode kept" "apifirst-b apifirst-a" "$out" || return 1
  out=$(docker network inspect -f '{{range .Containers}}{{.Name}} {{end}}' apifirst-a)
  expect_eq "the first network lists no container" "" "$out" || return 1
  docker restart -t 1 nf-srv >/dev/null || return 1
  expect_eq "after a restart: the other network only" "eth0 lo " "$(ifs nf-srv)" || return 1
  out=$(docker exec nf-cli timeout 10 wget -qO- http://nf-srv:8080/index.html)
  expect_eq "reached after the restart" "hello from busybox" "$out" || return 1
  out=$(docker network disconnect apifirst-a nf-srv 2>&1) && return 1
  expect_match "disconnect twice" 'not connected' "$out" || return 1
  # A stopped container: it starts with only its loopback, then joins the network again.
  docker create --name nf-st --network apifirst-a busybox sleep 300 >/dev/null || return 1
  docker network disconnect apifirst-a nf-st || return 1
  docker start nf-st >/dev/null || return 1
  expect_eq "stopped, then started: loopback only" "lo " "$(ifs nf-st)" || return 1
  docker network connect apifirst-a nf-st || return 1
  expect_eq "joined again" "eth0 lo " "$(ifs nf-st)" || return 1
  out=$(docker exec nf-st ip route | grep -c '^default')
  expect_eq "the joined network has the default route" 1 "$out" || return 1
  B network disconnect apifirst-a nf-st || return 1
  expect_eq "berth network disconnect of the first network" "lo " "$(ifs nf-st)" || return 1
  docker rm -f nf-srv nf-cli nf-st >/dev/null || return 1
  docker network rm apifirst-a apifirst-b >/dev/null
}

check_service_options() {
  local s2=$T/opt/docker.sock p out
  B system service --host "unix://$s2" --timeout 2 --group root > "$T/opt.log" 2>&1 &
  p=$!
  eng_wait_for 10 test -S "$s2" || fail "no socket"
  expect_eq "socket mode and group" "660 root" "$(stat -c '%a %G' "$s2")" || return 1
  docker -H "unix://$s2" version >/dev/null || return 1
  eng_wait_for 8 sh -c "! kill -0 $p" || fail "--timeout 2 did not end the idle service"
  [ -e "$s2" ] && fail "socket left after the idle exit"
  ln -s "$T/elsewhere" "$T/opt/link.sock"
  out=$(B system service --host "unix://$T/opt/link.sock" 2>&1) && return 1
  expect_match "a symlink at the socket path is refused, in one line" '^berth: .*link.sock.*not a socket' "$out" || return 1
  [ -e "$T/elsewhere" ] && fail "a socket was made through the symlink"
  out=$(B system service --host tcp://127.0.0.1:2375 2>&1) && return 1
  expect_match "tcp without TLS refused" '^berth: .*tcp' "$out"
}

check_tls_tcp() {
  local d=$T/tls port p out ok tp
  mkdir -p "$d"
  mk_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
  mk_ca() {
    mk_key "$d/$1.key" && openssl req -x509 -new -key "$d/$1.key" -out "$d/$1.pem" -days 1 -subj "/CN=$1" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
  }
  # mk_cert NAME CA EXTENSIONS
  mk_cert() {
    mk_key "$d/$1.key" && openssl req -new -key "$d/$1.key" -out "$d/$1.csr" -subj "/CN=$1" 2>/dev/null &&
      printf '%b' "$3" > "$d/$1.ext" &&
      openssl x509 -req -in "$d/$1.csr" -CA "$d/$2.pem" -CAkey "$d/$2.key" -CAcreateserial -days 1 \
        -extfile "$d/$1.ext" -out "$d/$1.pem" 2>/dev/null
  }
  mk_ca ca && mk_ca rogue-ca || fail "openssl: no CA" || return 1
  mk_cert server ca 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' || fail "openssl: no server cert" || return 1
  mk_cert client ca 'extendedKeyUsage=clientAuth\n' && mk_cert rogue rogue-ca 'extendedKeyUsage=clientAuth\n' ||
    fail "openssl: no client certs" || return 1
  port=$(eng_free_port) || return 1
  # Refused with one line: tcp without --tlsverify, without the files, a key not the cert's.
  out=$(B system service --host "tcp://127.0.0.1:$port" --tlscacert "$d/ca.pem" --tlscert "$d/server.pem" --tlskey "$d/server.key" 2>&1) && return 1
  expect_match "tcp without --tlsverify refused" '^berth: .*--tlsverify' "$out" || return 1
  expect_eq "  in one line" 1 "$(printf '%s\n' "$out" | wc -l)" || return 1
  out=$(B system service --host "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$d/ca.pem" 2>&1) && return 1
  expect_match "tcp without --tlscert/--tlskey refused" '^berth: .*--tlscert' "$out" || return 1
  out=$(B system service --host "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/server.pem" --tlskey "$d/client.key" 2>&1) && return 1
  expect_match "a key that is not the certificate's refused" "^berth: .*client.key" "$out" || return 1
  expect_eq "  in one line" 1 "$(printf '%s\n' "$out" | wc -l)" || return 1
  B system service --host "tcp://127.0.0.1:$port" --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/server.pem" \
    --tlskey "$d/server.key" > "$T/tls.log" 2>&1 &
  p=$!
  eng_wait_for 10 sh -c "ss -Htln 'sport = :$port' | grep -q ." || { kill "$p"; wait "$p"; cat "$T/tls.log"; return 1; }
  dt() { docker --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/$1.pem" --tlskey "$d/$1.key" -H "tcp://127.0.0.1:$port" "${@:2}"; }
  ok=0
  while :; do
    out=$(DOCKER_HOST= dt client version --format '{{.Server.APIVersion}}' 2>&1)
    expect_eq "docker --tlsverify version over tcp" "1.44" "$out" || break
    out=$(DOCKER_HOST= dt client run --rm --network none busybox true 2>&1)
    expect_eq "docker --tlsverify run --rm busybox true" "" "$out" || break
    out=$(DOCKER_HOST= dt client run --rm --network none busybox sh -c 'echo hi; echo err >&2; exit 3' 2>&1)
    expect_eq "run: both streams and the exit code over TLS" "hi|err|3" "$(printf '%s|%s' "$out" "$?" | tr '\n' '|')" || break
    out=$(echo hello-stdin | DOCKER_HOST= timeout 20 docker --tlsverify --tlscacert "$d/ca.pem" --tlscert "$d/client.pem" \
      --tlskey "$d/client.key" -H "tcp://127.0.0.1:$port" run -i --rm --network none busybox cat 2>&1)
    expect_eq "run -i: stdin and its end through TLS" "hello-stdin" "$out" || break
    out=$(DOCKER_HOST= docker --tlsverify --tlscacert "$d/ca.pem" -H "tcp://127.0.0.1:$port" version --format '{{.Server.APIVersion}}' 2>&1) &&
      { fail "a client without a certificate was served: $out"; break; }
    expect_match "a client without a certificate refused at the handshake" 'tls: .*certificate' "$out" || break
    out=$(DOCKER_HOST= dt rogue version --format '{{.Server.APIVersion}}' 2>&1) &&
      { fail "a client with a certificate of another CA was served: $out"; break; }
    expect_match "a certificate of another CA refused at the handshake" 'tls: ' "$out" || break
    out=$(curl -sS --cacert "$d/ca.pem" "https://127.0.0.1:$port/_ping" 2>&1) && { fail "curl without a certificate served: $out"; break; }
    out=$(curl -sS --cacert "$d/ca.pem" --cert "$d/rogue.pem" --key "$d/rogue.key" "https://127.0.0.1:$port/_ping" 2>&1) &&
      { fail "curl with a certificate of another CA served: $out"; break; }
    expect_match "curl with a certificate of another CA refused" '(unknown ca|alert)' "$out" || break
    out=$(curl -sS --cacert "$d/ca.pem" --cert "$d/client.pem" --key "$d/client.key" "https://127.0.0.1:$port/_ping" 2>&1)
    expect_eq "curl with the client certificate" "OK" "$out" || break
    tp=$p
    [ "$(cat /proc/$p/comm 2>/dev/null)" = berth ] || tp=$(pgrep -P "$p" -x berth)
    eng_wait_for 5 sh -c "[ \$(ls /proc/$tp/task | wc -l) = 1 ]" || { fail "the TLS service keeps $(ls /proc/$tp/task | wc -l) threads after the clients left"; break; }
    ok=1
    break
  done
  kill "$p"; wait "$p"
  [ "$ok" = 1 ]
}

check_more_container_ops() {
  local id out
  id=$(dr -d --name ops busybox sh -c 'trap "exit 7" TERM; i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.2; done') || return 1
  eng_wait_for 5 sh -c "docker logs ops | grep -q 'line 3'"
  out=$(docker logs --tail 1 ops | wc -l)
  expect_eq "logs --tail 1" 1 "$out" || return 1
  out=$(docker logs -t --tail 1 ops)
  expect_match "logs -t" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z line [0-9]+$' "$out" || return 1
  out=$(timeout 2 docker logs -f --since 0s ops | head -2 | wc -l)
  expect_eq "logs -f streams new lines" 2 "$out" || return 1
  out=$(docker top ops)
  expect_match "top lists the processes" 'sleep' "$out" || return 1
  out=$(docker stats --no-stream --format '{{.Name}} {{.MemUsage}} {{.PIDs}}' ops)
  expect_match "stats --no-stream" '^ops [0-9.]+[KMG]i?B / [0-9.]+[KMG]i?B [1-9][0-9]*$' "$out" || return 1
  out=$(timeout 3 docker attach --no-stdin ops | head -1)
  expect_match "attach to a running container" '^line [0-9]+$' "$out" || return 1
  docker restart -t 1 ops >/dev/null || return 1
  expect_eq "restart" "running" "$(docker inspect -f '{{.State.Status}}' ops)" || return 1
  docker kill -s TERM ops >/dev/null || return 1
  out=$(docker wait ops)
  expect_eq "wait after kill -s TERM (trapped: exit 7)" 7 "$out" || return 1
  out=$(docker kill ops 2>&1) && return 1
  expect_match "kill of a stopped container" 'is not running' "$out" || return 1
  docker start ops >/dev/null || return 1
  out=$(docker start ops 2>&1) || return 1
  # A wait whose client goes away ends with it (no thread left behind).
  timeout 1 docker wait ops >/dev/null
  eng_wait_for 5 sh -c "[ \$(ls /proc/$(svc_pid)/task | wc -l) = 1 ]" || fail "the service keeps $(ls /proc/$(svc_pid)/task | wc -l) threads after the clients left"
  # An attach to a silent container whose client leaves ends too.
  dr -d --name quiet busybox sleep 300 >/dev/null || return 1
  timeout -s KILL 1 docker attach --no-stdin quiet >/dev/null
  eng_wait_for 5 sh -c "[ \$(ls /proc/$(svc_pid)/task | wc -l) = 1 ]" || fail "a left attach keeps $(ls /proc/$(svc_pid)/task | wc -l) threads"
  # A logs -f of the silent container whose client leaves ends at once (not at the next line,
  # which never comes): the service is back to one thread within 2 s.
  docker logs -f quiet >/dev/null &
  local lp=$!
  eng_wait_for 5 sh -c "[ \$(ls /proc/$(svc_pid)/task | wc -l) = 2 ]" || fail "no thread serves the logs -f"
  kill -9 $lp; wait $lp 2>/dev/null
  eng_wait_for 2 sh -c "[ \$(ls /proc/$(svc_pid)/task | wc -l) = 1 ]" || fail "a left logs -f keeps $(ls /proc/$(svc_pid)/task | wc -l) threads"
  # berth's own logs -f ends when the reader of its stdout leaves.
  timeout 5 sh -c "'$BERTH' --root '$T/run' --data-root '$T/data' container logs -f quiet | true"
  expect_eq "berth container logs -f ends with its reader" 0 "$?" || return 1
  docker rm -f ops quiet >/dev/null
}

check_pause_rename_update_events_df() {
  local t0 t1 out id cid
  t0=$(date +%s)
  id=$(dr -d --name pz busybox sleep 60) || return 1
  docker pause pz >/dev/null || return 1
  expect_eq "paused" "paused true" "$(docker inspect -f '{{.State.Status}} {{.State.Paused}}' pz)" || return 1
  out=$(docker pause pz 2>&1) && return 1
  expect_match "pause twice" 'already paused' "$out" || return 1
  docker unpause pz >/dev/null || return 1
  expect_eq "unpaused" "running false" "$(docker inspect -f '{{.State.Status}} {{.State.Paused}}' pz)" || return 1
  docker rename pz pz2 || return 1
  expect_eq "renamed (berth CLI sees it)" "pz2" "$(B container ls --format '{{.Names}}')" || return 1
  docker update --memory 64m --memory-swap 128m --cpu-shares 512 --restart on-failure:2 pz2 >/dev/null || return 1
  out=$(docker inspect -f '{{.HostConfig.Memory}} {{.HostConfig.CpuShares}} {{.HostConfig.RestartPolicy.Name}}' pz2)
  expect_eq "update" "67108864 512 on-failure" "$out" || return 1
  out=$(docker update --restart bogus pz2 2>&1) && return 1
  expect_match "update with a bad restart policy" 'restart' "$out" || return 1
  t1=$(($(date +%s) + 1))
  sleep 1
  out=$(timeout 10 docker events --since "$t0" --until "$t1" --filter type=container --filter container="$id" --format '{{.Action}}' | tr '\n' ' ')
  expect_match "events --since/--until/--filter" 'create .*start .*pause unpause rename update' "$out" || return 1
  out=$(timeout 10 docker events --since "$t0" --until "$t1" --filter event=rename --format '{{.Actor.Attributes.oldName}} {{.Actor.Attributes.name}}')
  expect_eq "events: rename attributes" "/pz pz2" "$out" || return 1
  cid=$(docker commit pz2 dfimg:1) || return 1
  out=$(docker system df --format '{{.Type}} {{.TotalCount}} {{.Active}}' | tr '\n' '|')
  expect_eq "system df: counts as berth's own" "$(B system df --format '{{.Type}} {{.TotalCount}} {{.Active}}' | tr '\n' '|')" "$out" || return 1
  expect_match "system df: one running container" 'Containers 1 1' "$out" || return 1
  # Created: the container's creation time, each image's as /images/json has it.
  out=$(curl -sS --unix-socket "$SOCK" http://d/system/df | python3 -c 'import json,sys; d=json.load(sys.stdin); print(*[c["Created"] for c in d["Containers"]]); print(*sorted("%s %s" % (i["Id"], i["Created"]) for i in d["Images"]), sep="\n")') || return 1
  local cc now ci
  cc=$(printf '%s\n' "$out" | head -1) now=$(date +%s)
  [ "$cc" -ge "$t0" ] && [ "$cc" -le "$now" ] || fail "system df: container Created $cc not within $t0..$now" || return 1
  expect_eq "system df: images' Created as /images/json" \
    "$(curl -sS --unix-socket "$SOCK" http://d/images/json | python3 -c 'import json,sys; print(*sorted("%s %s" % (i["Id"], i["Created"]) for i in json.load(sys.stdin)), sep="\n")')" \
    "$(printf '%s\n' "$out" | tail -n +2)" || return 1
  ci=$(printf '%s\n' "$out" | grep "^$cid " | cut -d' ' -f2)
  [ -n "$ci" ] && [ "$ci" -ge "$t0" ] && [ "$ci" -le "$now" ] || fail "system df: committed image Created '$ci' not within $t0..$now" || return 1
  docker rmi dfimg:1 >/dev/null
  docker rm -f pz2 >/dev/null
  # An endless `docker events` whose client leaves ends with it while nothing happens.
  timeout 1 docker events >/dev/null
  eng_wait_for 5 sh -c "[ \$(ls /proc/$(svc_pid)/task | wc -l) = 1 ]" || fail "a left events stream keeps $(ls /proc/$(svc_pid)/task | wc -l) threads"
}

check_diff_export_cp_commit() {
  local out id
  dr -d --name fs busybox sh -c 'echo made > /made; rm /bin/true; mkdir -p /data; sleep 60' >/dev/null || return 1
  eng_wait_for 5 sh -c "docker exec fs test -f /made" || return 1
  out=$(docker diff fs | sort | tr '\n' '|')
  expect_match "diff: added file" 'A /made\|' "$out" || return 1
  expect_match "diff: deleted file" 'D /bin/true\|' "$out" || return 1
  expect_match "diff: changed dir" 'C /bin\|' "$out" || return 1
  docker export fs > "$T/export.tar" || return 1
  out=$(tar -tf "$T/export.tar" | grep -Ec '^(\./)?(made|bin/sh)$')
  expect_eq "export: the merged filesystem" 2 "$out" || return 1
  tar -xOf "$T/export.tar" made > "$T/made" 2>/dev/null || tar -xOf "$T/export.tar" ./made > "$T/made" || return 1
  expect_eq "export: file content" made "$(cat "$T/made")" || return 1
  # cp out: a file, then a directory; cp in: a file and a directory (a large one streamed).
  docker cp fs:/made "$T/made-out" || return 1
  expect_eq "cp out a file" made "$(cat "$T/made-out")" || return 1
  docker cp fs:/etc "$T/etc-out" || return 1
  [ -f "$T/etc-out/passwd" ] || fail "cp out a directory: no passwd"
  out=$(docker cp fs:/no/such "$T/x" 2>&1) && return 1
  expect_match "cp out of a missing path (a 404: docker 28's text, 20.10's)" '[Cc]ould not find the file|No such container:path' "$out" || return 1
  mkdir -p "$T/in/sub" && echo hi > "$T/in/sub/f" && head -c 12000000 /dev/urandom > "$T/in/big"
  docker cp "$T/in" fs:/data/ || return 1
  expect_eq "cp in a directory" hi "$(docker exec fs cat /data/in/sub/f)" || return 1
  expect_eq "cp in: a 12 MB file (over the 8 MiB body cap) whole" \
    "$(md5sum < "$T/in/big")" "$(docker exec fs sh -c 'md5sum < /data/in/big')" || return 1
  expect_eq "cp in: owned by root" "0 0" "$(docker exec fs stat -c '%u %g' /data/in/sub/f)" || return 1
  docker cp "$T/made-out" fs:/renamed || return 1
  expect_eq "cp in a file under a new name" made "$(docker exec fs cat /renamed)" || return 1
  id=$(docker commit -c 'ENV FROM_COMMIT=1' -m msg fs committed/fs:v1) || return 1
  expect_match "commit prints the id" '^sha256:[0-9a-f]{64}$' "$id" || return 1
  expect_eq "berth sees the committed image" "$id" "sha256:$(B image inspect --format '{{.Id}}' committed/fs:v1 | sed 's/^sha256://')" || return 1
  out=$(dr --rm committed/fs:v1 sh -c 'cat /made /renamed; echo $FROM_COMMIT')
  expect_eq "run the committed image" "made|made|1" "$(printf '%s' "$out" | tr '\n' '|')" || return 1
  docker rm -f fs >/dev/null
  docker rmi committed/fs:v1 >/dev/null
  docker image prune -f >/dev/null
}

check_push_save_load_history() {
  local out id
  docker tag busybox "$REG/pushed/box:p1" || return 1
  out=$(docker push "$REG/pushed/box:p1" 2>&1) || { echo "$out"; return 1; }
  expect_match "push output" 'p1: digest: sha256:[0-9a-f]{64} size: [0-9]+' "$out" || return 1
  out=$(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$REG/pushed/box:p1") || return 1
  expect_match "the registry has it (skopeo)" '^sha256:' "$out" || return 1
  id=$(docker inspect -f '{{.Id}}' busybox)
  docker tag busybox saved/two:1 || return 1
  docker save busybox saved/two:1 > "$T/saved.tar" || return 1
  out=$(tar -xOf "$T/saved.tar" manifest.json | python3 -c 'import json,sys; print(" ".join(sorted(t for m in json.load(sys.stdin) for t in m["RepoTags"])))')
  expect_eq "save: one archive, both names" "busybox:latest saved/two:1" "$out" || return 1
  docker rmi saved/two:1 "$REG/pushed/box:p1" >/dev/null || return 1
  out=$(docker load < "$T/saved.tar") || return 1
  expect_match "load output" 'Loaded image: saved/two:1' "$out" || return 1
  expect_eq "loaded image id" "$id" "$(docker inspect -f '{{.Id}}' saved/two:1)" || return 1
  # An archive over the 8 MiB body cap: an image with a 12 MB layer, saved, removed, loaded.
  local c sum
  head -c 12000000 /dev/urandom > "$T/blob"
  sum=$(md5sum < "$T/blob")
  c=$(docker create --network none busybox true) || return 1
  docker cp "$T/blob" "$c:/blob" || return 1
  docker commit "$c" big/one:1 >/dev/null || return 1
  docker rm "$c" >/dev/null
  docker save big/one:1 > "$T/big.tar" || return 1
  docker rmi big/one:1 >/dev/null || return 1
  docker load -i "$T/big.tar" >/dev/null || return 1
  expect_eq "load of a $(stat -c %s "$T/big.tar")-byte archive" "$sum" "$(dr --rm big/one:1 sh -c 'md5sum < /blob')" || return 1
  docker rmi big/one:1 >/dev/null
  docker image prune -f >/dev/null
  out=$(docker history --format '{{.CreatedBy}}|{{.Size}}' busybox | head -1)
  expect_eq "history as berth's" "$(B image history --format '{{.CreatedBy}}|{{.Size}}' busybox | head -1)" "$out" || return 1
  docker rmi saved/two:1 >/dev/null
}

check_image_filters() {
  local ctx=$T/fctx out old
  mkdir -p "$ctx"
  printf 'FROM busybox\nLABEL stage=one\n' > "$ctx/Dockerfile"
  sleep 1
  old=$(DOCKER_BUILDKIT=0 docker build -q --network none -t flt/lab:1 "$ctx") || return 1
  docker tag busybox flt/plain:x && docker tag busybox other/thing:y || return 1
  ls_f() { docker images "$@" --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' '; }
  expect_eq "reference=flt/*" "flt/lab:1 flt/plain:x " "$(ls_f --filter 'reference=flt/*')" || return 1
  expect_eq "reference=busybox (name only)" "busybox:latest " "$(ls_f --filter reference=busybox)" || return 1
  expect_eq "reference=*:y" "other/thing:y " "$(ls_f --filter 'reference=*/*:y')" || return 1
  expect_eq "label=stage" "flt/lab:1 " "$(ls_f --filter label=stage)" || return 1
  expect_eq "label=stage=one" "flt/lab:1 " "$(ls_f --filter label=stage=one)" || return 1
  expect_eq "label=stage=two" "" "$(ls_f --filter label=stage=two)" || return 1
  expect_eq "since=busybox" "flt/lab:1 " "$(ls_f --filter since=busybox)" || return 1
  expect_eq "before=flt/lab:1" "busybox:latest flt/plain:x other/thing:y " "$(ls_f --filter before=flt/lab:1)" || return 1
  # Rebuilt under the same tag: the first image is left dangling.
  printf 'FROM busybox\nLABEL stage=two\n' > "$ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q --network none -t flt/lab:1 "$ctx" >/dev/null || return 1
  expect_eq "dangling=true" "${old#sha256:}" "$(docker images --no-trunc -q --filter dangling=true | sed 's/^sha256://')" || return 1
  out=$(docker images --no-trunc -q --filter dangling=false | tr '\n' ' ')
  case $out in *"$old"*) fail "dangling=false lists the dangling image"; return 1;; esac
  expect_eq "dangling=false with label=stage=two" "flt/lab:1 " "$(ls_f --filter dangling=false --filter label=stage=two)" || return 1
  out=$(docker images --filter bogus=1 2>&1) && return 1
  expect_match "an unknown filter refused" "invalid filter 'bogus'" "$out" || return 1
  out=$(docker images --filter dangling=maybe 2>&1) && return 1
  expect_match "a bad dangling value refused" "invalid filter 'dangling=maybe'" "$out" || return 1
  out=$(docker images --filter since=no-such-image 2>&1) && return 1
  expect_match "since= an unknown image" 'No such image' "$out" || return 1
  docker rmi flt/lab:1 flt/plain:x other/thing:y "$old" >/dev/null
}

check_build() {
  local out id ctx=$T/ctx
  mkdir -p "$ctx/sub"
  head -c 9000000 /dev/urandom > "$ctx/big"
  printf 'FROM busybox AS base\nARG GREETING=none\nRUN echo "$GREETING" > /greeting; echo "said $GREETING"\nCOPY big /big\nFROM base AS final\nRUN echo final > /stage\n' > "$ctx/sub/Build.df"
  out=$(DOCKER_BUILDKIT=0 docker build --network none -f "$ctx/sub/Build.df" --build-arg GREETING=hello --target base \
    --label built.by=api -t built/one:1 "$ctx" 2>&1) || { echo "$out"; return 1; }
  expect_match "build output" 'Successfully tagged built/one:1' "$out" || return 1
  expect_match "build output: a RUN step's own output" 'said hello' "$out" || return 1
  out=$(dr --rm built/one:1 sh -c 'cat /greeting; test -e /stage && echo final-stage-built; md5sum < /big')
  expect_eq "build: the build arg, the target, a 9 MB context file" "hello|$(md5sum < "$ctx/big")" "$(printf '%s' "$out" | tr '\n' '|')" || return 1
  expect_eq "build: the label" api "$(docker inspect -f '{{index .Config.Labels "built.by"}}' built/one:1)" || return 1
  id=$(DOCKER_BUILDKIT=0 docker build -q --network none -f "$ctx/sub/Build.df" -t built/two:1 "$ctx") || return 1
  expect_eq "build -q prints the id" "$(docker inspect -f '{{.Id}}' built/two:1)" "$id" || return 1
  expect_eq "berth sees the built image" "$id" "$(B image inspect --format '{{.Id}}' built/two:1)" || return 1
  printf 'FROM busybox\nRUN exit 3\n' > "$ctx/Dockerfile"
  out=$(DOCKER_BUILDKIT=0 docker build --network none "$ctx" 2>&1) && return 1
  expect_match "a failing RUN" 'exit|3' "$out" || return 1
  ln -s /etc/passwd "$ctx/sub/link"
  out=$(tar -C "$ctx" -c Dockerfile sub | curl -sS --unix-socket "$SOCK" -X POST -H 'Content-Type: application/x-tar' \
    --data-binary @- 'http://d/v1.44/build?dockerfile=sub/link&networkmode=none')
  expect_match "a Dockerfile symlinked out of the context" 'must be a file inside the build context' "$out" || return 1
  out=$(tar -C "$ctx" -c Dockerfile | curl -sS --unix-socket "$SOCK" -X POST --data-binary @- 'http://d/v1.44/build?dockerfile=../../../etc/passwd')
  expect_match "a Dockerfile path out of the context" 'must be a file inside the build context' "$out" || return 1
  docker rmi built/one:1 built/two:1 >/dev/null
  B builder prune >/dev/null 2>&1
  docker image prune -f >/dev/null
  expect_eq "prune: nothing unnamed left" "busybox" "$(docker images --format '{{.Repository}}')"
}

# BuildKit is not served: /_ping says Builder-Version 1, so docker CLI 28 without buildx builds
# with the classic builder (its own deprecation notice); DOCKER_BUILDKIT=1 stops in the CLI;
# /session and a version=2 build are refused with a line that says so.
check_buildkit_fallback() {
  local ctx=$T/bkctx out
  mkdir -p "$ctx" && printf 'FROM busybox\nRUN echo bk-fallback\n' > "$ctx/Dockerfile"
  out=$(curl -sS -I --unix-socket "$SOCK" http://d/_ping | tr -d '\r')
  expect_match "_ping: Builder-Version 1 (classic)" '^Builder-Version: 1$' "$out" || return 1
  out=$(env -u DOCKER_BUILDKIT docker build --network none -t bk/one:1 "$ctx" 2>&1) || { echo "$out"; return 1; }
  expect_match "docker build: the classic builder" 'Successfully tagged bk/one:1' "$out" || return 1
  expect_match "docker build: the RUN step's output" 'bk-fallback' "$out" || return 1
  expect_match "docker build: the CLI's notice for the classic builder" 'legacy builder is deprecated' "$out" || return 1
  out=$(DOCKER_BUILDKIT=1 docker build --network none "$ctx" 2>&1) && { echo "$out"; fail "a BuildKit build succeeded"; }
  expect_match "DOCKER_BUILDKIT=1: the CLI's own message" 'BuildKit is enabled but the buildx component is missing' "$out" || return 1
  out=$(curl -sS -X POST --unix-socket "$SOCK" -H 'Upgrade: h2c' -H 'Connection: Upgrade' -w ' %{http_code}' http://d/v1.44/session | tr -d '\n')
  expect_match "/session: 501 naming BuildKit" 'BuildKit sessions.* 501$' "$out" || return 1
  out=$(tar -C "$ctx" -c Dockerfile | curl -sS --unix-socket "$SOCK" -X POST --data-binary @- -w ' %{http_code}' 'http://d/v1.44/build?version=2&session=x' | tr -d '\n')
  expect_match "a version=2 build: 400 naming BuildKit" 'BuildKit builds.* 400$' "$out" || return 1
  docker rmi bk/one:1 >/dev/null
  # A service that has run a build still stops on SIGTERM (the builder leaves its handlers).
  local s3=$T/bk-svc.sock p
  "$BERTH" --root "$T/run" --data-root "$T/data" system service --host "unix://$s3" > "$T/bk-svc.log" 2>&1 &
  p=$!
  eng_wait_for 10 test -S "$s3" || return 1
  DOCKER_HOST=unix://$s3 DOCKER_BUILDKIT=0 docker build -q --network none "$ctx" >/dev/null || { kill -9 $p; return 1; }
  kill -TERM $p
  eng_wait_for 5 sh -c "! kill -0 $p" || { kill -9 $p; fail "the service ignores SIGTERM after a build"; }
  wait $p 2>/dev/null
  [ ! -e "$s3" ] || fail "the socket is left after SIGTERM"
  docker image prune -f >/dev/null
}

check_ordinary_user_socket() {
  local u=$T/user pid out
  command -v setpriv >/dev/null || { echo "setpriv missing"; return 1; }
  chmod o+x "$T"
  mkdir -p "$u/run" "$u/home" && chown nobody:nogroup "$u/run" "$u/home" && chmod 700 "$u/run"
  setpriv --reuid nobody --regid nogroup --clear-groups env -i PATH=/usr/bin:/bin HOME="$u/home" \
    XDG_RUNTIME_DIR="$u/run" "$BERTH" system service --timeout 3 > "$u/log" 2>&1 &
  pid=$!
  eng_wait_for 10 test -S "$u/run/berth/docker.sock" || { cat "$u/log"; return 1; }
  expect_eq "socket owned by the user" "nobody 660" "$(stat -c '%U %a' "$u/run/berth/docker.sock")" || return 1
  out=$(DOCKER_HOST="unix://$u/run/berth/docker.sock" docker info --format '{{.Images}} {{.Containers}}') || return 1
  expect_eq "the user's own (empty) store" "0 0" "$out" || return 1
  wait "$pid"
  [ -f "$u/run/berth-engine/keeper.pid" ] && kill "$(cat "$u/run/berth-engine/keeper.pid")" 2>/dev/null
  [ ! -e "$u/run/berth/docker.sock" ] || fail "the socket is left after the idle exit"
}

chk "ping, version, info" check_ping_version_info
chk "run -d, logs, ps, inspect, stop, rm" check_run_logs_inspect_stop_rm
chk "run attached: exit code, streams, -i, --rm" check_run_attached_exit_code
chk "logs --tail/-t/-f, top, stats, attach, restart, kill -s, wait, start twice, a wait and an attach whose clients leave" check_more_container_ops
chk "pause, unpause, rename, update; events --since/--until/--filter; system df" check_pause_rename_update_events_df
chk "diff, export, cp both ways (a 12 MB upload), commit" check_diff_export_cp_commit
chk "images ls filters: reference, label, since/before, dangling; bad filters" check_image_filters
chk "build (classic): -f, --build-arg, --target, --label, -t, -q, a 9 MB context, failures" check_build
chk "BuildKit not served: docker build falls back to the classic builder, DOCKER_BUILDKIT=1, /session and version=2 refused" check_buildkit_fallback
chk "ordinary user: default socket \$XDG_RUNTIME_DIR/berth/docker.sock, the user's store" check_ordinary_user_socket
chk "exec: code, streams, -i, env, workdir, -t" check_exec
chk "bad input: 400/413/404, service alive, nothing made" check_bad_input
chk "service: socket 0660 + group, --timeout idle exit, symlink and tcp refused" check_service_options
chk "run -t and -it: raw stream through a terminal" check_run_tty
chk "tcp with TLS: --tlsverify required, docker with a client certificate (version, run), clients without one refused" check_tls_tcp
if start_registry; then
  chk "images: pull from a registry on 127.0.0.1, ls, run, tag, rmi" check_images_pull_tag_rmi
  chk "images: push (the registry has it), save of two names | load, history" check_push_save_load_history
else
  echo "not ok - images: the docker-registry did not start"; ENG_FAIL=$((ENG_FAIL + 1))
fi
if start_registry auth; then
  chk "registry with basic auth: pull refused, docker login (wrong, right), pull with X-Registry-Auth" check_pull_with_auth
  [ -n "${REG:-}" ] && chk "import (fromSrc=-: -c, -m, gzip from stdin, bad input), distribution (descriptor, platforms, X-Registry-Auth)" check_import_distribution
else
  echo "not ok - pull with auth: the docker-registry did not start"; ENG_FAIL=$((ENG_FAIL + 1))
fi
chk "network create, reach by name, volume, rm" check_network_and_volume
chk "network connect/disconnect of a running container (API and berth CLI)" check_network_connect
chk "network disconnect of the first network: running, restarted, stopped, joined again" check_network_disconnect_first
chk "$API_N concurrent docker run -d, none lost" check_concurrent_runs
chk "docker-compose: up -d, ps, logs, exec by name, published port, down -v" check_compose
chk "python docker SDK: run, exec, list, stop, volumes" check_python_sdk
chk "service killed mid-stream: containers keep running" check_service_killed
eng_summary
