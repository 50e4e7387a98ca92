#!/bin/bash
# Makes an OCI bundle around Debian's static busybox: DIR/rootfs and DIR/config.json
# (from `berth spec`, with process.args set to ARGS and no terminal).
# Usage: scripts/busybox-bundle.sh BERTH DIR [ARG...]
set -euo pipefail
berth=${1:?berth binary}; dir=${2:?bundle dir}; shift 2
[ $# -gt 0 ] || set -- sh
rm -rf "$dir"; mkdir -p "$dir/rootfs"/{bin,proc,sys,dev,etc,tmp,root}
cp /bin/busybox "$dir/rootfs/bin/busybox"
for a in $("$dir/rootfs/bin/busybox" --list); do
  [ "$a" = busybox ] || ln -sf busybox "$dir/rootfs/bin/$a"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$dir/rootfs/etc/passwd"
echo 'root:x:0:' > "$dir/rootfs/etc/group"
"$berth" spec -b "$dir"
args=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "$@")
python3 - "$dir/config.json" "$args" <<'PY'
import json, sys
p, args = sys.argv[1], json.loads(sys.argv[2])
c = json.load(open(p))
c["process"]["args"] = args
c["process"]["terminal"] = False
json.dump(c, open(p, "w"), indent=2)
PY
