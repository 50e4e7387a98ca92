#!/usr/bin/env python3
"""Engine-layer benchmark of berth against its peers, interleaved in one run.

Sections (--sections, default all):
  unpack      unpack the multi-layer Debian image into a rootfs: berth vs `umoci unpack`
  pull        pull that image from a local Debian `docker-registry` on 127.0.0.1, two comparisons:
              berth (download + verify + unpack into its store) vs `skopeo copy` to an OCI layout
              + `umoci unpack` of it (the same work), and berth's whole pull vs `skopeo copy` to a
              directory alone (download + verify only: the target is berth no slower than that)
  containers  `container run --rm busybox true` with the default bridge network and with
              --network none: berth vs podman 4.3 driving runc, crun and berth; berth's network
              layer alone (attach + detach); the network cost, berth vs podman, and podman
              --runtime berth vs runc and crun
  dualstack   dual-stack (IPv4 + IPv6) network set-up + teardown per container: `container run
              --rm` on a user network made with --ipv6 (name resolution on) minus --network none,
              berth vs podman 4.3 (netavark + aardvark-dns, the same kind of network), ratio
  push        push that image, and the Debian image with gcc the build tests use (debootstrap
              minbase + gcc, libc6-dev: one ~150 MB gzip layer), to a local docker-registry: berth
              `image push` (from its store) vs `skopeo copy` from the OCI layout; each iteration
              on a fresh registry (no blob there, nothing to mount from) with a fresh berth data
              root, the order alternating
  push-plain  the same push of the image stored with plain-tar layers (as `container commit` and
              `image build` store them): both tools gzip each layer on the way
  rss         memory of berth's shim vs podman's conmon per running container
  build       `berth image build` vs `buildah bud --layers` (runc, overlay storage; both with
              --network host) of one
              multi-stage Dockerfile of ~20 cheap steps over a context of 2,000 small files and
              one 50 MB file: a cold build (--no-cache), a rebuild with nothing changed, a
              rebuild after one source file changed; and the cost of one `RUN true` step
  rootless    `container run --rm busybox true` as an ordinary user the bench makes (subordinate
              ranges it writes and removes, XDG_RUNTIME_DIR /run/user/UID), default networks: berth (user namespace, overlayfs,
              slirp4netns) vs rootless `podman run --rm` (podman 4.3 with runc and its default
              rootless network, slirp4netns), interleaved; the target is berth at most 0.5x

The Debian image is made once per machine: a `debootstrap --variant=minbase` rootfs cached in
/var/cache/berth-tests/debian-rootfs.tar (shared with the integration tests), layered by this
script into an OCI image layout (layer 1: the rootfs; layer 2: whiteouts, an opaque dir,
hardlinks, a symlink). The busybox image is made from the host's busybox-static. Python 3
standard library only. Must run as root. See bench/README.md.
"""

import argparse
import gzip
import hashlib
import io
import ipaddress
import json
import os
import random
import resource
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
    return timed_cpu(argv)[0]


