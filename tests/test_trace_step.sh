#!/bin/sh
# scripts/trace-step.py on a trace written here in the layout cuda/pdl.cuh writes (LMTERM_TRACE builds: a
# count, (time, shape) per kernel, then a count and 8 u64 per block): five steps of a known structure, each
# kernel's in-step cost known, and blocks of one launch with known times. The GPU writes such files only in
# measurement builds; this checks that the reader takes what the layout says.
. "${top_srcdir:-.}/tests/lib.sh"
command -v python3 > /dev/null || skip "python3 missing"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
python3 - "$T/t.bin" <<'PY' || fail "writing the synthetic trace"
import struct, sys
def shape(gx, gy, bx): return gx | gy << 24 | 1 << 36 | bx << 48
# a step: lm_head (1000 blocks), argmax, then two "layers" of (proj 10 us, attn 3 us), costs in ns
step = [(shape(1000, 1, 256), 50000), (shape(4, 1, 256), 2000),
        (shape(16, 1, 256), 10000), (shape(8, 8, 128), 3000),
        (shape(16, 1, 256), 10000), (shape(8, 8, 128), 3000)]
kern, t = [], 1_000_000
for s in range(9):
    for sh, cost in step:
        kern.append((t, sh)); t += cost
kern.append((t, step[0][0]))
blocks = []
# blocks of the attention launch of step 5, layer 0 (kernel index 5 * 6 + 3): start 2 us before its wait,
# wait at it, marks 1..4 at 0.5, 1, 1.5, 2 us, end at 2.5 us
k = 5 * 6 + 3
tw = kern[k][0]
for b in range(64):
    blocks.append((tw - 2000, tw, tw + 500, tw + 1000, tw + 1500, tw + 2000, tw + 2500, k | (b % 132) << 24 | b << 32))
with open(sys.argv[1], 'wb') as f:
    f.write(struct.pack('<Q', len(kern)))
    for tt, sh in kern: f.write(struct.pack('<QQ', tt, sh))
    f.write(struct.pack('<Q', len(blocks)))
    for r in blocks: f.write(struct.pack('<8Q', *r))
PY
out=$(python3 "$top_srcdir/scripts/trace-step.py" "$T/t.bin" 8x8/128 2>&1) || fail "trace-step.py failed: $out"
echo "$out"
# 9 steps cut at the lm_head (the 10th record closes the 9th), the first 3 dropped (run outside the graph)
echo "$out" | grep -q "^6 steps of 6 kernels: median 78.0 us" || fail "steps or their median"
echo "$out" | grep -Eq "^  16x1/256 +2 +10.00 +20.0$" || fail "the projection's cost per step"
echo "$out" | grep -Eq "^  8x8/128 +2 +3.00 +6.0$" || fail "the attention's cost per step"
echo "$out" | grep -Eq "^  1000x1/256 +1 +50.00 +50.0$" || fail "the lm_head's cost"
echo "$out" | grep -q "^8x8/128: 1 launches recorded" || fail "the block records' launch"
echo "$out" | grep -Eq "^  mark3 +min +1.50 .*max +1.50$" || fail "a mark's time from the wait"
echo "$out" | grep -Eq "^  start +min +-2.00 " || fail "the blocks' start before the wait"
echo "$out" | grep -Eq "^  next +min +3.00 " || fail "the next kernel's wait"
# a file with no steps: a clear message and a non-zero exit
printf '\000\000\000\000\000\000\000\000' > "$T/empty.bin"
if out=$(python3 "$top_srcdir/scripts/trace-step.py" "$T/empty.bin" 2>&1); then fail "an empty trace: exit 0"; fi
echo "$out" | grep -q "no decode steps" || fail "an empty trace: $out"
# not a trace (a truncated record): a clear message
printf '\002\000\000\000\000\000\000\000abc' > "$T/short.bin"
if out=$(python3 "$top_srcdir/scripts/trace-step.py" "$T/short.bin" 2>&1); then fail "a truncated trace: exit 0"; fi
echo "$out" | grep -q "not a trace" || fail "a truncated trace: $out"
finish
