# Fixtures shared by every engine script (sourced by lib.sh and lib-ctr.sh, bash):
#   eng_busybox_rootfs DIR                a busybox rootfs from Debian's busybox-static
#   eng_busybox_tar OUT                   that rootfs as a plain tar (podman/docker import)
#   eng_busybox_archive OUT REF [CMD...]  a `docker save` archive of it (docker/podman load,
#                                         ctr images import)
#   eng_pty ROWS COLS PROMPT INPUT ARGV...  ARGV on a fresh pseudo-terminal (pty-run.py)

# A busybox rootfs: /bin/busybox (Debian's busybox-static) with every applet linked in /bin,
# /etc/passwd, /etc/group, /tmp (1777), empty /proc /sys /dev /root, /var/www/index.html.
eng_busybox_rootfs() {
  local dir=$1 a
  [ -x /bin/busybox ] || { echo "/bin/busybox missing: apt-get install busybox-static" >&2; return 1; }
  if ! python3 -c '
import struct, sys
f = open("/bin/busybox", "rb"); h = f.read(64)
phoff, = struct.unpack_from("<Q", h, 32); phentsize, phnum = struct.unpack_from("<HH", h, 54)
f.seek(phoff); ph = f.read(phentsize * phnum)
sys.exit(any(struct.unpack_from("<I", ph, i * phentsize)[0] == 3 for i in range(phnum)))'; then
    echo "/bin/busybox is dynamically linked: apt-get install busybox-static" >&2; return 1
  fi
  mkdir -p "$dir"/{bin,etc,proc,sys,dev,root,tmp,var/www} || return 1
  chmod 1777 "$dir/tmp"
  cp /bin/busybox "$dir/bin/busybox" || return 1
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$dir/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$dir/etc/group"
  echo "hello from busybox" > "$dir/var/www/index.html"
}

eng_busybox_tar() {
  local out=$1 dir
  dir=$(mktemp -d "${ENG_TMP:-/tmp}/rootfs.XXXXXX") || return 1
  eng_busybox_rootfs "$dir" && tar -C "$dir" --numeric-owner --owner=0 --group=0 -cf "$out" .
  local rc=$?
  rm -rf "$dir"
  return $rc
}

# A `docker save` archive (manifest.json, config, one layer) of the busybox rootfs, tagged REF,
# with CMD (default sh): `docker load`, `podman load` and `ctr images import` all take it.
eng_busybox_archive() {
  local out=$1 ref=$2 layer; shift 2
  layer=$(mktemp "${ENG_TMP:-/tmp}/layer.XXXXXX") || return 1
  eng_busybox_tar "$layer" || { rm -f "$layer"; return 1; }
  python3 - "$out" "$ref" "$layer" "$@" <<'PY'
import hashlib, io, json, sys, tarfile
out, ref, layer, cmd = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:] or ["sh"]
data = open(layer, "rb").read()
diff = hashlib.sha256(data).hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux",
    "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": cmd},
    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]},
    "history": [{"created_by": "berth engine tests: Debian busybox-static"}]}).encode()
cid = hashlib.sha256(cfg).hexdigest()
name, tag = ref.rsplit(":", 1) if ":" in ref.rsplit("/", 1)[-1] else (ref, "latest")
with tarfile.open(out, "w") as t:
    def add(path, blob):
        i = tarfile.TarInfo(path); i.size = len(blob); i.mode = 0o644; t.addfile(i, io.BytesIO(blob))
    add(diff + "/layer.tar", data)
    add(cid + ".json", cfg)
    add("manifest.json", json.dumps([{"Config": cid + ".json", "RepoTags": [name + ":" + tag],
                                       "Layers": [diff + "/layer.tar"]}]).encode())
    add("repositories", json.dumps({name: {tag: diff}}).encode())
PY
  local rc=$?
  rm -f "$layer"
  return $rc
}

# eng_pty ROWS COLS PROMPT INPUT ARGV...: ARGV on a fresh pseudo-terminal (see pty-run.py).
eng_pty() { python3 "${BASH_SOURCE[0]%/*}/pty-run.py" "$@"; }
