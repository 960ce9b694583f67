#!/usr/bin/env python3
"""lmterm chat --no-tui in a pseudo-terminal: two turns, `end`, Ctrl-C while a reply streams (the reply stops,
the session goes on), `exit`; then Ctrl-C at the prompt quits. Exit 0 pass, 1 fail, 77 skip."""
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
    def __init__(self):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["TERM"] = "dumb"
            os.execv(LMTERM, ARGS)
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
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
