#!/usr/bin/env python3
"""lmterm chat --no-tui in a pseudo-terminal: two turns, `end`, Ctrl-C while a reply streams (the reply stops,
the session goes on), `exit`; then Ctrl-C at the prompt quits; then Ctrl-Z while a reply streams, and its tokens/s leaves out the
time it was stopped. Exit 0 pass, 1 fail, 77 skip."""
import os, pty, re, select, signal, sys, time

LMTERM = os.environ.get("LMTERM", "./lmterm")
MODEL = os.environ.get("TEST_MODEL") or os.path.join(os.environ.get("top_srcdir", "."), "models", "tiny-en-zh")
PROMPT = b"double enter to end input >>> "
ARGS = [LMTERM, "chat", MODEL, "--no-tui", "--backend", "cpu", "--temperature", "0", "--max-new-tokens", "2000",
        "--cache-max-entry-count", "4096tok"]
fails = 0


def check(ok, what):
    global fails
    print(("ok: " if ok else "FAIL: ") + what)
    if not ok:
        fails += 1


class Term:
    def __init__(self, args=ARGS, job_control=False):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "dumb"
            if job_control:
                # as a shell runs a job: lmterm in its own process group, the terminal's foreground one, and its
                # parent (this session leader) waiting. Only a group that is not orphaned stops at Ctrl-Z.
                child = os.fork()
                if child == 0:
                    os.setpgid(0, 0)
                    signal.signal(signal.SIGTTOU, signal.SIG_IGN)
                    os.tcsetpgrp(0, os.getpid())
                    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
                    os.execv(LMTERM, args)
                _, status = os.waitpid(child, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xff)
            os.execv(LMTERM, args)
        self.buf = b""
        self.pos = 0  # what the previous reads matched ends here

    def read_until(self, pat, timeout=60):
        """read until the regex pat (bytes) matches after the current position; returns the text read"""
        t0 = time.time()
        start = self.pos
        while time.time() - t0 < timeout:
            m = re.search(pat, self.buf[start:])
            if m:
                self.pos = start + m.end()
                return self.buf[start:self.pos]
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    data = os.read(self.fd, 4096)
                except OSError:
                    break
                if not data:
                    break
                self.buf += data
        return None

    def drain(self, seconds):
        """read whatever comes for that long, so that a writer is not held up by a full pty"""
        t0 = time.time()
        while time.time() - t0 < seconds:
            r, _, _ = select.select([self.fd], [], [], 0.05)
            if r:
                try:
                    self.buf += os.read(self.fd, 4096)
                except OSError:
                    break
        self.pos = len(self.buf)

    def send(self, s):
        os.write(self.fd, s)

    def wait(self, timeout=30):
        t0 = time.time()
        while time.time() - t0 < timeout:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            try:  # keep draining so the child never blocks on a full pty
                r, _, _ = select.select([self.fd], [], [], 0.1)
                if r:
                    self.buf += os.read(self.fd, 4096)
            except OSError:
                time.sleep(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        return None


def main():
    if not os.access(LMTERM, os.X_OK):
        print("SKIP: no lmterm binary")
        return 77
    t = Term()
    check(t.read_until(re.escape(PROMPT)) is not None, "first prompt")
    for turn in (b"Continue the story: It was a dark and stormy night.", b"And then?"):
        t.send(turn + b"\r\r")
        got = t.read_until(rb"tokens/s.*\n(.|\n)*" + re.escape(PROMPT))
        check(got is not None, "reply to %r with a tokens/s line, then a prompt" % turn)
    t.send(b"end\r\r")
    check(t.read_until(rb"\(new session\)") is not None, "'end' starts a new session")
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt after 'end'")
    # a reply that runs long (greedy, the demo model repeats this until --max-new-tokens): interrupt it as it streams
    t.send(b"Continue: and a pretty girl, and a pretty girl, and a pretty girl, and a pretty girl\r\r")
    t.read_until(rb"pretty girl\r?\n")  # the echo of the input
    streamed = t.read_until(rb"[A-Za-z]{3,}", timeout=60)
    check(streamed is not None, "the reply streams")
    t.send(b"\x03")
    got = t.read_until(rb"stopped, (\d+) tokens")
    check(got is not None, "Ctrl-C stopped the reply")
    if got:
        n = int(re.search(rb"stopped, (\d+) tokens", got).group(1))
        check(n < 2000, "stopped after %d of at most 2000 tokens" % n)
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt after Ctrl-C")
    t.send(b"Hello\r\r")
    check(t.read_until(rb"tokens/s") is not None, "the session goes on after Ctrl-C")
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt")
    t.send(b"exit\r\r")
    rc = t.wait()
    check(rc == 0, "'exit' quits with status 0 (got %s)" % rc)
    check(b"<|im_" not in t.buf, "no special tokens shown")

    t = Term()
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt")
    t.send(b"\x03")
    rc = t.wait()
    check(rc == 0, "Ctrl-C at the prompt quits with status 0 (got %s)" % rc)
    return suspend_test()


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def suspend_test():
    """Ctrl-Z during a reply, fg after STOP_S seconds: the reply's decode time (tokens / tokens/s) must leave the
    stop out. Timed against the test's own clock, so a slow machine cannot fail it: without the stop counted,
    decode time <= (wall time from sending to the stats line) - STOP_S; with it counted, decode time is close to
    that wall time. The check leaves half of STOP_S as margin."""
    STOP_S = 2.0
    if not os.path.isdir("/proc/self"):
        print("skip: Ctrl-Z timing needs /proc")
        return 1 if fails else 0
    long_args = ARGS[:]
    i = long_args.index("--max-new-tokens")
    long_args[i + 1] = "8000"
    i = long_args.index("--cache-max-entry-count")
    long_args[i + 1] = "16384tok"
    long_args += ["--session-len", "8192"]
    t = Term(long_args, job_control=True)
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt (job control)")
    t0 = time.time()
    t.send(b"Continue: and a pretty girl, and a pretty girl, and a pretty girl, and a pretty girl\r\r")
    t.read_until(rb"pretty girl\r?\n")
    check(t.read_until(rb"[A-Za-z]{3,}", timeout=60) is not None, "the reply streams")
    pgid = os.tcgetpgrp(t.fd)  # lmterm's process group: the terminal's foreground one
    t.send(b"\x1a")
    t1 = time.time()
    while proc_state(pgid) != "T" and time.time() - t1 < 30:
        time.sleep(0.01)
    stopped = proc_state(pgid) == "T"
    check(stopped, "Ctrl-Z stopped lmterm")
    t.drain(STOP_S)  # all that was written before the stop
    os.killpg(pgid, signal.SIGCONT)
    check(t.read_until(rb"(?s).{200}", timeout=60) is not None, "the reply goes on after SIGCONT")
    t.send(b"\x03")
    got = t.read_until(rb"stopped, (\d+) tokens, ([\d.]+) tokens/s")
    wall = time.time() - t0
    check(got is not None, "Ctrl-C stopped the reply, with a tokens/s figure")
    if got and stopped:
        m = re.search(rb"stopped, (\d+) tokens, ([\d.]+) tokens/s", got)
        n, rate = int(m.group(1)), float(m.group(2))
        decode = n / rate if rate > 0 else float("inf")
        check(decode < wall - STOP_S / 2,
              "%d tokens at %.1f tokens/s: %.2f s of decoding, from %.2f s in all with %.1f s stopped"
              % (n, rate, decode, wall, STOP_S))
    check(t.read_until(re.escape(PROMPT)) is not None, "prompt after the stopped reply")
    t.send(b"exit\r\r")
    rc = t.wait()
    check(rc == 0, "'exit' quits with status 0 after Ctrl-Z and fg (got %s)" % rc)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
