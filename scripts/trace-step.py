#!/usr/bin/env python3
"""trace-step.py: what each kernel of a decode step costs inside the step, from a traced run.

Build with `make NVCCFLAGS=-DLMTERM_TRACE` (cuda/pdl.cuh), then run for example
    LMTERM_TRACE=t.bin [LMTERM_TRACE_BLOCKS=16000:16330] lmterm bench CONFIG --dummy --backend cuda ...
    scripts/trace-step.py t.bin [SHAPE]

The file holds one record per kernel launch that waits (`griddepcontrol.wait`): when the wait of its block
0 returned, and the grid's shape. Waits return in stream order, so the interval from one record to the next
is what that kernel cost inside the step (from its inputs being ready to the next one's). Steps are cut at
the launch with the largest grid (the lm_head). Printed: the step's median, the first and last kernels of a
step, and the cost per grid shape (the ops of a layer have distinct shapes).

With LMTERM_TRACE_BLOCKS, every block of the kernels numbered LO..HI-1 is also recorded (its multiprocessor,
start, wait, marks 1-4 and end); SHAPE (as printed, e.g. 8x8/128) then gives the quantiles of those times
relative to the kernel's wait, over the recorded launches of that shape.
"""
import bisect
import collections
import statistics
import struct
import sys


def load(path):
    d = open(path, 'rb').read()
    n = struct.unpack_from('<Q', d, 0)[0]
    kern = []
    for i in range(n):
        t, s = struct.unpack_from('<QQ', d, 8 + 16 * i)
        kern.append((t, f"{s & 0xffffff}x{(s >> 24) & 0xfff}/{s >> 48}"))
    off = 8 + 16 * n
    blocks = []
    if len(d) >= off + 8:
        nb = struct.unpack_from('<Q', d, off)[0]
        blocks = [struct.unpack_from('<8Q', d, off + 8 + 64 * i) for i in range(nb)]
    return kern, blocks


def steps(kern):
    if not kern:
        return []
    big = max(int(s.split('x')[0]) for _, s in kern)
    cut = [i for i, (_, s) in enumerate(kern) if int(s.split('x')[0]) == big]
    out = [kern[a:b + 1] for a, b in zip(cut, cut[1:])]  # each with the next step's first record
    if not out:
        return []
    length = collections.Counter(len(s) for s in out).most_common(1)[0][0]
    return [s for s in out if len(s) == length][3:]  # the first steps run outside the graph


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    try:
        kern, blocks = load(sys.argv[1])
    except (OSError, struct.error) as e:
        sys.exit(f"trace-step: {sys.argv[1]}: not a trace ({e})")
    st = steps(kern)
    if not st:
        sys.exit("trace-step: no decode steps in " + sys.argv[1])
    L = len(st[0]) - 1
    dt = [[(s[j + 1][0] - s[j][0]) / 1e3 for s in st] for j in range(L)]
    tot = [(s[-1][0] - s[0][0]) / 1e3 for s in st]
    print(f"{len(st)} steps of {L} kernels: median {statistics.median(tot):.1f} us")
    names = [r[1] for r in st[0][:L]]
    for j in sorted(set(range(min(4, L))) | set(range(max(0, L - 4), L))):
        print(f"  #{j:<4d} {names[j]:18s} {statistics.mean(dt[j]):8.2f} us")
    by = collections.defaultdict(list)
    for j in range(L):
        by[names[j]].append(statistics.mean(dt[j]))
    print("  per shape: launches, mean us, us per step")
    for k, v in sorted(by.items(), key=lambda kv: -sum(kv[1])):
        print(f"  {k:18s} {len(v):4d} {statistics.mean(v):8.2f} {sum(v):9.1f}")
    if len(sys.argv) < 3 or not blocks:
        return
    want = sys.argv[2]
    tw = [t for t, _ in kern]
    q = collections.defaultdict(list)
    launches = 0
    inst = collections.defaultdict(list)
    for r in blocks:  # a block belongs to the last kernel whose wait returned before its own
        inst[bisect.bisect_right(tw, r[1] + 300) - 1].append(r)
    for k, bl in inst.items():
        if kern[k][1] != want or k + 1 >= len(tw):
            continue
        launches += 1
        for r in bl:
            for j, name in enumerate(('start', 'wait', 'mark1', 'mark2', 'mark3', 'mark4', 'end')):
                if r[j]:
                    q[name].append((r[j] - tw[k]) / 1e3)
        q['next'].append((tw[k + 1] - tw[k]) / 1e3)
    print(f"{want}: {launches} launches recorded; us from the kernel's wait (quantiles over blocks)")
    for name in ('start', 'wait', 'mark1', 'mark2', 'mark3', 'mark4', 'end', 'next'):
        v = sorted(q[name])
        if v:
            print(f"  {name:6s} min {v[0]:7.2f} p10 {v[len(v) // 10]:7.2f} p50 {v[len(v) // 2]:7.2f} "
                  f"p90 {v[9 * len(v) // 10]:7.2f} max {v[-1]:7.2f}")


if __name__ == '__main__':
    main()
