#!/usr/bin/env python3
"""Writes the seed inputs of the libFuzzer targets into fuzz/seeds/<target>/ (the same seeds
as the in-binary fuzzer's, src/fuzz/). Run once after changing a seed; the files are committed."""
import io, json, os, subprocess, sys, tarfile

here = os.path.dirname(os.path.abspath(__file__))
seeds = {}

def add(target, *items):
    seeds.setdefault(target, []).extend(x if isinstance(x, bytes) else x.encode() for x in items)

# config.json: `berth spec`'s default, and one with a seccomp section and a sysctl.
# Usage: make-seeds.py BERTH (a built berth binary, for `berth spec`).
import tempfile
with tempfile.TemporaryDirectory() as b:
    subprocess.check_call([sys.argv[1], "spec", "--bundle", b])
    spec = json.load(open(os.path.join(b, "config.json")))
add("config_json", json.dumps(spec, indent=2))
spec["linux"]["seccomp"] = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1, "architectures": ["SCMP_ARCH_X86_64"],
    "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
                 {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
                 {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
                  "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
                 {"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}
spec["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
add("config_json", json.dumps(spec))

# docker seccomp profiles: moby's shape (caps includes/excludes, archMap, minKernel).
prof = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
        {"names": ["read", "write", "openat", "exit_group"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
        {"names": ["mount", "umount2"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390x"]},
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
        {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "includes": {"arches": ["amd64"]}},
    ]}
add("seccomp_profile", b"\x1f" + json.dumps(prof).encode(), b"\x00" + json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}).encode())

add("image_reference", "busybox", "library/busybox:1.36", "127.0.0.1:5000/a/b/c:tag",
    "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "localhost/x:y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "[::1]:5000/img")

d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
add("manifest_index", json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d, "size": 7},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": 9},
               {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": 1},
               {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d, "size": 1}]}),
    json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 7,
                   "platform": {"architecture": "amd64", "os": "linux"}},
                  {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 7,
                   "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}}]}),
    json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"],
                "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}},
                "rootfs": {"type": "layers", "diff_ids": [d]}, "history": [{"created_by": "x"}]}))

def tar_of(entries, fmt=tarfile.GNU_FORMAT, pax=None):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt, pax_headers=pax or {}) as t:
        for name, kind, data in entries:
            i = tarfile.TarInfo(name)
            i.type = kind
            i.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
            i.mtime = 1700000000
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                i.linkname = data
                t.addfile(i)
            elif kind in (tarfile.CHRTYPE, tarfile.FIFOTYPE):
                i.devmajor, i.devminor = 1, 3
                t.addfile(i)
            else:
                i.size = len(data)
                t.addfile(i, io.BytesIO(data.encode()))
    return b.getvalue()

P = "/tmp/berth-fuzz-unpack"
R, D, S, L = tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
tars = [
    tar_of([("etc/", D, ""), ("etc/hostname", R, "box\n"), ("bin/sh", S, "busybox"), ("bin/link", L, "etc/hostname"),
            ("etc/.wh.gone", R, ""), ("var/.wh..wh..opq", R, ""), ("dev/null", tarfile.CHRTYPE, ""), ("p", tarfile.FIFOTYPE, "")]),
    tar_of([("../escaped", R, "x")]),
    tar_of([("evil", S, P), ("evil/escaped", R, "x")]),
    tar_of([("rel", S, "../.."), ("rel/escaped", R, "x")]),
    tar_of([("hard", L, "../escaped"), ("hard2", L, "/etc/passwd")]),
    tar_of([("c", L, "/tmp/berth-fuzz-canary"), ("c", R, "x")]),
    tar_of([("t", S, "/tmp"), ("t/berth-fuzz-canary", R, "x")]),
    tar_of([("u", S, "../../../../tmp/berth-fuzz-canary"), ("u", R, "x")]),
    tar_of([("d/", D, ""), ("d", S, "/"), ("d/escaped", R, "x")]),
    tar_of([("a/" * 60 + "long", R, "x"), ("x", R, "y")], fmt=tarfile.PAX_FORMAT,
           pax={"SCHILY.xattr.user.k": "v", "mtime": "1700000000.5"}),
]
import gzip
tars.append(gzip.compress(tars[0], mtime=0))
add("layer_unpack", *[bytes([i % 2]) + t for i, t in enumerate(tars)])

add("dockerfile",
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox AS base\nRUN echo a `\n  && echo b\nCOPY --chown=1:1 [\"a b\", \"/c\"]\n",
    "FROM alpine\nARG X=1\nENV A=$X B=\"two words\"\nRUN <<EOF\necho hi\nEOF\nCOPY <<-EOT /f\n\tx\n\tEOT\n",
    "FROM scratch\nLABEL a=b \\\n  c=\"d e\"\nHEALTHCHECK --interval=5s CMD [\"true\"]\nONBUILD RUN x\nCMD [\"sh\", \"-c\", \"x\"]\n",
    "FROM busybox\nRUN --mount=type=cache,target=/c --network=none echo ${A:-b}\nEXPOSE 80/tcp 53/udp\nUSER 1:1\nWORKDIR /w\nENTRYPOINT [\"sh\"]\n")
add("word_expansion", *[bytes([m]) + w.encode() for m, w in [
    (0, "${A:-def} $B ${C:+x} '${A}' \"$A b\""), (2, "${A#*/} ${A##*/} ${A%.*} ${A%%.*} ${A/x/y} ${A//x/y}"),
    (4, "${U?unset} \\$A ${A:?msg} $"), (9, "`${A}` ${A:-${B:-${C}}}")]])
add("dockerignore",
    "*.md\n!README.md\n**/tmp\n# c\n/abs/../x\n\0README.md\nREADME.mdx\na/tmp/b\nabs/x\n",
    "**\n!keep/**\n[a-c]?/*\n\\#x\n\0keep/a/b\nb1/z\n#x\n",
    "dir/\n!dir/in\n../up\n\0dir\ndir/in\ndir/out\n")
add("cni_result", json.dumps({
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "br-x", "mac": "aa:bb:cc:dd:ee:ff"},
                   {"name": "eth0", "mac": "02:42:ac:11:00:02", "sandbox": "/run/berth/netns/c"}],
    "ips": [{"interface": 1, "address": "10.88.0.2/16", "gateway": "10.88.0.1"},
            {"interface": 1, "address": "fd00::2/64", "gateway": "fd00::1"}],
    "dns": {}}))
add("registry_auth",
    "Bearer realm=\"https://auth.example/token\",service=\"registry\",scope=\"repository:a/b:pull\"",
    "Basic realm=\"Registry Realm\"", "bearer realm=x, service=\"a,b\", error=\"insufficient_scope\"",
    "dXNlcjpwYXNzd29yZA==")

for target, items in seeds.items():
    d = os.path.join(here, "seeds", target)
    os.makedirs(d, exist_ok=True)
    for n, data in enumerate(items):
        with open(os.path.join(d, f"seed-{n}"), "wb") as f:
            f.write(data)
print("\n".join(f"{t}: {len(i)}" for t, i in sorted(seeds.items())))
