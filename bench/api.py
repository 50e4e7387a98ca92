#!/usr/bin/env python3
"""The Docker Engine API service against dockerd, interleaved in one run.

  run   `docker run --rm --network none busybox true` through berth's socket
        (`berth system service`) and through a private Debian dockerd 20.10 (with its own
        containerd and runc), the same docker CLI for both: medians and the ratio
  rss   idle memory of the service against dockerd plus its containerd (VmRSS, Pss)

Both daemons get their own data root, sockets and cgroup (berth-engine-bench-PID); dockerd runs
without a bridge or iptables rules. Everything is stopped by pid and removed at the end.
Python 3 standard library only; must run as root. See bench/README.md.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine  # noqa: E402  (busybox image, cgroups, memory readings)

DOCKER_KEY = "/etc/docker/key.json"


def wait_socket(docker, sock, proc, what, secs=60):
    t = time.time()
    while time.time() - t < secs:
        if proc.poll() is not None:
            engine.die("%s exited early" % what)
        if subprocess.run(docker + ["-H", "unix://" + sock, "version"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0:
            return
        time.sleep(0.2)
    engine.die("%s did not come up" % what)


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open("/proc/%s/stat" % p) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except (OSError, ValueError, IndexError):
                pass
    return out


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return "?"


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", required=True)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--json")
    a = ap.parse_args()
    if os.geteuid() != 0:
        engine.die("must run as root")
    docker = [shutil.which("docker") or engine.die("docker CLI missing (scripts/deps.sh bench)")]
    if not shutil.which("dockerd"):
        engine.die("dockerd missing (apt-get install docker.io)")
    work = tempfile.mkdtemp(prefix="berth-api-bench.")
    os.chmod(work, 0o755)
    cg = engine.Cgroups()
    cg.create()
    key_was_there = os.path.exists(DOCKER_KEY)
    run_docker_was_there = os.path.exists("/run/docker")
    svc = dd = None
    env = dict(engine.ENV, DOCKER_CONFIG=os.path.join(work, "cfg"))
    try:
        berth = [a.berth, "--root", os.path.join(work, "b-run"), "--data-root", os.path.join(work, "b-data")]
        bsock = os.path.join(work, "berth.sock")
        dsock = os.path.join(work, "dockerd.sock")
        arch = os.path.join(work, "busybox.tar")
        engine.busybox_archive(arch)
        subprocess.run(berth + ["image", "load", "-i", arch], check=True, stdout=subprocess.DEVNULL)
        log_b = open(os.path.join(work, "service.log"), "w")
        svc = subprocess.Popen(berth + ["system", "service", "--host", "unix://" + bsock], stdout=log_b,
                               stderr=log_b, preexec_fn=cg.enter, env=engine.ENV)
        log_d = open(os.path.join(work, "dockerd.log"), "w")
        dd = subprocess.Popen(["dockerd", "--data-root", os.path.join(work, "d-data"), "--exec-root",
                               os.path.join(work, "d-exec"), "-H", "unix://" + dsock, "--pidfile",
                               os.path.join(work, "d.pid"), "--bridge=none", "--iptables=false", "--ip-masq=false",
                               "--storage-driver", "overlay2", "--exec-opt", "native.cgroupdriver=cgroupfs",
                               "--cgroup-parent", "/" + cg.name + "-dockerd"],
                              stdout=log_d, stderr=log_d, preexec_fn=cg.enter, env=engine.ENV)
        wait_socket(docker, bsock, svc, "berth system service")
        wait_socket(docker, dsock, dd, "dockerd")
        subprocess.run(docker + ["-H", "unix://" + dsock, "load", "-i", arch], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        time.sleep(3)  # idle: both settled
        rss_b = engine.mem_of(svc.pid)
        daemons = [dd.pid] + [c for c in children(dd.pid) if comm(c) == "containerd"]
        rss_d = {}
        for p in daemons:
            for k, v in engine.mem_of(p).items():
                rss_d[k] = rss_d.get(k, 0) + v
        cmd = ["run", "--rm", "--network", "none", "busybox", "true"]
        times = {"berth": [], "dockerd": []}
        socks = {"berth": bsock, "dockerd": dsock}
        for i in range(a.warmup + a.iterations):
            for name in (("berth", "dockerd") if i % 2 == 0 else ("dockerd", "berth")):
                t = time.perf_counter()
                r = subprocess.run(docker + ["-H", "unix://" + socks[name]] + cmd, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                dt = time.perf_counter() - t
                if r.returncode != 0:
                    engine.die("%s: docker run failed: %s" % (name, r.stderr.decode(errors="replace").strip()))
                if i >= a.warmup:
                    times[name].append(dt * 1000)
        mb, md = statistics.median(times["berth"]), statistics.median(times["dockerd"])
        print("api: docker run --rm --network none busybox true (%d iterations, interleaved)" % a.iterations)
        print("  %-28s median %7.1f ms  min %7.1f ms" % ("berth system service", mb, min(times["berth"])))
        print("  %-28s median %7.1f ms  min %7.1f ms" % ("dockerd 20.10 + containerd", md, min(times["dockerd"])))
        print("  ratio berth/dockerd: %.2fx (target <= 0.5x)" % (mb / md))
        print("idle memory (KiB)            VmRSS      Pss")
        print("  %-24s %8d %8d" % ("berth system service", rss_b.get("VmRSS", 0), rss_b.get("Pss", 0)))
        print("  %-24s %8d %8d" % ("dockerd + containerd", rss_d.get("VmRSS", 0), rss_d.get("Pss", 0)))
        print("  ratio berth/dockerd (Pss): %.3fx (target <= 0.1x)" % (rss_b.get("Pss", 0) / max(1, rss_d.get("Pss", 1))))
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"run_ms": times, "rss_kib": {"berth": rss_b, "dockerd": rss_d}}, f, indent=1)
    finally:
        stop(svc)
        stop(dd)
        subprocess.run(["umount", "-R", os.path.join(work, "d-exec")], stderr=subprocess.DEVNULL)
        engine.umount_tree(work)
        if not key_was_there and os.path.exists(DOCKER_KEY):
            os.remove(DOCKER_KEY)
        if not run_docker_was_there:
            for d in ("/run/docker/plugins", "/run/docker"):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        for h in cg.hier:
            for d in engine.cg_dirs_under(os.path.join(h, cg.name + "-dockerd")) if os.path.isdir(
                    os.path.join(h, cg.name + "-dockerd")) else []:
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        left = cg.remove()
        if left:
            print("warning: cgroups left: %s" % ", ".join(left), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
