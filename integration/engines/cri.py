#!/usr/bin/python3
"""Minimal CRI client (k8s runtime.v1 RuntimeService) for integration/engines/containerd.sh.

It plays the kubelet's part well enough to run a pod through a containerd runtime handler:
protobuf is encoded by hand (field numbers from the CRI api.proto) and sent with grpcio,
so the only dependency is Debian's python3-grpcio. Pods use the host network (no CNI).

Usage: cri.py SOCK CMD ARGS...
  version                              runtime name, version, api version
  runp NAME HANDLER CGROUP_PARENT      run a pod sandbox; prints its id
  create POD NAME CGROUP_PARENT IMAGE MEMORY_BYTES CMD...   prints the container id
  start|rm ID, stop ID [TIMEOUT], stopp|rmp POD
  status ID                            STATE EXIT_CODE REASON MESSAGE
  wait ID SECONDS                      waits until exited; prints the exit code
  exec ID CMD...                       ExecSync: prints stdout/stderr, exits with its code
  stats ID                             memory working set bytes
$CRI_LOG_DIR, if set, is the pods' log directory (LOG_DIR/POD/NAME.log).
Exits 125 on a gRPC error, printing its code and message."""
import os, sys, time
import grpc

def varint(n):
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def fld(num, val):
    """encode one field: int -> varint, str/bytes -> length-delimited, list -> repeated"""
    if val is None:
        return b""
    if isinstance(val, list):
        return b"".join(fld(num, v) for v in val)
    if isinstance(val, bool) or isinstance(val, int):
        return varint(num << 3) + varint(int(val))
    if isinstance(val, str):
        val = val.encode()
    return varint(num << 3 | 2) + varint(len(val)) + val

def msg(*fields):
    return b"".join(fld(n, v) for n, v in fields)

def strmap(num, d):
    return b"".join(fld(num, msg((1, k), (2, v))) for k, v in d.items())

def parse(buf):
    """decode a message into {field number: [values]} (varints as int, the rest as bytes)"""
    out, i = {}, 0
    def rv():
        nonlocal i
        n = s = 0
        while True:
            b = buf[i]; i += 1
            n |= (b & 0x7F) << s; s += 7
            if not b & 0x80:
                return n
    while i < len(buf):
        key = rv(); num, wt = key >> 3, key & 7
        if wt == 0:
            v = rv()
        elif wt == 2:
            ln = rv(); v = bytes(buf[i:i + ln]); i += ln
        elif wt == 1:
            v = bytes(buf[i:i + 8]); i += 8
        elif wt == 5:
            v = bytes(buf[i:i + 4]); i += 4
        else:
            raise ValueError("wire type %d" % wt)
        out.setdefault(num, []).append(v)
    return out

def one(m, num, default=None):
    return m.get(num, [default])[0]

def sandbox_config(name, cgparent):
    ns = msg((1, 2), (2, 1), (3, 0))  # network NODE (no CNI needed), pid CONTAINER, ipc POD
    linux = msg((1, cgparent), (2, msg((1, ns))))
    meta = msg((1, name), (2, name + "-uid"), (3, "berthtest"), (4, 0))
    logs = os.environ.get("CRI_LOG_DIR")
    # no hostname: with the host network the pod has the host's UTS namespace
    return msg((1, meta), (3, logs and os.path.join(logs, name))) + fld(8, linux)

class Client:
    def __init__(self, sock):
        self.ch = grpc.insecure_channel("unix://" + sock)
    def call(self, method, req, timeout=60):
        f = self.ch.unary_unary("/runtime.v1.RuntimeService/" + method,
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
        return parse(f(req, timeout=timeout))

def main():
    sock, cmd, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    c = Client(sock)
    if cmd == "version":
        r = c.call("Version", msg((1, "v1")))
        print(one(r, 2, b"").decode(), one(r, 3, b"").decode(), one(r, 4, b"").decode())
    elif cmd == "runp":  # NAME HANDLER CGROUP_PARENT -> pod id
        name, handler, cgp = args
        r = c.call("RunPodSandbox", msg((1, sandbox_config(name, cgp)), (2, handler)), timeout=120)
        print(one(r, 1).decode())
    elif cmd == "create":  # POD NAME CGROUP_PARENT IMAGE MEMORY_BYTES CMD... -> container id
        pod, name, cgp, image, mem = args[:5]
        res = msg((4, int(mem))) if int(mem) else b""
        cfg = msg((1, msg((1, name), (2, 0))), (2, msg((1, image))), (3, args[5:]),
                  (11, name + ".log")) + fld(15, msg((1, res)))
        r = c.call("CreateContainer", msg((1, pod), (2, cfg), (3, sandbox_config(pod_name(pod, c), cgp))))
        print(one(r, 1).decode())
    elif cmd == "start":
        c.call("StartContainer", msg((1, args[0])))
    elif cmd == "status":  # ID -> "STATE EXIT_CODE [MESSAGE]"
        st = parse(one(c.call("ContainerStatus", msg((1, args[0]))), 1, b""))
        states = ["CREATED", "RUNNING", "EXITED", "UNKNOWN"]
        print(states[one(st, 3, 0)], one(st, 7, 0), one(st, 10, b"").decode(), one(st, 11, b"").decode())
    elif cmd == "wait":  # ID SECONDS: wait until exited, print the exit code
        end = time.time() + float(args[1])
        while time.time() < end:
            st = parse(one(c.call("ContainerStatus", msg((1, args[0]))), 1, b""))
            if one(st, 3, 0) == 2:
                code = one(st, 7, 0)
                print(code - (1 << 64) if code >= 1 << 63 else code)
                return 0
            time.sleep(0.2)
        print("timeout"); return 1
    elif cmd == "exec":  # ID CMD... -> stdout, stderr; exits with the command's code
        r = c.call("ExecSync", msg((1, args[0]), (2, args[1:]), (3, 30)))
        sys.stdout.write(one(r, 1, b"").decode()); sys.stderr.write(one(r, 2, b"").decode())
        return one(r, 3, 0)
    elif cmd == "stats":  # ID -> memory working set bytes
        st = parse(one(c.call("ContainerStats", msg((1, args[0]))), 1, b""))
        mem = parse(one(st, 3, b""))
        print(one(parse(one(mem, 2, b"")), 1, 0))
    elif cmd == "stop":
        c.call("StopContainer", msg((1, args[0]), (2, int(args[1]) if len(args) > 1 else 10)))
    elif cmd == "rm":
        c.call("RemoveContainer", msg((1, args[0])))
    elif cmd == "stopp":
        c.call("StopPodSandbox", msg((1, args[0])))
    elif cmd == "rmp":
        c.call("RemovePodSandbox", msg((1, args[0])))
    else:
        print("unknown command " + cmd, file=sys.stderr); return 2
    return 0

def pod_name(pod, c):
    st = parse(one(c.call("PodSandboxStatus", msg((1, pod))), 1, b""))
    return one(parse(one(st, 2, b"")), 1, b"").decode()

if __name__ == "__main__":
    try:
        sys.exit(main())
    except grpc.RpcError as e:
        print("cri: %s: %s" % (e.code().name, e.details()), file=sys.stderr)
        sys.exit(125)
