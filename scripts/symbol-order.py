#!/usr/bin/env python3
"""Writes link/symbol-order.txt: the order in which the linker lays out berth's functions.

The runtime's commands (create, start, state, kill, delete, exec, ...) run for a few
milliseconds and touch a few hundred functions, but the kernel maps a file-backed page
together with its neighbours (64 KiB fault-around), so functions scattered through the 5 MB
text made every call map about 3 MB of it. Laying out first the functions those commands
really execute, then the rest of the runtime, and the engine (images, networks, shim, TLS,
compression) last, keeps each call on a few dense pages.

How: a release build of the same code and profile (the release profile keeps the symbol
table; a different profile would change the hashes in every mangled name) runs the runtime's
commands under valgrind's callgrind, which lists every function executed, by its mangled name. The init that the runtime re-executes inside the container cannot run under
valgrind; its code (process, rootfs, namespaces, capabilities, seccomp, cgroups) comes in the
second tier. Names that a later change of the code no longer has are ignored by the linker, so
a stale list only costs memory, never correctness. Regenerate with `make symbol-order`.

Usage (root): scripts/symbol-order.py BERTH_WITH_SYMBOLS OUT
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

# The runtime's own code (the second tier): berth's runtime modules (legacy mangling: length +
# name), and the crates only the runtime uses.
RUNTIME_PATHS = [
    "5berth9container", "5berth7process", "5berth6rootfs", "5berth7cgroups", "5berth7seccomp",
    "5berth12capabilities", "5berth10namespaces", "5berth5hooks", "5berth7logging", "5berth8spec_cmd",
    "5berth5units", "5berth4main", "8oci_spec", "10serde_json", "4caps", "3nix", "9libseccomp",
    "4clap", "9clap_lex", "12clap_builder",
]
# libseccomp's C functions (the runtime compiles filters with it).
RUNTIME_C = re.compile(r"^(seccomp_|_db_|db_|arch_|gen_bpf|_gen_bpf|_hsh_|_blk_|_bpf_|sys_|abi_)")


def callgrind_functions(path):
    names = []
    with open(path, errors="replace") as f:
        for line in f:
            m = re.match(r"c?fn=\(\d+\) (.+)", line)
            if m:
                names.append(m.group(1).strip())
    return names


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    berth, out = os.path.abspath(sys.argv[1]), sys.argv[2]
    if not shutil.which("valgrind"):
        sys.exit("symbol-order: valgrind is not installed (apt-get install valgrind)")
    tmp = tempfile.mkdtemp(prefix="berth-order-")
    root = os.path.join(tmp, "root")
    bundle = os.path.join(tmp, "bundle")
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([os.path.join(here, "busybox-bundle.sh"), berth, bundle, "sleep", "1000"], check=True,
                   stdout=subprocess.DEVNULL)
    cg = os.path.join(tmp, "cg")
    os.mkdir(cg)
    n = [0]

    def traced(*args, cwd=None, stdin=None):
        n[0] += 1
        subprocess.run(["valgrind", "--tool=callgrind", "--demangle=no",
                        "--callgrind-out-file=%s/%d.out" % (cg, n[0]), berth, "--root", root, *args],
                       cwd=cwd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def plain(*args, **kw):
        return subprocess.run([berth, "--root", root, *args], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, **kw)

    cgp = "/berth-symbol-order"
    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = f.read()
    with open(cfg_path, "w") as f:
        f.write(cfg.replace('"linux": {', '"linux": {\n\t\t"cgroupsPath": "%s",' % cgp, 1))
    try:
        # Commands that need no container, and create/run up to the clone (valgrind cannot
        # follow the re-exec into the init).
        traced("--help")
        traced("--version")
        traced("state", "none")
        traced("list")
        traced("list", "-f", "json")
        traced("features")
        traced("spec", "-b", tmp)
        traced("create", "--pid-file", os.path.join(tmp, "pid"), "traced", cwd=bundle)
        plain("delete", "-f", "traced")
        traced("run", "-d", "traced2", cwd=bundle)
        plain("delete", "-f", "traced2")
        # A real container, made without valgrind, for the commands that act on one.
        plain("create", "c1", cwd=bundle, check=True)
        traced("state", "c1")
        traced("start", "c1")
        traced("state", "c1")
        traced("ps", "c1")
        traced("events", "--stats", "c1")
        traced("pause", "c1")
        traced("resume", "c1")
        traced("update", "--pids-limit", "100", "c1")
        res = os.path.join(tmp, "resources.json")
        with open(res, "w") as f:
            f.write('{"pids": {"limit": 200}}')
        traced("update", "-r", res, "c1")
        with open(res) as f:
            traced("update", "-r", "-", "c1", stdin=f)
        traced("exec", "c1", "true")
        traced("kill", "c1", "KILL")
        traced("delete", "c1")
        plain("create", "c2", cwd=bundle, check=True)
        traced("delete", "-f", "c2")
    finally:
        for c in ("c1", "c2", "traced", "traced2"):
            plain("delete", "-f", c)
    hot = []
    seen = set()
    for i in range(1, n[0] + 1):
        p = "%s/%d.out" % (cg, i)
        if not os.path.exists(p):
            continue
        for name in callgrind_functions(p):
            if name not in seen:
                seen.add(name)
                hot.append(name)
    nm = subprocess.run(["nm", "--defined-only", berth], capture_output=True, text=True, check=True).stdout
    defined = []
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] in "tTwWi":
            defined.append(parts[2])
    have = set(defined)
    hot = [h for h in hot if h in have]
    hot_set = set(hot)
    second = [s for s in defined if s not in hot_set and (any(p in s for p in RUNTIME_PATHS) or RUNTIME_C.match(s))]
    with open(out, "w") as f:
        f.write("\n".join(hot + second) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    print("symbol-order: %d functions executed by the runtime's commands, %d more of the runtime, of %d"
          % (len(hot), len(second), len(defined)))


if __name__ == "__main__":
    main()
