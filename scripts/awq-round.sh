#!/bin/sh
# awq-round.sh: one GPU round for the W4A16 kernels (cuda/awq_gemm.cu), as a self-contained bundle.
#
#   scripts/awq-round.sh prepare DEST   (here, after `make -j2 && make -j2 check TESTS=`): the binaries,
#                                        libraries, configs and golden fixtures (through gpu-round.sh
#                                        prepare) plus tests/bench_awq, tests/test_awq_layout and this
#                                        script as DEST/run.sh
#   sh run.sh                           (on the GPU machine, in DEST; logs under $OUT) runs, each step
#                                        bounded by what is left of BUDGET seconds (default 230):
#        1. tests/test_awq_layout, tests/test_backend_ops (every op, the AWQ cases n = 1..8 and prefill)
#        2. tests/bench_awq decode: GB/s per InternLM2.5-7B shape and batch, tiled layout vs fp16 GEMV,
#           then the row layout (LMTERM_AWQ_LAYOUT=row), then warps per block 4/8/16
#        3. lmterm bench (7B, --dummy, fp16, awq) prompt 512 and 2048, tiled and row layouts, fp16 model
#        4. tests/bench_awq prefill (dequant + cuBLAS vs fp16 cuBLAS), golden models on cuda, memcheck
#      and prints a short summary last.
set -u
mode=${1:-run}
if [ "$mode" = prepare ]; then
	dest=${2:?usage: awq-round.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	sh "$top/scripts/gpu-round.sh" prepare "$dest" || exit 1
	cp "$top/tests/bench_awq" "$top/tests/test_awq_layout" "$dest/tests/" || exit 1
	cp "$top/scripts/awq-round.sh" "$dest/run.sh"
	# the bundle limit (20 MiB): the AWQ fixture only, no attention test, no symbols
	for m in llama3-rand qwen2-rand llama-dynrope-rand internlm2-rand; do rm -rf "$dest/data/fixtures/$m" "$dest/data/golden/$m"; done
	rm -f "$dest/tests/test_attn_ops"
	strip "$dest/lmterm" "$dest/tests/"test_* "$dest/tests/bench_awq"
	xz -6 "$dest/lmterm" "$dest/tests/test_backend_ops" "$dest/tests/test_golden" "$dest/tests/bench_awq"
	du -sh "$dest"
	exit 0
fi

top=$(pwd)
for f in lmterm.xz tests/*.xz; do [ -f "$f" ] && xz -dc "$f" > "${f%.xz}" && chmod +x "${f%.xz}"; done
OUT=${OUT:-$top/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export top_srcdir="$top" top_builddir="$top" LMTERM="$top/lmterm"
t0=$(date +%s)
left() { echo $(( ${BUDGET:-230} - ($(date +%s) - t0) )); }
lim() { l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $(( l > 3 ? l : 3 )); }
st() { [ "$1" -eq 0 ] && echo pass || { [ "$1" -eq 77 ] && echo skip || echo "FAIL($1)"; }; }
log() { echo "[$(( $(date +%s) - t0 ))s] $*"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
date -u '+%Y-%m-%d %H:%M UTC' >> "$OUT/gpu.txt"
cat "$OUT/gpu.txt"

log "test_awq_layout"
timeout $(lim 20) tests/test_awq_layout > "$OUT/awq_layout.log" 2>&1; r_lay=$?
log "test_backend_ops"
timeout $(lim 90) tests/test_backend_ops > "$OUT/backend_ops.log" 2>&1; r_ops=$?
grep -E "W4A16|^FAIL|checks," "$OUT/backend_ops.log" | grep -vE "^ok" | tail -20
grep -E "W4A16" "$OUT/backend_ops.log" | sort -k9 -g | tail -3

log "bench_awq decode (tiled) + fp16"
timeout $(lim 40) tests/bench_awq decode 128 f16 > "$OUT/micro_tiled.log" 2>&1
log "bench_awq decode (row layout)"
LMTERM_AWQ_LAYOUT=row timeout $(lim 25) tests/bench_awq decode 128 > "$OUT/micro_row.log" 2>&1

cfg=configs/internlm2_5-7b-chat.json
: > "$OUT/bench.jsonl"
bench() { # label env prompt n [options]
	label=$1 envs=$2 plen=$3 steps=$4
	shift 4
	[ "$(left)" -gt 25 ] || { echo "bench $label skipped: time spent"; return; }
	log "lmterm bench $label"
	if env $envs timeout $(lim 45) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --prompt-len "$plen" \
		-n "$steps" --json "$@" > "$OUT/b1.json" 2>> "$OUT/bench.err"; then
		sed "s/^{/{\"label\": \"$label\", /" "$OUT/b1.json" >> "$OUT/bench.jsonl"
	else
		echo "bench $label failed: $(tail -1 "$OUT/bench.err")"
	fi
}
bench awq-p512 X=1 512 128 --model-format awq
bench awq-row-p512 LMTERM_AWQ_LAYOUT=row 512 128 --model-format awq
bench awq-p2048 X=1 2048 64 --model-format awq
bench fp16-p512 X=1 512 128
bench fp16-p2048 X=1 2048 64
bench awq-p512-pdl LMTERM_PDL=1 512 128 --model-format awq
rm -f "$OUT/b1.json"

log "bench_awq prefill"
timeout $(lim 30) tests/bench_awq prefill > "$OUT/prefill.log" 2>&1
for w in 4 8 16; do
	[ "$(left)" -gt 20 ] || break
	log "bench_awq decode warps $w"
	LMTERM_AWQ_WARPS=$w timeout $(lim 20) tests/bench_awq decode 128 > "$OUT/micro_w$w.log" 2>&1
done
[ "$(left)" -gt 20 ] && { log "bench_awq decode group 64"; timeout $(lim 20) tests/bench_awq decode 64 > "$OUT/micro_g64.log" 2>&1; }

r_gold=77
if [ -d "$top/data" ] && [ "$(left)" -gt 30 ]; then
	log "golden (cuda)"
	sh tests/unpack-data.sh "$top/data" "$top/data-unpacked" > /dev/null 2>&1
	TESTDATA="$top/data-unpacked" LMTERM_TEST_MODELS="llama3-rand-awq" \
		timeout $(lim 60) sh tests/test_golden_cuda.sh > "$OUT/golden.log" 2>&1
	r_gold=$?
fi
r_san=77
if command -v compute-sanitizer > /dev/null 2>&1 && [ "$(left)" -gt 40 ]; then
	log "memcheck"
	timeout $(lim 120) compute-sanitizer --tool memcheck --error-exitcode 9 tests/test_backend_ops > "$OUT/memcheck.log" 2>&1
	r_san=$?
	tail -2 "$OUT/memcheck.log"
fi

echo
echo "== AWQ round: $(head -2 "$OUT/gpu.txt" | tail -1)"
echo "tests: awq_layout $(st $r_lay), backend_ops $(st $r_ops), golden(cuda) $(st $r_gold), memcheck $(st $r_san)"
grep -h "^device" "$OUT/micro_tiled.log"
echo "-- decode microbench: tiled layout (| fp16 GEMV), row layout, warps per block"
grep -h "^decode" "$OUT/micro_tiled.log" | sed -E 's/ +/ /g; s/ of copy//; s/awq.fp16 time/awq:fp16/'
grep -h "^decode" "$OUT/micro_row.log" | sed -E 's/ +/ /g; s/ of copy//'
for w in 4 8 16; do [ -f "$OUT/micro_w$w.log" ] && grep -h "^decode" "$OUT/micro_w$w.log" | grep -E " n (1|8) " | sed -E 's/ +/ /g; s/ of copy//'; done
grep -h "^prefill" "$OUT/prefill.log"
printf '%-14s %-6s %12s %12s %9s\n' run prompt prefill_tok/s decode_tok/s roofline
sed -e 's/[{},]/ /g' "$OUT/bench.jsonl" | awk '{
	for (i = 1; i <= NF; i++) { k = $i; gsub(/[":]/, "", k); v[k] = $(i + 1) }
	gsub(/"/, "", v["label"])
	printf "%-14s %-6s %12.0f %12.1f %8.1f%%\n", v["label"], v["prompt_len"], v["prefill_tok_s"], v["decode_tok_s"], 100 * v["roofline"] }'
log "done"
