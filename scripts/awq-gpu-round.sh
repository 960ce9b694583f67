#!/bin/sh
# awq-gpu-round.sh: AWQ calibration on the GPU, checked and timed in ONE device call.
#
#   scripts/awq-gpu-round.sh prepare DEST   (here, in a configured and built CUDA tree after
#                                            `make -j2 lmterm tests/test_awq_ops tests/rand_model tests/awq_cmp`)
#       copies into DEST (at most ~20 MiB): the stripped binaries, xz-compressed; the shared libraries the GPU
#       machine lacks (cJSON, utf8proc); the demo model tiny-en-zh and the calibration/evaluation texts
#       (xz); the 7B config; the tests; this script; and a run.sh that calls `awq-gpu-round.sh run`.
#   scripts/awq-gpu-round.sh run            (on the GPU machine, from DEST) runs, each step bounded:
#       1. tests/test_awq_ops, fp32 then TF32: every op of src/awq_dev.h, cuda against cpu
#       2. tests/test_awq_cuda.sh: tiny-en-zh quantized with --backend cpu and cuda (fp32, TF32): code
#          agreement and perplexity; --search-scale and --search-clip runs; random InternLM2/Qwen2 models
#       3. tests/rand_model writes a random-weight model of InternLM2.5-7B's shape (configs/internlm2_5-7b-chat.json,
#          bf16, 15.5 GB) to $AWQ_WORKDIR (default /tmp/awq7b), with tiny-en-zh's tokenizer
#       4. lmterm lite auto_awq on it with the seed's settings (ptb, 128 x 2048, group 128, defaults) and
#          LMTERM_AWQ_TIMING=1: seconds per stage per layer; again with TF32 GEMMs, the two results compared
#          (tests/awq_cmp); the result run by `lmterm generate --backend cuda`; a --search-scale run (TF32)
#      and prints a short table last. Logs go to $OUT (one archive, logs.tgz).
#      AWQ7B_CONFIG, AWQ7B_BACKEND, AWQ7B_SAMPLES replace the 7B config, backend, samples (to try the script on a CPU).
set -u
mode=${1:-run}