def timed_cpu(argv):
    """(wall seconds, CPU seconds user+sys of the command and its children)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    dt = time.perf_counter() - t
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        die("%s failed (exit %d): %s" % (" ".join(argv), r.returncode, (r.stderr or r.stdout).strip()[-400:]))
    return dt, (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)


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


# The Debian compiler image, shared with the integration tests (integration/common/images.rs,
# debian_gcc_layout): a debootstrap'd bookworm minbase with these packages, one gzip layer in an
# OCI layout under CACHE keyed by the package list, built once per machine under a flock.
GCC_INCLUDE = ["gcc", "libc6-dev"]
GCC_TAG = "gcc"
GCC_NAME = "localhost/berth-test/debian-gcc:bookworm"


def debian_gcc_layout():
    import fcntl
    key = hashlib.sha256(("bookworm minbase " + ",".join(GCC_INCLUDE)).encode()).hexdigest()[:12]
    out = os.path.join(CACHE, "debian-gcc-%s.oci" % key)
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, "debian-gcc.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(os.path.join(out, "index.json")):
            return out
        if not shutil.which("debootstrap"):
            die("debootstrap is not installed (apt-get install -y debootstrap)")
        build = os.path.join(CACHE, "build-gcc.%d" % os.getpid())
        shutil.rmtree(build, ignore_errors=True)
        root, lay = os.path.join(build, "root"), os.path.join(build, "layout")
        os.makedirs(os.path.join(lay, "blobs", "sha256"))
        os.makedirs(os.path.join(CACHE, "debs"), exist_ok=True)
        print("bench: debootstrap --variant=minbase --include=%s bookworm (once per machine) ..."
              % ",".join(GCC_INCLUDE), flush=True)
        try:
            run(["debootstrap", "--variant=minbase", "--include=" + ",".join(GCC_INCLUDE),
                 "--cache-dir=" + os.path.join(CACHE, "debs"), "bookworm", root, MIRROR])
            tar = os.path.join(build, "rootfs.tar")
            names = sorted(os.listdir(root))
            run(["tar", "--numeric-owner", "--sort=name", "--xattrs", "--xattrs-include=*", "-C", root,
                 "-cf", tar, "--"] + names)
            shutil.rmtree(root)
            diff = "sha256:" + sha256_file(tar)
            gz = os.path.join(build, "rootfs.tar.gz")
            with open(gz, "wb") as f:
                subprocess.run(["gzip", "-n", "-c", "-6", tar], stdout=f, check=True)
            os.unlink(tar)
            with open(os.path.join(lay, "oci-layout"), "w") as f:
                f.write('{"imageLayoutVersion":"1.0.0"}')
            ldg, lsize = add_blob(lay, data_path=gz)
            config = {"created": "2024-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
                      "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                 "Cmd": ["bash"], "WorkingDir": "/", "Labels": {}},
                      "rootfs": {"type": "layers", "diff_ids": [diff]},
                      "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "berth-itest layer " + diff}]}
            cdg, csize = add_blob(lay, data=json.dumps(config).encode())
            manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdg, "size": csize},
                        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ldg, "size": lsize}]}
            mdg, msize = add_blob(lay, data=json.dumps(manifest).encode())
            index = {"schemaVersion": 2, "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdg, "size": msize,
                "annotations": {"org.opencontainers.image.ref.name": GCC_TAG, "io.containerd.image.name": GCC_NAME}}]}
            with open(os.path.join(lay, "index.json"), "w") as f:
                json.dump(index, f)
            shutil.rmtree(out, ignore_errors=True)
            os.rename(lay, out)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return out


def layout_gz_bytes(layout, tag):
    """Bytes of the layers of the image tagged `tag` in an OCI layout."""
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    m = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
    with open(os.path.join(layout, "blobs", "sha256", m["digest"].split(":", 1)[1])) as f:
        return sum(l["size"] for l in json.load(f)["layers"])


# ------------------------------------------------------------------ registry

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Registry:
    def __init__(self, work, name="registry"):
        self.dir = os.path.join(work, name)
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


def section_unpack(berth, work, layout, raw_mb, iters, baseline=None):
    data = os.path.join(work, "data-unpack")
    run([berth, "--data-root", data, "image", "load", "-q", "-i", layout])
    ref = "debian-bench"
    who_all = ("berth", "umoci") + (("baseline",) if baseline else ())
    res = {k: [] for k in who_all}
    for i in range(iters):
        k = i % len(who_all)
        for who in who_all[k:] + who_all[:k]:
            dst = os.path.join(work, "unpack-%s-%d" % (who, i))
            if who in ("berth", "baseline"):
                res[who].append(timed([berth if who == "berth" else baseline, "--data-root", data, "image", "unpack", ref, dst]))
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
    out = {"berth_ms": mb * 1000, "umoci_ms": mu * 1000, "ratio": mb / mu}
    if baseline:
        mbl, lbl = stat_line("baseline image unpack", res["baseline"], raw_mb)
        print(lbl)
        print("  berth / baseline = %.2fx" % (mb / mbl))
        out["baseline_ms"] = mbl * 1000
    return out


def section_pull(berth, work, layout, gz_mb, raw_mb, iters, baseline=None):
    """Three pulls per iteration, interleaved (the order rotates):
    berth         `image pull`: download, verify, unpack into its store (ready to run)
    skopeo        `skopeo copy` to dir: (download and verify only)
    skopeo+umoci  `skopeo copy` to an OCI layout, then `umoci unpack` of it (download, verify,
                  unpack: the like-for-like peer of berth's pull)
    Wall time and CPU time (user+sys of the tool; the registry's own CPU is not counted) are
    both shown: on a loaded host the wall time follows the CPU time more than the overlap."""
    reg = Registry(work)
    try:
        ref = "127.0.0.1:%d/bench/debian:v1" % reg.port
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "oci:%s:bench" % layout, "docker://" + ref])
        keys = ("berth", "skopeo", "skopeo_oci", "umoci", "skopeo_umoci") + (("baseline",) if baseline else ())
        res = {k: [] for k in keys}
        cpu = {k: [] for k in keys}
        who_all = ("berth", "skopeo", "skopeo_umoci") + (("baseline",) if baseline else ())
        for i in range(iters):
            k = i % len(who_all)
            for who in who_all[k:] + who_all[:k]:
                dst = os.path.join(work, "pull-%s-%d" % (who, i))
                if who in ("berth", "baseline"):
                    t, c = timed_cpu([berth if who == "berth" else baseline, "--data-root", dst, "image", "pull", "-q", ref])
                elif who == "skopeo":
                    t, c = timed_cpu(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                      "docker://" + ref, "dir:" + dst])
                else:
                    t1, c1 = timed_cpu(["skopeo", "copy", "--quiet", "--src-tls-verify=false",
                                        "docker://" + ref, "oci:%s:bench" % (dst + "-oci")])
                    t2, c2 = timed_cpu(["umoci", "unpack", "--image", dst + "-oci:bench", dst])
                    res["skopeo_oci"].append(t1)
                    cpu["skopeo_oci"].append(c1)
                    res["umoci"].append(t2)
                    cpu["umoci"].append(c2)
                    t, c = t1 + t2, c1 + c2
                    shutil.rmtree(dst + "-oci", ignore_errors=True)
                res[who].append(t)
                cpu[who].append(c)
                umount_tree(dst)
                shutil.rmtree(dst, ignore_errors=True)
        med = {k: statistics.median(res[k]) for k in keys}
        cmed = {k: statistics.median(cpu[k]) for k in keys}

        def line(name, k, note=""):
            xs = res[k]
            return "  %-28s median %8.1f ms  (min %7.1f, max %7.1f)  cpu %7.1f ms%s" % (
                name, med[k] * 1000, min(xs) * 1000, max(xs) * 1000, cmed[k] * 1000, note)

        print("pull from docker-registry on 127.0.0.1 (%.1f MB compressed, %.1f MB unpacked), %d iterations:"
              % (gz_mb, raw_mb, iters))
        print(" download + verify + unpack (ready to run), like for like:")
        print(line("berth image pull", "berth"))
        print(line("skopeo copy + umoci unpack", "skopeo_umoci"))
        print(line("  of which skopeo copy oci:", "skopeo_oci"))
        print(line("  of which umoci unpack", "umoci"))
        print("  berth / (skopeo + umoci) = %.2fx wall (berth %.1fx faster), %.2fx cpu"
              % (med["berth"] / med["skopeo_umoci"], med["skopeo_umoci"] / med["berth"],
                 cmed["berth"] / cmed["skopeo_umoci"]))
        print(" berth's whole pull against skopeo's download + verify alone (the README target):")
        print(line("berth image pull", "berth"))
        print(line("skopeo copy to dir:", "skopeo"))
        print("  berth / skopeo = %.2fx wall, %.2fx cpu  (target: no slower than skopeo, <= 1.00x wall: %s)"
              % (med["berth"] / med["skopeo"], cmed["berth"] / cmed["skopeo"],
                 "met" if med["berth"] <= med["skopeo"] else "not met"))
        if baseline:
            print(" the baseline build (%s):" % baseline)
            print(line("baseline image pull", "baseline"))
            print("  berth / baseline = %.2fx wall, %.2fx cpu;  baseline / skopeo = %.2fx wall"
                  % (med["berth"] / med["baseline"], cmed["berth"] / cmed["baseline"], med["baseline"] / med["skopeo"]))
        out = {k + "_ms": med[k] * 1000 for k in keys}
        out.update({k + "_cpu_ms": cmed[k] * 1000 for k in keys})
        out.update({"ratio": med["berth"] / med["skopeo"], "ratio_full": med["berth"] / med["skopeo_umoci"]})
        return out
    finally:
        reg.stop()


def plain_layout(work, layout):
    """The same image with its layers stored as plain tars (what `container commit` and
    `image build` make, or a `docker save` archive holds): `work/debian-plain`, tag `bench`."""
    plain = os.path.join(work, "debian-plain")
    os.makedirs(os.path.join(plain, "blobs", "sha256"))
    shutil.copy(os.path.join(layout, "oci-layout"), plain)
    index = json.load(open(os.path.join(layout, "index.json")))
    mdesc = index["manifests"][0]
    manifest = json.load(open(os.path.join(layout, "blobs", "sha256", mdesc["digest"][7:])))
    shutil.copy(os.path.join(layout, "blobs", "sha256", manifest["config"]["digest"][7:]),
                os.path.join(plain, "blobs", "sha256"))
    raw = 0
    for l in manifest["layers"]:
        tmp = os.path.join(work, "plain-layer.tar")
        with gzip.open(os.path.join(layout, "blobs", "sha256", l["digest"][7:]), "rb") as fi, open(tmp, "wb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
        dg, size = add_blob(plain, data_path=tmp)
        l.update({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": dg, "size": size})
        raw += size
    mdg, msize = add_blob(plain, data=json.dumps(manifest).encode())
    mdesc.update({"digest": mdg, "size": msize})
    with open(os.path.join(plain, "index.json"), "w") as f:
        json.dump(index, f)
    return plain, raw


def section_push(berth, work, layout, gz_mb, iters, what="compressed", mb_label="compressed",
                 tag="bench", name="debian-bench", title=None):
    """berth `image push` of an image loaded from `layout` (tag, name) vs `skopeo copy oci:LAYOUT docker://...`:
    the same blobs (gzip layers as stored) to a registry that has none of them. A fresh
    registry per iteration keeps both tools from mounting or skipping anything (skopeo's blob
    info cache knows blob locations per registry host:port); berth gets a fresh data root
    (loaded untimed) so it knows no other repository either."""
    res = {"berth": [], "skopeo": []}
    cpu = {"berth": [], "skopeo": []}
    sent = {}
    for i in range(iters):
        reg = Registry(work, "registry-push-%s-%d" % (what, i))
        try:
            host = "127.0.0.1:%d" % reg.port
            data = os.path.join(work, "data-push-%s-%d" % (what, i))
            run([berth, "--data-root", data, "image", "load", "-q", "-i", layout])
            order = ("berth", "skopeo") if i % 2 == 0 else ("skopeo", "berth")
            for who in order:
                if who == "berth":
                    ref = "%s/bench/berth:v1" % host
                    run([berth, "--data-root", data, "image", "tag", name, ref])
                    t, c = timed_cpu([berth, "--data-root", data, "image", "push", "-q", ref])
                else:
                    t, c = timed_cpu(["skopeo", "copy", "--quiet", "--dest-tls-verify=false",
                                      "oci:%s:%s" % (layout, tag), "docker://%s/bench/skopeo:v1" % host])
                res[who].append(t)
                cpu[who].append(c)
            if i == 0:
                # What each tool sent for the layers (both compress plain layers for a registry).
                for who in ("berth", "skopeo"):
                    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                                          "docker://%s/bench/%s:v1" % (host, who)],
                                         stdout=subprocess.PIPE, check=True, env=ENV).stdout
                    sent[who] = sorted(set(l["mediaType"] for l in json.loads(raw)["layers"]))
            shutil.rmtree(data, ignore_errors=True)
        finally:
            reg.stop()
            shutil.rmtree(reg.dir, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in res.items()}
    cmed = {k: statistics.median(v) for k, v in cpu.items()}
    print("push of %s to docker-registry on 127.0.0.1 (%.1f MB %s, every blob sent), %d iterations:"
          % (title or ("the image stored " + what), gz_mb, mb_label, iters))
    print("  layers sent: berth %s, skopeo %s" % (", ".join(sent.get("berth", [])), ", ".join(sent.get("skopeo", []))))
    for name, k in (("berth image push", "berth"), ("skopeo copy oci: to docker:", "skopeo")):
        xs = res[k]
        print("  %-28s median %8.1f ms  (min %7.1f, max %7.1f)  cpu %7.1f ms  %7.1f MB/s" % (
            name, med[k] * 1000, min(xs) * 1000, max(xs) * 1000, cmed[k] * 1000, gz_mb / med[k]))
    print("  berth / skopeo = %.2fx wall, %.2fx cpu  (target: at least as fast, <= 1.00x wall: %s)"
          % (med["berth"] / med["skopeo"], cmed["berth"] / cmed["skopeo"],
             "met" if med["berth"] <= med["skopeo"] else "not met"))
    out = {k + "_ms": med[k] * 1000 for k in med}
    out.update({k + "_cpu_ms": cmed[k] * 1000 for k in cmed})
    out["ratio"] = med["berth"] / med["skopeo"]
    return out


# ------------------------------------------------------------------ cgroups
#
# Shells on some hosts start in a v1 memory cgroup the bench must never touch (e.g.
# memory:/process_api/<id>), and runtimes resolve a relative cgroupsPath against the caller's
# own cgroup. So the measuring process runs as a child placed, before it execs, in a cgroup of
# its own in every mounted hierarchy (/sys/fs/cgroup/<h>/berth-engine-bench-<pid>); the parent
# never moves, and removes those cgroups once the child is gone. podman is run with that cgroup
# as --cgroup-parent, so its containers' and conmon's cgroups are in our tree too; berth's
# engine uses /berth/<container id> and removes it with the container. Nothing else is removed:
# other users of the host make cgroups under the shared parents (/berth, /libpod_parent) too.

CG_MOUNT = "/sys/fs/cgroup"
CG_FORBIDDEN = ("/process_api",)


def cgroup_hierarchies():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            if post.split()[:1] in (["cgroup"], ["cgroup2"]):
                mp = pre.split()[4]
                if mp.startswith(CG_MOUNT + "/") and os.path.exists(os.path.join(mp, "cgroup.procs")):
                    out.append(mp)
    return sorted(set(out))


def cg_dirs_under(top):
    """Every directory under top, deepest first (top last)."""
    out = []
    for dirpath, dirnames, _ in os.walk(top):
        out.append(dirpath)
    return sorted(out, key=lambda d: -d.count("/"))


class Cgroups:
    def __init__(self):
        self.hier = cgroup_hierarchies()
        self.name = "berth-engine-bench-%d" % os.getpid()
        self.dirs = []

    def create(self):
        for h in self.hier:
            d = os.path.join(h, self.name)
            os.makedirs(d, exist_ok=True)
            self.dirs.append(d)
            for k in ("cpuset.cpus", "cpuset.mems"):
                if os.path.exists(os.path.join(d, k)):
                    with open(os.path.join(h, k)) as fi, open(os.path.join(d, k), "w") as fo:
                        fo.write(fi.read())

    def enter(self):
        """preexec_fn of the child: move it into every cgroup (and undo the parent's SIG_IGN of
        SIGINT, which exec would pass on)."""
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        pid = str(os.getpid())
        for d in self.dirs:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(pid)

    def remove(self):
        """rmdir (depth first) our cgroups; returns the directories that could not be removed
        (still populated)."""
        left = []
        for top in self.dirs:
            for d in cg_dirs_under(top):
                try:
                    os.rmdir(d)
                except OSError as e:
                    left.append("%s (%s)" % (d, e.strerror))
        return left


def check_own_cgroup():
    with open("/proc/self/cgroup") as f:
        cg = f.read()
    for line in cg.splitlines():
        path = line.split(":", 2)[2]
        if any(path.startswith(x) for x in CG_FORBIDDEN) or "berth-engine-bench-" not in path:
            die("the measuring process is in cgroup %r, not in its own (see Cgroups)" % line)


# ------------------------------------------------------------------ busybox image

def busybox_archive(path):
    """A docker-archive (`docker save` format) of a one-layer busybox image made from the host's
    static busybox (Debian busybox-static), named docker.io/library/busybox:latest; both
    `podman load` and `berth image load` read it. Returns the image id (config digest)."""
    bb = shutil.which("busybox", path=ENV["PATH"])
    if not bb:
        die("busybox is not installed (apt-get install -y busybox-static)")

    def info(name, kind, mode, data=b"", link=""):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.mtime, ti.linkname = kind, mode, 1700000000, link
        ti.size = len(data) if kind == tarfile.REGTYPE else 0
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for d in ("bin", "dev", "etc", "proc", "sys", "tmp", "root", "run", "var", "usr", "usr/bin"):
            t.addfile(info(d + "/", tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        with open(bb, "rb") as f:
            data = f.read()
        t.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, data), io.BytesIO(data))
        for a in run([bb, "--list"]).split():
            if a != "busybox":
                t.addfile(info("bin/" + a, tarfile.SYMTYPE, 0o777, link="busybox"))
        for name, data in (("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"),
                           ("etc/group", b"root:x:0:\nnogroup:x:65534:\n")):
            t.addfile(info(name, tarfile.REGTYPE, 0o644, data), io.BytesIO(data))
    layer = buf.getvalue()
    diff = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2026-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]},
        "history": [{"created": "2026-01-01T00:00:00Z", "created_by": "berth bench: host busybox-static"}],
    }).encode()
    cid = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": cid + ".json", "RepoTags": ["docker.io/library/busybox:latest"],
                            "Layers": [diff + "/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as t:
        t.addfile(info(diff + "/", tarfile.DIRTYPE, 0o755))
        for name, data in ((diff + "/layer.tar", layer), (cid + ".json", config), ("manifest.json", manifest)):
            t.addfile(info(name, tarfile.REGTYPE, 0o644, data), io.BytesIO(data))
    return cid


# ------------------------------------------------------------------ host state (clean-up checks)

def host_routes():
    """(network, mask) of every IPv4 route of the host."""
    out = []
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            c = line.split()
            out.append((int(c[1], 16), int(c[7], 16)))
    return out


def free_subnet24(taken=()):
    """A /24 of 10.251.0.0/16 no host route overlaps (for podman's networks)."""
    routes = [ipaddress.ip_network((socket.ntohl(n), bin(m).count("1")), strict=False) for n, m in host_routes() if m]
    routes += list(taken)
    for i in range(1, 255):
        net = ipaddress.ip_network("10.251.%d.0/24" % i)
        if not any(net.overlaps(r) for r in routes):
            return net
    die("no free /24 in 10.251.0.0/16 for podman's network")


def iptables_rules():
    r = subprocess.run(["iptables-save"], capture_output=True, text=True, env=ENV)
    return set(l for l in r.stdout.splitlines() if l.startswith("-A "))


# ------------------------------------------------------------------ podman

def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)


class Podman:
    """podman with its own storage, state, network configs and containers.conf files under
    work/pm. Its default network "berthbench" is defined for both of podman 4.3's network
    backends, as `podman network create` writes it but with our own bridge name and subnet:
      netavark (podman's default when installed, as Debian's `apt-get install podman` does):
          a bridge network, host-local IPAM (netavark's own database), no DNS;
      cni: a conflist bridge + host-local (IPAM dir under work/pm), portmap, firewall, tuning:
          the plugins berth's networks use.
    Containers go under --cgroup-parent (our own cgroup), so nothing lands in /libpod_parent."""

    def __init__(self, work, cgroup_parent):
        self.dir = os.path.join(work, "pm")       # short: podman refuses a runroot over 50 characters
        for d in ("cni", "netavark", "ipam", "root", "rr", "tmp"):
            os.makedirs(os.path.join(self.dir, d))
        self.cgroup_parent = cgroup_parent
        self.backends = ["netavark", "cni"] if shutil.which("netavark", path=ENV["PATH"] + ":/usr/lib/podman") else ["cni"]
        self.default = self.backends[0]
        taken = []
        self.bridge, self.subnet = {}, {}
        for b in self.backends:
            self.bridge[b] = ("bbnv%d" if b == "netavark" else "bbpm%d") % (os.getpid() % 1000000)
            self.subnet[b] = free_subnet24(taken)
            taken.append(self.subnet[b])
        gw = {b: str(next(self.subnet[b].hosts())) for b in self.backends}
        if "cni" in self.backends:
            conflist = {"cniVersion": "0.4.0", "name": "berthbench", "plugins": [
                {"type": "bridge", "bridge": self.bridge["cni"], "isGateway": True, "ipMasq": True, "hairpinMode": True,
                 "ipam": {"type": "host-local", "routes": [{"dst": "0.0.0.0/0"}],
                          "ranges": [[{"subnet": str(self.subnet["cni"]), "gateway": gw["cni"]}]],
                          "dataDir": os.path.join(self.dir, "ipam")},
                 "capabilities": {"ips": True}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "firewall", "backend": ""},
                {"type": "tuning"}]}
            with open(os.path.join(self.dir, "cni", "berthbench.conflist"), "w") as f:
                json.dump(conflist, f, indent=1)
        if "netavark" in self.backends:
            net = {"name": "berthbench", "id": hashlib.sha256(self.dir.encode()).hexdigest(), "driver": "bridge",
                   "network_interface": self.bridge["netavark"], "created": "2026-01-01T00:00:00Z",
                   "subnets": [{"subnet": str(self.subnet["netavark"]), "gateway": gw["netavark"]}],
                   "ipv6_enabled": False, "internal": False, "dns_enabled": False,
                   "ipam_options": {"driver": "host-local"}}
            with open(os.path.join(self.dir, "netavark", "berthbench.json"), "w") as f:
                json.dump(net, f, indent=1)
        self.base = ["podman", "--root", os.path.join(self.dir, "root"), "--runroot", os.path.join(self.dir, "rr"),
                     "--tmpdir", os.path.join(self.dir, "tmp"), "--storage-driver", "overlay",
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
        self.ulimits = []
        self.write_conf()

    def conf(self, backend):
        return os.path.join(self.dir, "containers-%s.conf" % backend)

    def write_conf(self):
        for b in self.backends:
            with open(self.conf(b), "w") as f:
                f.write("[containers]\n")
                if self.ulimits:
                    f.write("default_ulimits = [%s]\n" % ", ".join('"%s"' % u for u in self.ulimits))
                f.write('[network]\nnetwork_backend = "%s"\nnetwork_config_dir = "%s"\ndefault_network = "berthbench"\n'
                        '[engine]\nevents_logger = "file"\ncgroup_manager = "cgroupfs"\n' % (b, os.path.join(self.dir, b)))

    def set_limits(self):
        """Call once the busybox image is loaded."""
        self.ulimits = self.own_limits()
        self.write_conf()

    def own_limits(self):
        """podman sets nofile and nproc to 1048576 in every container unless containers.conf says
        otherwise; without CAP_SYS_RESOURCE (as on this host) that fails. The limits podman runs
        with itself (nproc: it lowers its own to pid_max) are read by a probe runtime, and become
        its default_ulimits."""
        out = os.path.join(self.dir, "limits")
        probe = os.path.join(self.dir, "limits-probe")
        write_exec(probe, "#!/bin/sh\ngrep -E '^Max (processes|open files)' /proc/self/limits > %s\nexit 1\n" % out)
        self.cmd_ok(self.run_args(["--network", "none", "busybox", "true"]), runtime=probe)
        self.cmd_ok(["rm", "-af"])
        lim = {}
        try:
            with open(out) as f:
                for line in f:
                    c = line.split()
                    lim["nproc" if c[1] == "processes" else "nofile"] = int(c[-2])
            return ["nofile=%d:%d" % (lim["nofile"], lim["nofile"]), "nproc=%d:%d" % (lim["nproc"], lim["nproc"])]
        except (OSError, ValueError, IndexError, KeyError):
            return []

    def run_args(self, args, detach=False):
        return ["run", "--cgroup-parent", self.cgroup_parent] + (["-d"] if detach else ["--rm"]) + args

    def cmd(self, args, runtime=None, backend=None):
        b = backend or self.default
        return self.base + ["--network-config-dir", os.path.join(self.dir, b)] + \
            (["--runtime", runtime] if runtime else []) + args

    def env(self, backend=None):
        return dict(ENV, CONTAINERS_CONF=self.conf(backend or self.default))

    def cmd_ok(self, args, runtime=None, backend=None):
        return subprocess.run(self.cmd(args, runtime, backend), capture_output=True, text=True, env=self.env(backend))

    def shown(self, backend=None):
        b = backend or self.default
        return "CONTAINERS_CONF=%s %s --network-config-dir %s" % (self.conf(b), " ".join(self.base), os.path.join(self.dir, b))

    def cleanup(self):
        errs = []
        r = self.cmd_ok(["rm", "-af", "-t", "0"])
        if r.returncode != 0:
            errs.append("podman rm -af: " + r.stderr.strip()[-300:])
        self.cmd_ok(["rmi", "-af"])
        umount_under(self.dir)
        for b in self.backends:
            brif = "/sys/class/net/%s/brif" % self.bridge[b]
            if os.path.isdir(brif) and os.listdir(brif):
                errs.append("ports left on podman's bridge %s: %s" % (self.bridge[b], " ".join(os.listdir(brif))))
            if os.path.exists("/sys/class/net/" + self.bridge[b]):
                subprocess.run(["ip", "link", "del", self.bridge[b]], capture_output=True)
        return errs


# ------------------------------------------------------------------ containers

CRUN_WRAPPER = """#!/bin/sh
# crun 1.8 refuses a hybrid cgroup host: run it in a private mount namespace without the
# cgroup2 mount at /sys/fs/cgroup/unified (the host's mounts are untouched).
exec unshare -m --propagation private -- /bin/sh -c 'umount -l /sys/fs/cgroup/unified 2>/dev/null
  if grep -q " /sys/fs/cgroup/unified " /proc/self/mountinfo; then echo "crun-wrap: cannot detach /sys/fs/cgroup/unified" >&2; exit 125; fi
  exec "$0" "$@"' %s "$@"
"""


def hybrid_cgroups():
    return os.path.isdir("/sys/fs/cgroup/unified") and os.path.exists("/sys/fs/cgroup/memory/cgroup.procs")


def tool_version(argv):
    r = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    return (r.stdout or r.stderr).strip().splitlines()[0] if (r.stdout or r.stderr).strip() else "?"


def pct(xs, p):
    s = sorted(xs)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class Cell:
    """One measured command (or pair of commands run back to back, each timed)."""

    def __init__(self, name, argvs, env=None, shown=None):
        self.name, self.argvs, self.env, self.shown = name, argvs, env or ENV, shown
        self.samples = []          # total of the argvs, seconds
        self.parts = [[] for _ in argvs]
        self.error = None
        self.fails = 0

    def once(self, i):
        total, parts = 0.0, []
        for argv in self.argvs:
            argv = [a.replace("{i}", str(i)) for a in argv]
            t = time.perf_counter()
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=self.env)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                return None, "%s: exit %d: %s" % (" ".join(argv), r.returncode, (r.stderr or r.stdout).strip()[-400:])
            total += dt
            parts.append(dt)
        return (total, parts), None

    def measure(self, i, record):
        if self.error:
            return
        res, err = self.once(i)
        if err:
            self.fails += 1
            if self.fails >= 3:
                self.error = "3 failures in a row, last: " + err
            return
        self.fails = 0
        if record:
            self.samples.append(res[0])
            for k, p in enumerate(res[1]):
                self.parts[k].append(p)

    def med(self):
        return statistics.median(self.samples) if self.samples else float("nan")


def count_runtime_calls(podman, runtime, work, name):
    """How often podman calls the runtime for one `run --rm busybox true` (and with what)."""
    log = os.path.join(work, "calls-%s" % name)
    wrap = os.path.join(work, "count-%s" % name)
    verbs = "create|start|delete|kill|state|run|exec|pause|resume|update|ps|features|checkpoint|restore|list|events"
    write_exec(wrap, '#!/bin/sh\nfor a in "$@"; do case "$a" in %s) echo "$a" >> %s; break;; esac; done\n'
                     'exec %s "$@"\n' % (verbs, log, runtime))
    r = podman.cmd_ok(podman.run_args(["--network", "none", "busybox", "true"]), runtime=wrap)
    podman.cmd_ok(["rm", "-af"])
    try:
        with open(log) as f:
            calls = [l.strip() for l in f if l.strip()]
    except OSError:
        calls = []
    return calls if r.returncode == 0 else None


def umount_under(path):
    """Unmount every mount at or below path, deepest first (podman's storage leaves some)."""
    path = os.path.realpath(path)
    mps = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == path or mp.startswith(path + "/"):
                mps.append(mp)
    for mp in sorted(set(mps), key=lambda m: -m.count("/")):
        subprocess.run(["umount", "-l", mp], capture_output=True)


class Engines:
    """The busybox image in berth's store and in podman's, and the runtimes podman is run with."""

    def __init__(self, berth, work):
        self.work, self.berth = work, berth
        self.bbtar = os.path.join(work, "busybox.tar")
        self.bdata, self.broot = os.path.join(work, "berth-data"), os.path.join(work, "berth-run")
        self.bcmd = [berth, "--data-root", self.bdata, "--root", self.broot]
        self.podman = None
        self.rules_before = iptables_rules()

    def setup(self):
        work, berth = self.work, self.berth
        self.image_id = busybox_archive(self.bbtar)
        run(self.bcmd + ["image", "load", "-q", "-i", self.bbtar])
        cg = open("/proc/self/cgroup").read().splitlines()[0].split(":", 2)[2]
        self.podman = Podman(work, cg)
        r = self.podman.cmd_ok(["load", "-q", "-i", self.bbtar])
        if r.returncode != 0:
            die("podman load: " + r.stderr.strip()[-400:])
        self.podman.set_limits()
        self.crun = shutil.which("crun", path=ENV["PATH"])
        self.runc = shutil.which("runc", path=ENV["PATH"])
        self.crun_rt, self.crun_note = self.crun, "direct"
        if self.crun and hybrid_cgroups():
            self.crun_rt = os.path.join(work, "crun-wrap")
            write_exec(self.crun_rt, CRUN_WRAPPER % self.crun)
            self.crun_note = ("through %s: unshare -m --propagation private, umount -l /sys/fs/cgroup/unified, "
                              "exec %s (crun 1.8 refuses this hybrid cgroup host)" % (self.crun_rt, self.crun))
        self.runtimes = [(n, p) for n, p in (("runc", self.runc), ("crun", self.crun_rt), ("berth", berth)) if p]

    def cleanup(self):
        """Removes every container, the networks, podman's storage; returns what is left over."""
        errs = []
        r = subprocess.run(self.bcmd + ["container", "ls", "-a", "-q"], capture_output=True, text=True, env=ENV)
        ids = r.stdout.split()
        if ids:
            errs.append("berth containers were left: %d" % len(ids))
            subprocess.run(self.bcmd + ["container", "rm", "-f"] + ids, capture_output=True, env=ENV)
        att = os.path.join(self.bdata, "network", "attachments")
        for f in (os.listdir(att) if os.path.isdir(att) else []):
            if f.endswith(".json"):        # network attach cells interrupted between attach and detach
                errs.append("berth network attachment %s was left: detached" % f[:-5])
                subprocess.run(self.bcmd + ["network", "detach", f[:-5]], capture_output=True, env=ENV)
        bridge, subnet = None, None
        try:
            with open(os.path.join(self.bdata, "network", "bridge.conflist")) as f:
                meta = json.load(f)["berth"]
                bridge, subnet = meta["bridge"], meta["subnet"]
        except (OSError, ValueError, KeyError):
            pass
        if bridge and os.path.isdir("/sys/class/net/%s/brif" % bridge) and os.listdir("/sys/class/net/%s/brif" % bridge):
            errs.append("ports left on berth's bridge %s: %s" % (bridge, " ".join(os.listdir("/sys/class/net/%s/brif" % bridge))))
        subprocess.run(self.bcmd + ["network", "rm", "bridge"], capture_output=True, env=ENV)
        if bridge and os.path.exists("/sys/class/net/" + bridge):
            errs.append("berth network rm bridge left bridge %s: deleted" % bridge)
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        if self.podman:
            errs += self.podman.cleanup()
        umount_under(self.work)
        # What this run made on the host and did not remove: rules naming our subnets (the
        # bridge plugin's masquerade chain is reached by a rule naming the container's address,
        # the firewall plugin's rules name it too) and, above, ports left on our bridges (a
        # leaked container network namespace keeps its veth on the bridge).
        for net in [subnet] + ([str(x) for x in self.podman.subnet.values()] if self.podman else []):
            if not net:
                continue
            n = ipaddress.ip_network(net)
            for rule in iptables_rules() - self.rules_before:
                for w in rule.replace("/", " ").split():
                    try:
                        if ipaddress.ip_address(w) in n:
                            errs.append("iptables rule left over: " + rule)
                            break
                    except ValueError:
                        pass
        return errs


def section_containers(eng, berth, work, iters, warmup, seed, cells_wanted):
    podman, bcmd, runtimes = eng.podman, eng.bcmd, eng.runtimes
    crun, crun_rt, crun_note = eng.crun, eng.crun_rt, eng.crun_note
    print("containers: one busybox image (host busybox-static, id %s) loaded into both"
          % eng.image_id[:12])
    print("  berth:  %s container run --rm [--network none] busybox true" % " ".join(bcmd))
    print("          default network 'bridge' (CNI bridge+host-local, firewall; portmap and tuning are skipped")
    print("          when they have nothing to do); network layer alone: %s network attach --network bridge|none ID,"
          % " ".join(bcmd))
    print("          then ... network detach ID (hidden commands of src/network/cli.rs)")
    print("  podman: %s" % tool_version(["podman", "--version"]) + ", " + tool_version(["conmon", "--version"]))
    print("          %s --runtime R run --cgroup-parent %s --rm [--network none] busybox true"
          % (podman.shown(), podman.cgroup_parent))
    for b in podman.backends:
        print("          network backend %s%s: default network 'berthbench' on bridge %s, %s, %s" % (
            b, " (podman's default, used unless a cell says otherwise)" if b == podman.default else
            " (cells marked 'cni': --network-config-dir %s, CONTAINERS_CONF=%s)" % (os.path.join(podman.dir, b), podman.conf(b)),
            podman.bridge[b], podman.subnet[b],
            "host-local IPAM, no DNS" if b == "netavark" else "CNI 0.4.0 bridge+host-local, portmap, firewall, tuning"))
    print("          default_ulimits %s (podman's own limits: its 1048576 default needs CAP_SYS_RESOURCE)"
          % (", ".join(podman.ulimits) or "(podman defaults)"))
    for n, p in runtimes:
        v = tool_version([crun if n == "crun" else p, "--version"])
        print("          R=%-5s %s (%s)%s" % (n, p, v, ("\n                  " + crun_note) if n == "crun" else ""))

    # how podman drives each runtime (untimed)
    calls = {}
    for n, p in runtimes:
        c = count_runtime_calls(podman, p, work, n)
        calls[n] = c
        print("          podman -> %s per run: %s" % (n, ("%d calls (%s)" % (len(c), " ".join(c))) if c is not None
                                                      else "FAILED (see the cells below)"))

    cells = []
    net_id = "bench-net-{i}"
    cells.append(Cell("berth run none", [bcmd + ["container", "run", "--rm", "--network", "none", "busybox", "true"]]))
    cells.append(Cell("berth run bridge", [bcmd + ["container", "run", "--rm", "busybox", "true"]]))
    cells.append(Cell("berth net attach+detach none",
                      [bcmd + ["network", "attach", "--network", "none", net_id], bcmd + ["network", "detach", net_id]]))
    cells.append(Cell("berth net attach+detach bridge",
                      [bcmd + ["network", "attach", "--network", "bridge", net_id], bcmd + ["network", "detach", net_id]]))
    for n, p in runtimes:
        cells.append(Cell("podman/%s run none" % n, [podman.cmd(podman.run_args(["--network", "none", "busybox", "true"]), p)],
                          env=podman.env()))
        cells.append(Cell("podman/%s run bridge" % n, [podman.cmd(podman.run_args(["busybox", "true"]), p)], env=podman.env()))
    if len(podman.backends) > 1 and crun_rt:
        cells.append(Cell("podman/crun run bridge cni", [podman.cmd(podman.run_args(["busybox", "true"]), crun_rt, "cni")],
                          env=podman.env("cni")))
    if cells_wanted:
        cells = [c for c in cells if any(w in c.name for w in cells_wanted)]

    # the crun wrapper's own cost per call: `crun --version` through it, then direct
    wrapcell = None
    if crun and crun_rt != crun and (not cells_wanted or "crun" in ",".join(cells_wanted)):
        wrapcell = Cell("crun --version: wrapped, direct", [[crun_rt, "--version"], [crun, "--version"]])
        cells.append(wrapcell)

    # probe: one untimed run of each cell; a failing cell is reported and skipped
    for c in cells:
        res, err = c.once(0)
        if err:
            c.error = "probe failed: " + err
    load0 = os.getloadavg()[0]
    rng = random.Random(seed)
    t0 = time.time()
    for i in range(warmup + iters):
        order = list(cells)
        rng.shuffle(order)
        for c in order:
            c.measure(i, i >= warmup)
    load1 = os.getloadavg()[0]
    print("  %d iterations (+%d warm-up), every cell once per iteration in a shuffled order (seed %d); "
          "%.0f s; load %.2f -> %.2f"
          % (iters, warmup, seed, time.time() - t0, load0, load1))
    print("  %-34s %9s %9s %9s" % ("cell", "median", "p10", "p90"))
    by = {c.name: c for c in cells}
    for c in cells:
        if c.error or not c.samples:
            print("  %-34s skipped: %s" % (c.name, c.error or "no samples"))
            continue
        extra = ""
        if len(c.parts) > 1:
            extra = "  (%s %.1f + %s %.1f)" % (("wrapped", statistics.median(c.parts[0]) * 1000, "direct",
                                                   statistics.median(c.parts[1]) * 1000) if c is wrapcell else
                                                  ("attach", statistics.median(c.parts[0]) * 1000, "detach",
                                                   statistics.median(c.parts[1]) * 1000))
        print("  %-34s %7.1f ms %6.1f ms %6.1f ms%s" % (c.name, c.med() * 1000, pct(c.samples, 10) * 1000,
                                                       pct(c.samples, 90) * 1000, extra))
    ncalls = len(calls.get("crun") or [])
    wrap_cost = None
    if wrapcell is not None and wrapcell.samples:
        wrap_cost = statistics.median(a - b for a, b in zip(wrapcell.parts[0], wrapcell.parts[1]))
    if wrap_cost is not None and "podman/crun run bridge" in by:
        print("  crun wrapper: %.1f ms per call (paired median of wrapped minus direct), %d calls per podman run:"
              % (wrap_cost * 1000, ncalls))
        for k in ("none", "bridge"):
            c = by.get("podman/crun run " + k)
            if c and c.samples:
                print("  %-34s %7.1f ms  (wrapper cost removed)" % ("podman/crun run %s -w" % k,
                                                                  (c.med() - ncalls * wrap_cost) * 1000))

    def ok(name):
        c = by.get(name)
        return c is not None and not c.error and bool(c.samples)

    def paired(a, b):
        """median of per-iteration differences a - b (same iteration index)"""
        n = min(len(by[a].samples), len(by[b].samples))
        return statistics.median([by[a].samples[k] - by[b].samples[k] for k in range(n)]) if n else float("nan")

    out = {"iterations": iters, "load": [load0, load1], "cells": {}, "wrapper_ms": None if wrap_cost is None else wrap_cost * 1000,
           "crun_calls": ncalls}
    for c in cells:
        out["cells"][c.name] = {"median_ms": c.med() * 1000, "p10_ms": pct(c.samples, 10) * 1000,
                                "p90_ms": pct(c.samples, 90) * 1000, "n": len(c.samples), "error": c.error}

    # Network set-up + teardown
    print("  network: set-up + teardown per container = median(bridge) - median(none) of the same engine+runtime;")
    print("           paired = median of the per-iteration differences (target: berth no slower than podman)")
    nb = podman.default
    net = {}
    pairs = [("berth (container run)", "berth run bridge", "berth run none"),
             ("berth (network layer: attach+detach)", "berth net attach+detach bridge", "berth net attach+detach none")]
    pairs += [("podman/%s (%s)" % (n, nb), "podman/%s run bridge" % n, "podman/%s run none" % n) for n, _ in runtimes]
    pairs += [("podman/crun (cni)", "podman/crun run bridge cni", "podman/crun run none")]
    for who, a, b in pairs:
        if ok(a) and ok(b):
            d = by[a].med() - by[b].med()
            net[who] = d
            print("    %-38s %7.1f ms  (paired %7.1f ms)" % (who, d * 1000, paired(a, b) * 1000))
    mine = net.get("berth (container run)")
    for ref in ("podman/crun (%s)" % nb, "podman/crun (cni)"):
        if mine is not None and net.get(ref):
            print("    berth / %s network cost = %.2fx  -> %s" % (ref, mine / net[ref], "met" if mine <= net[ref] else "NOT met"))
    out["network_ms"] = {k: v * 1000 for k, v in net.items()}

    # berth against podman
    print("  run: berth container run --rm busybox true vs podman run (default network; target: berth <= 0.5x)")
    for k in ("bridge", "none"):
        if not ok("berth run " + k):
            continue
        bm = by["berth run " + k].med()
        for n in ("crun", "runc"):
            pc = "podman/%s run %s" % (n, k)
            if ok(pc):
                ratio = bm / by[pc].med()
                line = "    %-6s berth %7.1f ms / podman --runtime %s %7.1f ms = %.2fx" % (k, bm * 1000, n, by[pc].med() * 1000, ratio)
                if k == "bridge":
                    line += "  -> %s" % ("met" if ratio <= 0.5 else "NOT met")
                if n == "crun" and wrap_cost is not None:
                    line += "  (%.2fx without the wrapper)" % (bm / (by[pc].med() - ncalls * wrap_cost))
                print(line)
                out.setdefault("run_ratio", {})["%s/%s" % (k, n)] = ratio
        if k == "bridge" and ok("podman/crun run bridge cni"):
            pc = by["podman/crun run bridge cni"].med()
            print("    bridge berth %7.1f ms / podman --runtime crun, cni backend %7.1f ms = %.2fx" % (bm * 1000, pc * 1000, bm / pc))

    # Issue 9
    print("  podman runtime: podman --runtime berth vs runc and crun (target: berth's median below both)")
    for k in ("bridge", "none"):
        pb = "podman/berth run " + k
        if not ok(pb):
            continue
        parts = []
        met = True
        for n in ("runc", "crun"):
            pc = "podman/%s run %s" % (n, k)
            if ok(pc):
                parts.append("%s %.1f ms (%.2fx)" % (n, by[pc].med() * 1000, by[pb].med() / by[pc].med()))
                met = met and by[pb].med() < by[pc].med()
                out.setdefault("podman_runtime_ratio", {})["%s/%s" % (k, n)] = by[pb].med() / by[pc].med()
        print("    %-6s berth %7.1f ms vs %s  -> %s" % (k, by[pb].med() * 1000, ", ".join(parts), "met" if met else "NOT met"))
        if wrap_cost is not None and ok("podman/crun run " + k):
            print("           (crun without its wrapper: %.1f ms)" % ((by["podman/crun run " + k].med() - ncalls * wrap_cost) * 1000))

    # leftovers of the measured runs
    r = subprocess.run(bcmd + ["container", "ls", "-a", "-q"], capture_output=True, text=True, env=ENV)
    if r.stdout.strip():
        print("  bench: berth containers left by `run --rm`: " + " ".join(r.stdout.split()))
    r = podman.cmd_ok(["ps", "-a", "-q"])
    if r.stdout.strip():
        print("  bench: podman containers left by `run --rm`: " + " ".join(r.stdout.split()))
    return out


# ------------------------------------------------------------------ dual-stack networks

def section_dualstack(eng, work, iters, warmup, seed):
    """The per-container cost of a dual-stack user network: run --rm on it minus run --rm
    --network none, the same engine and runtime (podman drives runc), interleaved."""
    podman, bcmd = eng.podman, eng.bcmd
    n = os.getpid() % 250
    taken = list(podman.subnet.values())
    b4 = free_subnet24(taken)
    p4 = free_subnet24(taken + [b4])
    b6, p6 = "fd00:b6:%x::/64" % n, "fd00:b7:%x::/64" % n
    r = subprocess.run(bcmd + ["network", "create", "--ipv6", "--subnet", str(b4), "--subnet", b6, "bench6"],
                       capture_output=True, text=True, env=ENV)
    if r.returncode != 0:
        die("berth network create --ipv6: " + r.stderr.strip())
    pnet = "podman6"
    pbridge = "bb6n%d" % (os.getpid() % 1000000)
    if "netavark" not in podman.backends:
        die("dualstack: podman's netavark backend is not installed")
    net = {"name": pnet, "id": hashlib.sha256((podman.dir + "6").encode()).hexdigest(), "driver": "bridge",
           "network_interface": pbridge, "created": "2026-01-01T00:00:00Z",
           "subnets": [{"subnet": str(p4), "gateway": str(next(p4.hosts()))},
                       {"subnet": p6, "gateway": p6.replace("::/64", "::1")}],
           "ipv6_enabled": True, "internal": False, "dns_enabled": True, "ipam_options": {"driver": "host-local"}}
    with open(os.path.join(podman.dir, "netavark", pnet + ".json"), "w") as f:
        json.dump(net, f, indent=1)
    rt = eng.runc
    cells = [
        Cell("berth run none", [bcmd + ["container", "run", "--rm", "--network", "none", "busybox", "true"]]),
        Cell("berth run dual-stack", [bcmd + ["container", "run", "--rm", "--network", "bench6", "busybox", "true"]]),
        Cell("podman/runc run none", [podman.cmd(podman.run_args(["--network", "none", "busybox", "true"]), rt)],
             env=podman.env("netavark")),
        Cell("podman/runc run dual-stack", [podman.cmd(podman.run_args(["--network", pnet, "busybox", "true"]), rt)],
             env=podman.env("netavark")),
    ]
    print("dualstack: dual-stack user networks, name resolution on, no published ports")
    print("  berth:  %s network create --ipv6 --subnet %s --subnet %s bench6; container run --rm --network bench6|none busybox true"
          % (" ".join(bcmd), b4, b6))
    print("  podman: %s --runtime %s run --rm --network %s|none busybox true" % (podman.shown("netavark"), rt, pnet))
    print("          network %s: netavark bridge %s, %s + %s, ipv6_enabled, dns_enabled (aardvark-dns), host-local IPAM"
          % (pnet, pbridge, p4, p6))
    try:
        for c in cells:
            res, err = c.once(0)
            if err:
                c.error = "probe failed: " + err
        rng = random.Random(seed)
        t0 = time.time()
        for i in range(warmup + iters):
            order = list(cells)
            rng.shuffle(order)
            for c in order:
                c.measure(i, i >= warmup)
        print("  %d iterations (+%d warm-up), shuffled (seed %d), %.0f s" % (iters, warmup, seed, time.time() - t0))
        by = {c.name: c for c in cells}
        for c in cells:
            if c.error or not c.samples:
                print("  %-30s skipped: %s" % (c.name, c.error or "no samples"))
                continue
            print("  %-30s %7.1f ms %6.1f ms %6.1f ms" % (c.name, c.med() * 1000, pct(c.samples, 10) * 1000,
                                                       pct(c.samples, 90) * 1000))
        out = {"cells": {c.name: c.med() * 1000 for c in cells if c.samples}}
        cost = {}
        for who in ("berth", "podman/runc"):
            a, b = by[who + " run dual-stack"], by[who + " run none"]
            if a.samples and b.samples and not a.error and not b.error:
                k = min(len(a.samples), len(b.samples))
                cost[who] = (a.med() - b.med(), statistics.median(a.samples[j] - b.samples[j] for j in range(k)))
                print("  network set-up + teardown, %-12s %7.1f ms  (paired %7.1f ms)"
                      % (who, cost[who][0] * 1000, cost[who][1] * 1000))
        if len(cost) == 2:
            ratio = cost["berth"][0] / cost["podman/runc"][0]
            print("  berth / podman dual-stack network cost = %.2fx  -> %s (target: at or below podman's)"
                  % (ratio, "met" if ratio <= 1 else "NOT met"))
            out["ratio"] = ratio
        out["network_ms"] = {k: v[0] * 1000 for k, v in cost.items()}
        return out
    finally:
        subprocess.run(bcmd + ["network", "rm", "bench6"], capture_output=True, env=ENV)
        podman.cmd_ok(["network", "rm", "-f", pnet], backend="netavark")
        if os.path.exists("/sys/class/net/" + pbridge):
            subprocess.run(["ip", "link", "del", pbridge], capture_output=True)


# ------------------------------------------------------------------ shim memory

ROOTLESS_USER = "berth-bench-rl"
ROOTLESS_RANGE = (520000, 65536)


def set_subids(user, rng):
    """Replace the user's lines of /etc/subuid and /etc/subgid with rng (None: none)."""
    for f in ("/etc/subuid", "/etc/subgid"):
        try:
            with open(f) as fh:
                lines = [l for l in fh.read().splitlines() if l.split(":")[0] != user]
        except FileNotFoundError:
            lines = []
        if rng:
            lines.append("%s:%d:%d" % (user, rng[0], rng[1]))
        tmp = "%s.bench.%d" % (f, os.getpid())
        with open(tmp, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.chmod(tmp, 0o644)
        os.rename(tmp, f)


def section_rootless(berth, iters, warmup):
    user = ROOTLESS_USER
    if subprocess.run(["id", "-u", user], capture_output=True).returncode != 0:
        run(["useradd", "-M", "-s", "/bin/sh", "-d", "/nonexistent", user])
    uid, gid = int(run(["id", "-u", user]).strip()), int(run(["id", "-g", user]).strip())
    # slirp4netns (both engines) opens /dev/net/tun, which udev makes 0666.
    if os.stat("/dev/net/tun").st_mode & 0o006 != 0o006:
        print("  (made /dev/net/tun 0666, as udev does, for slirp4netns)")
        os.chmod("/dev/net/tun", 0o666)
    set_subids(user, ROOTLESS_RANGE)
    base = tempfile.mkdtemp(prefix="berth-rootless-bench-", dir=os.environ.get("BENCH_TMP", "/dev/shm"))
    os.chmod(base, 0o755)
    # XDG_RUNTIME_DIR where a login session has it (pam_systemd's /run/user/UID, 0700, the
    # user's), not in the temp dir: with a runtime dir of 42 bytes (/dev/shm/berth-rootless-
    # bench-XXXXXXXX/xdg) podman's conmon outlives every container by its 20 s timeout ("Exceeded
    # conmon timeout waiting for container to exit"), which a 25-byte one does not; the bench user
    # is the bench's own, so a directory left by an interrupted run is removed first.
    home, xdg = os.path.join(base, "home"), "/run/user/%d" % uid
    if os.path.isdir(xdg) and os.stat(xdg).st_uid == uid:
        shutil.rmtree(xdg, ignore_errors=True)
    os.makedirs("/run/user", mode=0o755, exist_ok=True)
    for d in (home, xdg):
        os.mkdir(d, 0o700)
        os.chown(d, uid, gid)
    bb = os.path.join(base, "berth")
    shutil.copy(berth, bb)
    os.chmod(bb, 0o755)
    arch = os.path.join(base, "busybox.tar")
    busybox_archive(arch)
    os.chmod(arch, 0o644)
    env = {"PATH": ENV["PATH"], "LC_ALL": "C", "HOME": home, "USER": user, "XDG_RUNTIME_DIR": xdg}
    as_user = ["setpriv", "--reuid", user, "--regid", user, "--init-groups", "--"]
    # The user's environment set by env(1) after setpriv, as a login would.
    as_user = as_user + ["env", "-i"] + ["%s=%s" % kv for kv in sorted(env.items())]
    out = {}
    try:
        for argv in ([bb, "image", "load", "-i", arch], ["podman", "load", "-q", "-i", arch]):
            # Output to a file: the first podman command starts the process that keeps podman's
            # user namespace, which would keep a pipe open (and podman then waits out conmon's
            # 20 s timeout at every container exit).
            with open(os.path.join(base, "load.log"), "w+") as logf:
                r = subprocess.run(as_user + argv, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
                logf.seek(0)
                if r.returncode != 0:
                    die("rootless: %s: %s" % (" ".join(argv), logf.read().strip()[-400:]))
        # The full name: a short one sends podman to its registries' short-name resolution.
        image = "docker.io/library/busybox:latest"
        cells = [Cell("berth container run --rm", [as_user + [bb, "container", "run", "--rm", image, "true"]]),
                 Cell("podman run --rm (runc)", [as_user + ["podman", "--runtime", "runc", "run", "--rm",
                                                            image, "true"]])]
        for i in range(warmup + iters):
            for c in (cells if i % 2 == 0 else cells[::-1]):
                c.measure(i, i >= warmup)
        print("rootless: `run --rm busybox true` as %s (default network: slirp4netns), %d iterations" % (user, iters))
        for c in cells:
            if c.error:
                print("  %-28s FAILED: %s" % (c.name, c.error))
            else:
                print("  %-28s median %8.1f ms  (p10 %7.1f, p90 %7.1f)" % (
                    c.name, c.med() * 1000, pct(c.samples, 10) * 1000, pct(c.samples, 90) * 1000))
        if not cells[0].error and not cells[1].error:
            ratio = cells[0].med() / cells[1].med()
            print("  berth / podman: %.2fx (target: at most 0.5x)" % ratio)
            out = {"berth": cells[0].med(), "podman": cells[1].med(), "ratio": ratio}
    finally:
        subprocess.run(as_user + ["podman", "rm", "-af"], capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(as_user + ["podman", "system", "reset", "-f"], capture_output=True, stdin=subprocess.DEVNULL)
        # The processes that hold each engine's user namespace.
        for pidfile in (os.path.join(xdg, "berth-engine", "keeper.pid"), os.path.join(xdg, "libpod", "tmp", "pause.pid")):
            try:
                with open(pidfile) as fh:
                    os.kill(int(fh.read().split()[0]), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
        time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(xdg, ignore_errors=True)
        set_subids(user, None)
    return out


def mem_of(pid):
    """VmRSS, Rss, Pss, Private_Dirty in KiB of a process."""
    v = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                v["VmRSS"] = int(line.split()[1])
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k = line.split(":")[0]
            if k in ("Rss", "Pss", "Private_Dirty"):
                v[k] = int(line.split()[1])
    return v


def section_rss(eng, n):
    """n detached `sleep 1000` containers each: berth's shim vs podman's conmon."""
    podman, bcmd = eng.podman, eng.bcmd
    bdir = os.path.join(eng.bdata, "containers")
    res = {"berth shim": [], "conmon": []}
    berth_ids, podman_ids = [], []
    try:
        for _ in range(n):
            cid = run(bcmd + ["container", "run", "-d", "busybox", "sleep", "1000"]).strip()
            berth_ids.append(cid)
            r = podman.cmd_ok(podman.run_args(["busybox", "sleep", "1000"], detach=True), runtime=eng.runc)
            if r.returncode != 0:
                die("podman run -d: " + r.stderr.strip()[-400:])
            podman_ids.append(r.stdout.strip())
        time.sleep(1.0)        # let the shims settle (berth's trims itself after the start)
        for cid in berth_ids:
            with open(os.path.join(bdir, cid, "shim.json")) as f:
                pid = json.load(f)["shim_pid"]
            res["berth shim"].append((pid, mem_of(pid)))
        for cid in podman_ids:
            pid = int(podman.cmd_ok(["inspect", "--format", "{{.State.ConmonPid}}", cid]).stdout.strip())
            res["conmon"].append((pid, mem_of(pid)))
    finally:
        if berth_ids:
            subprocess.run(bcmd + ["container", "rm", "-f"] + berth_ids, capture_output=True, env=ENV)
        if podman_ids:
            podman.cmd_ok(["rm", "-f", "-t", "0"] + podman_ids)
    print("shim memory per running container: `container run -d busybox sleep 1000` x%d per engine, all running"
          % n)
    print("  berth shim: `berth shim serve` (pid from containers/ID/shim.json); conmon: %s --runtime %s %s"
          % (podman.shown(), eng.runc, " ".join(podman.run_args(["busybox", "sleep", "1000"], detach=True))))
    print("  (pid from podman inspect .State.ConmonPid); KiB from /proc/PID/status (VmRSS) and /proc/PID/smaps_rollup;")
    print("  Private_Dirty is what each further container adds (Pss also splits shared pages among all their users)")
    out = {}
    keys = ("VmRSS", "Pss", "Private_Dirty")
    for who, xs in res.items():
        out[who] = {k: statistics.median(m[k] for _, m in xs) for k in keys}
        print("  %-11s %s   (each VmRSS/Pss/Private_Dirty: %s)" % (
            who, "  ".join("%s %5d" % (k, out[who][k]) for k in keys),
            ", ".join("%d/%d/%d" % tuple(m[k] for k in keys) for _, m in xs)))
    b, c = out["berth shim"], out["conmon"]
    print("  berth shim / conmon: %s  (target: at or below conmon -> %s)" % (
        ", ".join("%s %.2fx" % (k, b[k] / c[k]) for k in keys),
        "met" if all(b[k] <= c[k] for k in keys) else
        "met for " + (", ".join(k for k in keys if b[k] <= c[k]) or "none")))
    return out


# ------------------------------------------------------------------ build

BUILD_DOCKERFILE = """FROM docker.io/library/busybox:latest AS base
ENV A=1
RUN true
WORKDIR /app
COPY big.bin /app/big.bin
RUN echo step > /s1
FROM base AS build
LABEL stage=build
COPY src/ /app/src/
RUN ls /app/src | wc -l > /count
RUN echo two > /s2
ARG V=1
RUN echo $V > /v
FROM base
COPY --from=build /count /count
COPY --from=build /v /v
ENV B=2
EXPOSE 8080
USER root
RUN true
CMD ["sh"]
"""


def section_build(berth, work, iters):
    archive = os.path.join(work, "busybox-build.tar")
    busybox_archive(archive)
    data = os.path.join(work, "data-build")
    run([berth, "--data-root", data, "image", "load", "-q", "-i", archive])
    bst = os.path.join(work, "buildah-store")
    buildah = ["buildah", "--root", bst + "/root", "--runroot", bst + "/run", "--storage-driver", "overlay"]
    run(buildah + ["pull", "-q", "docker-archive:" + archive])
    ctx = os.path.join(work, "build-ctx")
    for d in range(20):
        os.makedirs(os.path.join(ctx, "src", "d%02d" % d))
        for f in range(100):
            with open(os.path.join(ctx, "src", "d%02d" % d, "f%03d.txt" % f), "w") as fh:
                fh.write("file %d %d\n" % (d, f))
    with open(os.path.join(ctx, "big.bin"), "wb") as fh:
        fh.write(os.urandom(50 << 20))
    with open(os.path.join(ctx, "Dockerfile"), "w") as fh:
        fh.write(BUILD_DOCKERFILE)
    runs_n = 10
    steps = os.path.join(work, "build-steps")
    os.makedirs(steps)
    for name, body in (("run0", ""), ("run%d" % runs_n, "".join("RUN true # %d\n" % i for i in range(runs_n)))):
        os.makedirs(os.path.join(steps, name))
        with open(os.path.join(steps, name, "Dockerfile"), "w") as fh:
            fh.write("FROM docker.io/library/busybox:latest\nENV X=1\n" + body)
    runtime = ["--runtime", shutil.which("runc", path=ENV["PATH"]) or "runc"]
    cmds = {
        "berth": lambda c, f, extra: [berth, "--data-root", data, "--root", os.path.join(work, "build-state"),
                                      "image", "build", "-q", "--network", "host", "-t", "bench-build"] + extra + ["-f", f, c],
        "buildah": lambda c, f, extra: buildah + ["bud", "--layers", "-q"] + runtime + ["--network", "host",
                                                  "-t", "bench-build"] + extra + ["-f", f, c],
    }
    res = {(w, k): [] for w in cmds for k in ("cold", "nochange", "onefile", "run0", "runN")}
    edit = os.path.join(ctx, "src", "d07", "f042.txt")
    for i in range(iters):
        order = list(cmds) if i % 2 == 0 else list(cmds)[::-1]
        for who in order:
            c = cmds[who]
            df = os.path.join(ctx, "Dockerfile")
            res[(who, "cold")].append(timed(c(ctx, df, ["--no-cache"])))
            res[(who, "nochange")].append(timed(c(ctx, df, [])))
            with open(edit, "w") as fh:
                fh.write("edited %d %s\n" % (i, who))
            res[(who, "onefile")].append(timed(c(ctx, df, [])))
            for k, name in (("run0", "run0"), ("runN", "run%d" % runs_n)):
                d = os.path.join(steps, name)
                res[(who, k)].append(timed(c(d, os.path.join(d, "Dockerfile"), ["--no-cache"])))
    print("build of a multi-stage Dockerfile (20 steps, 2,000 files + 50 MB context), %d iterations:" % iters)
    out = {}
    targets = {"cold": 0.5, "nochange": 0.2, "onefile": 0.2}
    for k, what in (("cold", "cold build (--no-cache)"), ("nochange", "rebuild, nothing changed"),
                    ("onefile", "rebuild, one file changed")):
        b = statistics.median(res[("berth", k)])
        h = statistics.median(res[("buildah", k)])
        print("  %-28s berth %8.1f ms   buildah %8.1f ms   berth/buildah %.2fx (target at most %.1fx)" % (
            what, b * 1000, h * 1000, b / h, targets[k]))
        out[k] = {"berth_ms": b * 1000, "buildah_ms": h * 1000, "ratio": b / h}
    for who in cmds:
        per = (statistics.median(res[(who, "runN")]) - statistics.median(res[(who, "run0")])) / runs_n
        print("  one RUN true step: %-8s %6.1f ms%s" % (who, per * 1000, "  (target under 30 ms)" if who == "berth" else ""))
        out["run_step_" + who + "_ms"] = per * 1000
    run(buildah + ["rmi", "-a", "-f"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", default=os.environ.get("BERTH", "target/x86_64-unknown-linux-gnu/release/berth"))
    ap.add_argument("--iterations", type=int, default=5, help="unpack and pull iterations (default 5)")
    ap.add_argument("--container-iterations", type=int, default=20,
                    help="iterations of the containers section (default 20)")
    ap.add_argument("--warmup", type=int, default=2, help="unrecorded iterations first (containers section)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the shuffled order (containers section)")
    ap.add_argument("--cells", default="", help="only the containers cells whose name contains one of these (comma list)")
    ap.add_argument("--rss-containers", type=int, default=3, help="detached containers per engine for rss")
    ap.add_argument("--build-iterations", type=int, default=3, help="iterations of the build section (default 3)")
    ap.add_argument("--sections", default="unpack,pull,push,push-plain,containers,dualstack,rss,build,rootless")
    ap.add_argument("--json", help="write the medians to this file")
    ap.add_argument("--baseline", help="another berth binary (e.g. a build of the previous commit) to time too")
    a = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if os.geteuid() != 0:
        die("must run as root")
    berth = os.path.abspath(a.berth)
    if not os.access(berth, os.X_OK):
        die("no berth binary at %s (cargo build --release)" % berth)
    sections = [x.strip() for x in a.sections.split(",") if x.strip()]
    for s in sections:
        if s not in ("unpack", "pull", "push", "push-plain", "containers", "dualstack", "rss", "build", "rootless"):
            die("unknown section %r" % s)
    need = {"unpack": ["umoci"], "pull": ["skopeo", "docker-registry", "umoci"], "push": ["skopeo", "docker-registry"], "push-plain": ["skopeo", "docker-registry"],
            "containers": ["podman", "conmon", "runc", "crun", "iptables", "unshare"], "rss": ["podman", "conmon", "runc"],
            "dualstack": ["podman", "conmon", "runc", "ip6tables"], "build": ["buildah", "runc", "busybox"],
            "rootless": ["podman", "runc", "slirp4netns", "newuidmap", "setpriv"]}
    for s in sections:
        for tool in need[s]:
            if not shutil.which(tool, path=ENV["PATH"]):
                die("%s is not installed (scripts/deps.sh bench)" % tool)

    if os.environ.get("BERTH_ENGINE_BENCH_CHILD") != "1":
        # The parent: make our cgroups, run the measuring child in them, remove them.
        cg = Cgroups()
        cg.create()
        signal.signal(signal.SIGINT, signal.SIG_IGN)      # the child gets it too, cleans up, exits
        try:
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__)] + sys.argv[1:],
                                 env=dict(os.environ, BERTH_ENGINE_BENCH_CHILD="1"), preexec_fn=cg.enter)
            signal.signal(signal.SIGTERM, lambda *_: p.send_signal(signal.SIGTERM))
            rc = p.wait()
        finally:
            left = cg.remove()
        for d in left:
            print("bench: cgroup not removed: " + d, file=sys.stderr)
        sys.exit(rc if rc >= 0 else 128 - rc)

    check_own_cgroup()

    def interrupted(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupted)
    # On tmpfs, as the runtime bench: the disk writeback of other jobs on this shared host is
    # noise for every tool. There the store's syncfs (durability of snapshots) costs nothing;
    # BENCH_TMP=/var/tmp measures on disk, where it does.
    work = tempfile.mkdtemp(prefix="berth-engine-bench-", dir=os.environ.get("BENCH_TMP", "/dev/shm"))
    out = {}
    eng = None
    try:
        print("engine bench: %s, %d cpus, load %.2f %.2f %.2f, cgroup %s" % (
            (berth, os.cpu_count()) + os.getloadavg() + (open("/proc/self/cgroup").read().splitlines()[0].split(":", 2)[2],)))
        layout = None
        for s in sections:
            if s in ("unpack", "pull", "push", "push-plain") and layout is None:
                layout, raw, gz = debian_layout(work)
            if s in ("containers", "dualstack", "rss") and eng is None:
                eng = Engines(berth, work)
                eng.setup()
            if s == "unpack":
                out[s] = section_unpack(berth, work, layout, raw / 1e6, a.iterations,
                                        os.path.abspath(a.baseline) if a.baseline else None)
            elif s == "pull":
                out[s] = section_pull(berth, work, layout, gz / 1e6, raw / 1e6, a.iterations,
                                      os.path.abspath(a.baseline) if a.baseline else None)
            elif s == "push":
                out[s] = section_push(berth, work, layout, gz / 1e6, a.iterations)
                # The Debian compiler image the build tests use as a base (one ~150 MB layer),
                # copied to the work dir so that both tools read it from the same tmpfs.
                gcc = os.path.join(work, "debian-gcc")
                shutil.copytree(debian_gcc_layout(), gcc)
                out["push_gcc"] = section_push(berth, work, gcc, layout_gz_bytes(gcc, GCC_TAG) / 1e6, a.iterations,
                                               what="gcc", tag=GCC_TAG, name=GCC_NAME,
                                               title="the Debian image with gcc (debootstrap minbase + gcc, libc6-dev)")
            elif s == "push-plain":
                plain, praw = plain_layout(work, layout)
                out[s] = section_push(berth, work, plain, praw / 1e6, a.iterations, "plain", "plain tars, gzip-compressed on the way")
            elif s == "containers":
                out[s] = section_containers(eng, berth, work, a.container_iterations, a.warmup, a.seed,
                                            [x for x in a.cells.split(",") if x])
            elif s == "dualstack":
                out[s] = section_dualstack(eng, work, a.container_iterations, a.warmup, a.seed)
            elif s == "rss":
                out[s] = section_rss(eng, a.rss_containers)
            elif s == "build":
                out[s] = section_build(berth, work, a.build_iterations)
            elif s == "rootless":
                out[s] = section_rootless(berth, a.container_iterations, a.warmup)
        print("engine bench: end, load %.2f %.2f %.2f" % os.getloadavg())
    except KeyboardInterrupt:
        print("bench: interrupted, cleaning up", file=sys.stderr)
    finally:
        if eng is not None:
            for e in eng.cleanup():
                print("bench: clean-up: " + e)
        umount_under(work)
        shutil.rmtree(work, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
