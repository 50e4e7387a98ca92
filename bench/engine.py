#!/usr/bin/env python3
"""Engine-layer benchmark of berth against its peers, interleaved in one run.

Sections (--sections, default all that can run on this machine):
  unpack   unpack the multi-layer Debian image into a rootfs: berth vs `umoci unpack`
  pull     pull that image from a local Debian `docker-registry` on 127.0.0.1:
           berth (download + verify + unpack into its store) vs `skopeo copy` to a directory
           (download + verify only)

The Debian image is made once per machine: a `debootstrap --variant=minbase` rootfs cached in
/var/cache/berth-tests/debian-rootfs.tar (shared with the integration tests), layered by this
script into an OCI image layout (layer 1: the rootfs; layer 2: whiteouts, an opaque dir,
hardlinks, a symlink). Python 3 standard library only. Must run as root. See bench/README.md.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "HOME": "/root"}
CACHE = "/var/cache/berth-tests"
DEBIAN_TAR = CACHE + "/debian-rootfs.tar"
MIRROR = os.environ.get("DEBIAN_MIRROR", "http://deb.debian.org/debian")


def die(msg):
    print("bench: " + msg, file=sys.stderr)
    sys.exit(1)


def run(argv, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV, **kw)
    if r.returncode != 0:
        die("%s failed (exit %d): %s" % (" ".join(argv), r.returncode, (r.stderr or r.stdout).strip()[-400:]))
    return r.stdout


def timed(argv):
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        die("%s failed (exit %d): %s" % (" ".join(argv), r.returncode, (r.stderr or r.stdout).strip()[-400:]))
    return dt


# ------------------------------------------------------------------ the Debian image

def debian_rootfs_tar():
    if os.path.exists(DEBIAN_TAR):
        return DEBIAN_TAR
    if not shutil.which("debootstrap"):
        die("debootstrap is not installed (apt-get install -y debootstrap)")
    os.makedirs(CACHE, exist_ok=True)
    d = tempfile.mkdtemp(prefix="berth-debootstrap-", dir="/var/tmp")
    print("bench: debootstrap --variant=minbase bookworm (once per machine) ...", flush=True)
    try:
        run(["debootstrap", "--variant=minbase", "bookworm", d, MIRROR])
        tmp = DEBIAN_TAR + ".tmp"
        run(["tar", "--numeric-owner", "--xattrs", "-C", d, "-cf", tmp, "."])
        os.rename(tmp, DEBIAN_TAR)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return DEBIAN_TAR


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def add_blob(layout, data_path=None, data=None):
    """Store a blob in the layout; returns (digest, size)."""
    if data is not None:
        hexd = hashlib.sha256(data).hexdigest()
        dst = os.path.join(layout, "blobs", "sha256", hexd)
        with open(dst, "wb") as f:
            f.write(data)
        return "sha256:" + hexd, len(data)
    hexd = sha256_file(data_path)
    dst = os.path.join(layout, "blobs", "sha256", hexd)
    os.replace(data_path, dst)
    return "sha256:" + hexd, os.path.getsize(dst)


def second_layer_tar(path):
    """Whiteouts, an opaque directory, hardlinks and a symlink on top of the Debian rootfs."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as t:
        def add(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link="", uid=0, gid=0):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.uid, ti.gid, ti.mtime = kind, mode, uid, gid, 1700000000
            ti.linkname = link
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            t.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        add("etc/", tarfile.DIRTYPE, mode=0o755)
        add("etc/.wh.issue.net")                 # whiteout of a file
        add("usr/share/", tarfile.DIRTYPE, mode=0o755)
        add("usr/share/.wh.info")                # whiteout of a directory
        add("var/log/", tarfile.DIRTYPE, mode=0o755)
        add("var/log/.wh..wh..opq")              # opaque: the lower var/log is hidden
        add("var/log/berth.log", data=b"new layer\n")
        add("opt/", tarfile.DIRTYPE, mode=0o755)
        add("opt/data", data=b"x" * 100000)
        add("opt/data-hardlink", tarfile.LNKTYPE, link="opt/data")
        add("opt/data-symlink", tarfile.SYMTYPE, link="data", mode=0o777)
        add("opt/suid", data=b"#!/bin/sh\n", mode=0o4755)
        add("opt/user", data=b"u\n", uid=1000, gid=1000)


def debian_layout(work):
    """An OCI image layout `work/debian` with tag `bench`, made from the cached rootfs."""
    layout = os.path.join(work, "debian")
    os.makedirs(os.path.join(layout, "blobs", "sha256"))
    with open(os.path.join(layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    layers, diff_ids = [], []
    l2 = os.path.join(work, "layer2.tar")
    second_layer_tar(l2)
    raw_bytes = 0
    for src in (debian_rootfs_tar(), l2):
        diff_ids.append("sha256:" + sha256_file(src))
        raw_bytes += os.path.getsize(src)
        gz = os.path.join(work, "layer.tar.gz")
        with open(src, "rb") as fi, gzip.open(gz, "wb", compresslevel=6) as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
        dg, size = add_blob(layout, data_path=gz)
        layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": dg, "size": size})
    config = {
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["bash"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    cdg, csize = add_blob(layout, data=json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdg, "size": csize},
                "layers": layers}
    mdg, msize = add_blob(layout, data=json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdg, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": "bench",
                        "io.containerd.image.name": "docker.io/library/debian-bench:latest"}}]}
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)
    return layout, raw_bytes, sum(l["size"] for l in layers)


