#!/usr/bin/python3
# Run ARGV on a fresh pseudo-terminal of ROWSxCOLS, type INPUT once the output shows PROMPT
# (a regex; empty: right away), print everything read from the terminal, exit with ARGV's
# status. The terminal's input side stays open (no EOF is typed, unlike `script < /dev/null`),
# and ARGV is killed after 40 s.
# Usage: pty-run.py ROWS COLS PROMPT INPUT ARGV...
import fcntl, os, pty, re, select, struct, sys, termios, time
rows, cols, prompt, data, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]
pid, fd = pty.fork()
if pid == 0:
    os.execvp(argv[0], argv)
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
buf, sent, t0 = b"", False, time.time()
while time.time() - t0 < 40:
    if not sent and (not prompt or re.search(prompt.encode(), buf)):
        os.write(fd, data.encode().replace(b"\n", b"\r"))
        sent = True
    r, _, _ = select.select([fd], [], [], 0.2)
    if fd in r:
        try:
            d = os.read(fd, 4096)
        except OSError:
            break
        if not d:
            break
        buf += d
sys.stdout.buffer.write(buf)
sys.stdout.flush()
if time.time() - t0 >= 40:
    os.kill(pid, 9)
_, st = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(st) if hasattr(os, "waitstatus_to_exitcode") else (st >> 8))
