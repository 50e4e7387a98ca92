#!/bin/bash
# `make demo`: an image made from Debian's busybox-static (through `berth image import`), a
# web server run from it with a published port, a page fetched from the host, then removed.
# No registry needed. Usage: scripts/demo.sh BERTH   (DEMO_PORT picks the host port; default 8080)
set -euo pipefail
berth=${1:?berth binary}
port=${DEMO_PORT:-8080}
while [ -n "$(ss -Htln "sport = :$port")" ]; do port=$((port + 1)); done
work=$(mktemp -d /tmp/berth-demo.XXXXXX)
name=berth-demo-$$
cleanup() {
  "$berth" container rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

rootfs=$work/rootfs
mkdir -p "$rootfs"/{bin,etc,www,tmp}
cp /bin/busybox "$rootfs/bin/busybox"
for a in $("$rootfs/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
echo 'root:x:0:' > "$rootfs/etc/group"
cat > "$rootfs/www/index.html" <<'HTML'
<h1>hello from berth</h1>
HTML

echo "== berth image import: busybox-static rootfs -> image busybox-web:demo"
"$berth" image import -c 'CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]' -c 'EXPOSE 80/tcp' "$rootfs" busybox-web:demo
"$berth" image ls busybox-web 2>/dev/null || "$berth" image ls
echo
echo "== berth container run -d --name $name -p $port:80 busybox-web:demo"
"$berth" container run -d --name "$name" -p "$port:80" busybox-web:demo
"$berth" container ls
echo
echo "== GET http://127.0.0.1:$port/ from the host"
page=""
for _ in $(seq 50); do
  page=$(busybox wget -qO- "http://127.0.0.1:$port/" 2>/dev/null) && break
  sleep 0.1
done
[ -n "$page" ] || { echo "demo: no answer on 127.0.0.1:$port" >&2; "$berth" container logs "$name" >&2; exit 1; }
echo "$page"
echo
echo "== berth container logs $name"
"$berth" container logs "$name"
echo
echo "== berth container rm -f $name"
"$berth" container rm -f "$name"
echo "demo: ok (the image busybox-web:demo stays in the store: berth image rm busybox-web:demo)"
