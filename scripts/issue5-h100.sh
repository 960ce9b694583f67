#!/bin/sh
# issue5-h100.sh: issue 5's GPU checks, as the issue states them, in ONE device call on the H100
# (kind nvidia-h100-x1: the issue names the H100; every earlier figure is from the H200).
#
#   scripts/issue5-h100.sh prepare DEST   (here, in a configured CUDA tree built with
#                                          `make -j2 && make -j2 check TESTS=`): the bundles of
#                                          scripts/gpu-round.sh (DEST/r, no fixtures) and
#                                          scripts/awq-gpu-round.sh (DEST/a), and this script (about 25 MB)
#   sh DEST/issue5.sh                      (on the GPU machine, from the repository root; carry DEST)
#       1. W4A16 batch-1 decode: lmterm bench configs/internlm2_5-7b-chat.json --dummy --dtype float16
#          --backend cuda --model-format awq --prompt-len 512 -n 128, three times (issue: >= 500 tokens/s),
#          then each op alone (--profile); the W4A16 checks of test_backend_ops; the same decode with
#          LMTERM_FOLD=0 (the norms and the SwiGLU not folded into the GEMVs, as before 2026-12-05)
#          and tests/bench_handoff (the cost of a grid-to-grid handoff)
#       2. fp16 decode, the same command without --model-format awq, twice (the card's reference ratio)
#       3. tests/rand_model writes InternLM2.5-7B's shape with random bf16 weights; lmterm lite auto_awq on it
#          with the seed's settings: ptb, 128 x 2048, group 128, --backend cuda (issue: <= 5 minutes);
#          the result generated from on the GPU
#      Logs go to $OUT. About 4 minutes on the H200.
set -u
mode=${1:-run}
if [ "$mode" = prepare ]; then
	dest=${2:?usage: issue5-h100.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	ROUND_FIXTURES= sh "$top/scripts/gpu-round.sh" prepare "$dest/r" > /dev/null || exit 1
	(cd "$top" && make -j2 tests/test_awq_ops tests/rand_model tests/awq_cmp > /dev/null) || exit 1
	sh "$top/scripts/awq-gpu-round.sh" prepare "$dest/a" > /dev/null || exit 1
	cp "$top/scripts/issue5-h100.sh" "$dest/"
	printf '#!/bin/sh\nexec sh "$(dirname "$0")/issue5-h100.sh" run\n' > "$dest/issue5.sh"
	du -sh "$dest"
	exit 0
fi
[ "$mode" = run ] || { echo "usage: issue5-h100.sh prepare DEST | run"; exit 2; }
cd "$(dirname "$0")" || exit 1
here=$(pwd)
OUT=${OUT:-$here/out}
mkdir -p "$OUT"
unxz_to() { xz -dc "$1" > "$2" 2>/dev/null ||
	python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$1" "$2"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader
date -u '+%Y-%m-%d %H:%M UTC'

# 1, 2: decode
cd "$here/r" || exit 1
for f in lmterm.xz tests/*.xz; do [ -f "$f" ] && unxz_to "$f" "${f%.xz}" && chmod +x "${f%.xz}" && rm -f "$f"; done
export LD_LIBRARY_PATH="$here/r/lib:/usr/local/cuda/lib64"
cfg=configs/internlm2_5-7b-chat.json
bench() { timeout 90 ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --prompt-len 512 "$@"; }
for i in 1 2 3; do
	bench --model-format awq -n 128 > "$OUT/awq-$i.log" 2>&1
	grep -E "^(device|decode|bytes|roofline)" "$OUT/awq-$i.log"
done
bench --model-format awq -n 32 --profile > "$OUT/awq-profile.log" 2>&1
tail -n 22 "$OUT/awq-profile.log"
LMTERM_TEST_ONLY=awq timeout 90 tests/test_backend_ops > "$OUT/ops-awq.log" 2>&1
echo "test_backend_ops (W4A16 checks, the folded norms' among them): rc $? ($(grep 'checks,' "$OUT/ops-awq.log" | tail -1))"
grep -E "^FAIL" "$OUT/ops-awq.log" | head -5
# what a grid-to-grid handoff costs (PDL's wait against a counter and a grid barrier): the step pays one per op
timeout 60 tests/bench_handoff 2>&1 | tee "$OUT/handoff.log"
# the step without the fold, for comparison (the folded ops are among the W4A16 checks above)
for i in 1 2; do
	LMTERM_FOLD=0 bench --model-format awq -n 128 > "$OUT/awq-nofold-$i.log" 2>&1
	grep -E "^(decode|roofline)" "$OUT/awq-nofold-$i.log" | sed 's/^/unfolded: /'
done
for i in 1 2; do
	bench -n 128 > "$OUT/fp16-$i.log" 2>&1
	grep -E "^(decode|roofline)" "$OUT/fp16-$i.log"
done

# 3: auto_awq of the 7B shapes, the seed's settings
cd "$here/a" || exit 1
for f in bin/*.xz models/tiny-en-zh/*.xz data/*.xz; do [ -f "$f" ] && unxz_to "$f" "${f%.xz}" && rm -f "$f"; done
chmod +x bin/*
export LD_LIBRARY_PATH="$here/a/lib:/usr/local/cuda/lib64"
W=${AWQ_WORKDIR:-/tmp/awq7b}
rm -rf "$W" "$W-awq"
timeout 150 bin/rand_model configs/internlm2_5-7b-chat.json "$W" --tokenizer models/tiny-en-zh > "$OUT/rand_model.log" 2>&1 ||
	{ echo "rand_model failed:"; tail -3 "$OUT/rand_model.log"; exit 1; }
t1=$(date +%s.%N)
LMTERM_DATA="$here/a/data" LMTERM_AWQ_TIMING=1 timeout 330 bin/lmterm lite auto_awq "$W" --work-dir "$W-awq" \
	--calib-dataset ptb --calib-samples 128 --calib-seqlen 2048 --w-group-size 128 --backend cuda > "$OUT/7b.log" 2>&1
r=$?
echo "lite auto_awq, 7B shapes, 128 x 2048 (issue: <= 300 s): rc $r, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t1}") s wall"
grep "awq timing: rest" "$OUT/7b.log"
tail -2 "$OUT/7b.log"
[ $r -eq 0 ] && timeout 90 bin/lmterm generate "$W-awq" --ids "1 2 3 4 5" -n 8 --greedy --print-ids --backend cuda 2>&1 | tail -2
rm -rf "$W" "$W-awq"
date -u '+%Y-%m-%d %H:%M UTC'