if [ "$mode" = prepare ]; then
	dest=${2:?usage: awq-gpu-round.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	for f in lmterm tests/test_awq_ops tests/rand_model tests/awq_cmp; do
		[ -x "$top/$f" ] || { echo "awq-gpu-round: $top/$f is not built"; exit 1; }
	done
	rm -rf "$dest" && mkdir -p "$dest/bin" "$dest/tests" "$dest/lib" "$dest/scripts" "$dest/data" "$dest/configs" \
		"$dest/models/tiny-en-zh"
	for f in lmterm tests/test_awq_ops tests/rand_model tests/awq_cmp; do
		strip -o "$dest/bin/$(basename "$f")" "$top/$f" && xz -9 "$dest/bin/$(basename "$f")"
	done
	cp "$top/tests/lib.sh" "$top/tests/test_awq_cuda.sh" "$top/tests/test_rand_model.sh" "$dest/tests/"
	cp "$top/scripts/awq-gpu-round.sh" "$dest/scripts/"
	cp "$top/configs/internlm2_5-7b-chat.json" "$dest/configs/"
	cp -P /usr/lib/x86_64-linux-gnu/libcjson.so.1* /usr/lib/x86_64-linux-gnu/libutf8proc.so.2* "$dest/lib/"
	for f in "$top"/models/tiny-en-zh/*; do
		case "$f" in
		*.safetensors|*tokenizer.json) xz -6 -T2 -c "$f" > "$dest/models/tiny-en-zh/$(basename "$f").xz" ;;
		*) cp "$f" "$dest/models/tiny-en-zh/" ;;
		esac
	done
	xz -6 -c /work/shared/data/text/ptb.train.txt > "$dest/data/ptb.train.txt.xz"
	cp "$top/tests/data/text/wiki.test.raw.xz" "$top/tests/data/text/ptb.valid.txt.xz" "$dest/data/"
	printf '#!/bin/sh\n# AWQ on the GPU: see scripts/awq-gpu-round.sh\nexec sh scripts/awq-gpu-round.sh run\n' > "$dest/run.sh"
	du -sh "$dest"
	exit 0
fi

[ "$mode" = run ] || { echo "usage: awq-gpu-round.sh prepare DEST | run"; exit 2; }
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
OUT=${OUT:-$top/out}
mkdir -p "$OUT"
t0=$(date +%s)
budget=${ROUND_BUDGET:-235}
left() { echo $((budget - ($(date +%s) - t0))); }
lim() { l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $((l > 5 ? l : 5)); }
status() { [ "$1" -eq 0 ] && echo pass || { [ "$1" -eq 77 ] && echo skip || echo "FAIL($1)"; }; }
unxz_to() { # FILE.xz DEST
	xz -dc "$1" > "$2" 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$1" "$2"
}

# unpack (binaries, model, texts)
for f in bin/*.xz models/tiny-en-zh/*.xz data/*.xz; do
	[ -f "$f" ] || continue
	unxz_to "$f" "${f%.xz}" && rm -f "$f"
done
chmod +x bin/* 2>/dev/null
mkdir -p tests/text
cp data/wiki.test.raw data/ptb.valid.txt tests/text/ 2>/dev/null
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export top_srcdir="$top" top_builddir="$top/bin-tree" LMTERM="$top/bin/lmterm" TESTDATA="$top/tests"
mkdir -p bin-tree/tests && for f in test_awq_ops rand_model awq_cmp; do ln -sf "$top/bin/$f" bin-tree/tests/$f; done

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
date -u '+%Y-%m-%d %H:%M UTC' | tee -a "$OUT/gpu.txt"
nproc | sed 's/^/cpus: /' | tee -a "$OUT/gpu.txt"

# 1. the ops
timeout $(lim 60) bin/test_awq_ops > "$OUT/ops.log" 2>&1; r_ops=$?
LMTERM_AWQ_TF32=1 timeout $(lim 40) bin/test_awq_ops > "$OUT/ops_tf32.log" 2>&1; r_tf=$?
grep -E "^FAIL|checks" "$OUT/ops.log" "$OUT/ops_tf32.log" | head -30

# 2. whole runs, cpu vs cuda, on the demo model
AWQ_CUDA_MODEL="$top/models/tiny-en-zh" AWQ_CUDA_CALIB="$top/tests/text/wiki.test.raw" \
	AWQ_CUDA_EVAL="$top/tests/text/ptb.valid.txt" \
	timeout $(lim 100) sh tests/test_awq_cuda.sh > "$OUT/awq_cuda.log" 2>&1; r_cuda=$?
grep -E "^FAIL|^ok|perplexity|vs|auto_awq|ratios" "$OUT/awq_cuda.log" | head -40

# 3. the random 7B
W=${AWQ_WORKDIR:-/tmp/awq7b}
rm -rf "$W" "$W-awq" "$W-awq-tf32"
df -h "$(dirname "$W")" | tail -1
r_rm=1 r_7b=1 r_7t=77
if [ "$(left)" -gt 60 ]; then
	timeout $(lim 100) bin/rand_model ${AWQ7B_CONFIG:-configs/internlm2_5-7b-chat.json} "$W" --tokenizer models/tiny-en-zh \
		> "$OUT/rand_model.log" 2>&1; r_rm=$?
	cat "$OUT/rand_model.log"
fi
# 4. the 7B quantization, seed's settings (exact fp32 GEMMs), then with TF32 and compared; the result loaded
#    and run by lmterm on the GPU; a --search-scale run (TF32) while time is left
run7b() { # NAME ENV-ASSIGNMENTS... -- EXTRA-ARGS...
	n=$1; shift
	envs=""
	while [ $# -gt 0 ] && [ "$1" != -- ]; do envs="$envs $1"; shift; done
	[ $# -gt 0 ] && shift
	t1=$(date +%s.%N)
	env LMTERM_DATA="$top/data" LMTERM_AWQ_TIMING=1 $envs timeout $(lim 300) bin/lmterm lite auto_awq "$W" --work-dir "$W-$n" \
		--calib-dataset ptb --calib-samples ${AWQ7B_SAMPLES:-128} --calib-seqlen 2048 --w-group-size 128 --backend ${AWQ7B_BACKEND:-cuda} "$@" > "$OUT/7b-$n.log" 2>&1
	r=$?
	echo "7b $n:$envs $*: rc $r, $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t1}") s wall" | tee -a "$OUT/7b-$n.log"
	return $r
}
r_cmp=77 r_gen=77 r_ss=77
if [ $r_rm -eq 0 ]; then
	run7b awq; r_7b=$?
	du -sh "$W-awq" 2>/dev/null
	if [ "$(left)" -gt 50 ]; then run7b tf32 LMTERM_AWQ_TF32=1; r_7t=$?; fi
	if [ $r_7b -eq 0 ] && [ $r_7t -eq 0 ] && [ "$(left)" -gt 20 ]; then
		timeout $(lim 60) bin/awq_cmp "$W-awq" "$W-tf32" > "$OUT/7b-cmp.txt" 2>&1; r_cmp=$?
		echo "7B fp32 vs TF32: $(tail -1 "$OUT/7b-cmp.txt")"
		grep -E "layers\.(0|15|31)\.(attention\.wqkv|feed_forward\.w2)" "$OUT/7b-cmp.txt"
	fi
	rm -rf "$W-tf32"
	if [ $r_7b -eq 0 ] && [ "$(left)" -gt 30 ]; then
		{ timeout $(lim 60) bin/lmterm generate "$W-awq" --ids "1 2 3 4 5" -n 8 --greedy --print-ids --backend ${AWQ7B_BACKEND:-cuda}; } \
			> "$OUT/7b-gen.txt" 2>&1; r_gen=$?
		echo "generate from the 7B AWQ output (cuda): rc $r_gen: $(tail -2 "$OUT/7b-gen.txt" | tr '\n' ' ')"
	fi
	rm -rf "$W-awq"
	if [ "$(left)" -gt 100 ]; then run7b ss-tf32 LMTERM_AWQ_TF32=1 -- --search-scale; r_ss=$?; fi
	rm -rf "$W-ss-tf32"
fi

echo
echo "== AWQ GPU round: $(head -2 "$OUT/gpu.txt" | tail -1)"
echo "tests: awq_ops fp32 $(status $r_ops), awq_ops tf32 $(status $r_tf), awq_cuda $(status $r_cuda), rand_model $(status $r_rm)"
echo "7B: fp32 $(status $r_7b), tf32 $(status $r_7t), fp32-vs-tf32 compare $(status $r_cmp), generate $(status $r_gen), search-scale tf32 $(status $r_ss)"
[ -f "$OUT/7b-cmp.txt" ] && echo "7B fp32 vs TF32: $(tail -1 "$OUT/7b-cmp.txt")"
for f in "$OUT"/7b-*.log; do
	[ -f "$f" ] || continue
	echo "-- $(basename "$f" .log): $(grep -E '^7b ' "$f")"
	grep "awq timing: cuda" "$f"
	grep "awq timing: layer" "$f" | awk '{ n++; for (i = 5; i < NF; i += 2) s[$i] += $(i + 1) }
		END { if (n) { printf "%d layers, sums (s):", n; for (k in s) printf " %s %.1f", k, s[k]; printf "\n" } }'
	grep "awq timing: rest" "$f"
	grep "wrote\|lmterm:" "$f" | tail -2
done
# one archive instead of many files (a device call returns only a few files)
(cd "$OUT" && tar czf logs.tgz ./*.log ./*.txt 2>/dev/null && rm -f ./*.log ./*.txt)