# ------------------------------------------------------------------ registry

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Registry:
    def __init__(self, work):
        self.dir = os.path.join(work, "registry")
        os.makedirs(self.dir)
        self.port = free_port()
        cfg = os.path.join(self.dir, "config.yml")
        with open(cfg, "w") as f:
            f.write("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/data\n"
                    "http:\n  addr: 127.0.0.1:%d\n" % (self.dir, self.port))
        self.proc = subprocess.Popen(["docker-registry", "serve", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "log"), "w"), env=ENV)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        die("docker-registry did not start (see %s/log)" % self.dir)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# ------------------------------------------------------------------ sections

def stat_line(name, xs, mb):
    med = statistics.median(xs)
    return med, "  %-28s median %8.1f ms  (min %7.1f, max %7.1f)  %7.1f MB/s" % (
        name, med * 1000, min(xs) * 1000, max(xs) * 1000, mb / med)


def umount_tree(path):
    """Unmount anything berth left mounted under path (there should be nothing)."""
    subprocess.run(["umount", "-R", path], capture_output=True)


def section_unpack(berth, work, layout, raw_mb, iters):
    data = os.path.join(work, "data-unpack")
    run([berth, "--data-root", data, "image", "load", "-q", "-i", layout])
    ref = "debian-bench"
    res = {"berth": [], "umoci": []}
    for i in range(iters):
        for who in (("berth", "umoci") if i % 2 == 0 else ("umoci", "berth")):
            dst = os.path.join(work, "unpack-%s-%d" % (who, i))
            if who == "berth":
                res[who].append(timed([berth, "--data-root", data, "image", "unpack", ref, dst]))
            else:
                res[who].append(timed(["umoci", "unpack", "--image", layout + ":bench", dst]))
            umount_tree(dst)
            shutil.rmtree(dst, ignore_errors=True)
    print("unpack of the Debian image (2 layers, %.1f MB uncompressed), %d iterations:" % (raw_mb, iters))
    mb, lb = stat_line("berth image unpack", res["berth"], raw_mb)
    mu, lu = stat_line("umoci unpack", res["umoci"], raw_mb)
    print(lb)
    print(lu)
    print("  berth / umoci = %.2fx  (berth is %.1fx faster; target: at least 2x)" % (mb / mu, mu / mb))
    return {"berth_ms": mb * 1000, "umoci_ms": mu * 1000, "ratio": mb / mu}


def section_pull(berth, work, layout, gz_mb, iters):
    reg = Registry(work)
    try:
        ref = "127.0.0.1:%d/bench/debian:v1" % reg.port
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:bench" % layout, "docker://" + ref])
        res = {"berth": [], "skopeo": []}
        for i in range(iters):
            for who in (("berth", "skopeo") if i % 2 == 0 else ("skopeo", "berth")):
                dst = os.path.join(work, "pull-%s-%d" % (who, i))
                if who == "berth":
                    res[who].append(timed([berth, "--data-root", dst, "image", "pull", "-q", ref]))
                else:
                    res[who].append(timed(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                           "docker://" + ref, "dir:" + dst]))
                shutil.rmtree(dst, ignore_errors=True)
        print("pull from docker-registry on 127.0.0.1 (%.1f MB compressed), %d iterations:" % (gz_mb, iters))
        mb, lb = stat_line("berth image pull (+unpack)", res["berth"], gz_mb)
        ms, ls = stat_line("skopeo copy to dir:", res["skopeo"], gz_mb)
        print(lb)
        print(ls)
        print("  berth / skopeo = %.2fx  (berth also unpacks; target: no slower than skopeo)" % (mb / ms))
        return {"berth_ms": mb * 1000, "skopeo_ms": ms * 1000, "ratio": mb / ms}
    finally:
        reg.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", default=os.environ.get("BERTH", "target/x86_64-unknown-linux-gnu/release/berth"))
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--sections", default="unpack,pull")
    ap.add_argument("--json", help="write the medians to this file")
    a = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root")
    berth = os.path.abspath(a.berth)
    if not os.access(berth, os.X_OK):
        die("no berth binary at %s (cargo build --release)" % berth)
    for tool in ("umoci", "skopeo", "docker-registry"):
        if not shutil.which(tool, path=ENV["PATH"]):
            die("%s is not installed (scripts/deps.sh bench)" % tool)
    # On tmpfs, as the runtime bench: the disk writeback of other jobs on this shared host is
    # noise for every tool. There the store's syncfs (durability of snapshots) costs nothing;
    # BENCH_TMP=/var/tmp measures on disk, where it does.
    work = tempfile.mkdtemp(prefix="berth-engine-bench-", dir=os.environ.get("BENCH_TMP", "/dev/shm"))
    out = {}
    try:
        layout, raw, gz = debian_layout(work)
        print("engine bench: %s, %d cpus, load %.2f" % (berth, os.cpu_count(), os.getloadavg()[0]))
        for s in [x.strip() for x in a.sections.split(",") if x.strip()]:
            if s == "unpack":
                out[s] = section_unpack(berth, work, layout, raw / 1e6, a.iterations)
            elif s == "pull":
                out[s] = section_pull(berth, work, layout, gz / 1e6, a.iterations)
            else:
                die("unknown section %r" % s)
    finally:
        umount_tree(work)
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
