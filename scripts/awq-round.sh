#!/bin/sh
# awq-round.sh: one GPU round for the W4A16 kernels (cuda/awq_gemm.cu), as a self-contained bundle.
#
#   scripts/awq-round.sh prepare DEST   (here, after `make -j2 && make -j2 check TESTS=`): the binaries,
#                                        libraries, configs and golden fixtures (through gpu-round.sh
#                                        prepare) plus tests/bench_awq, tests/test_awq_layout and this
#                                        script as DEST/run.sh
#   sh run.sh                           (on the GPU machine, in DEST; logs in ONE tar under $OUT) runs,
#                                        each step bounded by what is left of BUDGET seconds (default 110):
#        1. tests/test_awq_layout, tests/test_backend_ops without and with LMTERM_PDL=1
#        2. tests/bench_awq decode 128 f16: us and GB/s per InternLM2.5-7B shape and batch, AWQ vs fp16 GEMV
#        3. lmterm bench (7B, --dummy, fp16) awq and fp16 at prompt 512 and 2048, then awq --profile
#        4. tests/bench_awq prefill (dequant + cuBLAS vs fp16 cuBLAS), golden (llama3-rand-awq), memcheck
#      (earlier rounds also ran the row layout, LMTERM_AWQ_LAYOUT=row, and kernel variants since removed)
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
L="$OUT/logs" # everything goes here, then into ONE tar (the device tool returns at most 8 files)
mkdir -p "$L"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export top_srcdir="$top" top_builddir="$top" LMTERM="$top/lmterm"
t0=$(date +%s)
left() { echo $(( ${BUDGET:-110} - ($(date +%s) - t0) )); }
lim() { l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $(( l > 3 ? l : 3 )); }
st() { [ "$1" -eq 0 ] && echo pass || { [ "$1" -eq 77 ] && echo skip || echo "FAIL($1)"; }; }
log() { echo "[$(( $(date +%s) - t0 ))s] $*" >> "$L/progress.log"; }

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv > "$L/gpu.txt" 2>&1
date -u '+%Y-%m-%d %H:%M UTC' >> "$L/gpu.txt"

log "correctness"
timeout $(lim 20) tests/test_awq_layout > "$L/awq_layout.log" 2>&1; r_lay=$?
timeout $(lim 40) tests/test_backend_ops > "$L/backend_ops.log" 2>&1; r_ops=$?
LMTERM_PDL=1 timeout $(lim 40) tests/test_backend_ops > "$L/backend_ops_pdl.log" 2>&1; r_opsp=$?

log "micro"
LMTERM_PDL=1 timeout $(lim 25) tests/bench_awq decode 128 f16 > "$L/micro_v2pdl.log" 2>&1

cfg=configs/internlm2_5-7b-chat.json
: > "$L/bench.jsonl"
bench() { # label env prompt n [options]
	label=$1 envs=$2 plen=$3 steps=$4
	shift 4
	[ "$(left)" -gt 15 ] || return 0
	log "lmterm bench $label"
	if env $envs timeout $(lim 30) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --prompt-len "$plen" \
		-n "$steps" --json "$@" > "$L/b1.json" 2>> "$L/bench.err"; then
		sed "s/^{/{\"label\": \"$label\", /" "$L/b1.json" >> "$L/bench.jsonl"
	else
		echo "bench $label failed: $(tail -1 "$L/bench.err")" >> "$L/bench.err"
	fi
}
bench awq-p512-pdl LMTERM_PDL=1 512 128 --model-format awq
bench awq-p2048-pdl LMTERM_PDL=1 2048 64 --model-format awq
bench fp16-p512-pdl LMTERM_PDL=1 512 128
bench fp16-p2048-pdl LMTERM_PDL=1 2048 64
bench awq-p512 X=1 512 128 --model-format awq
rm -f "$L/b1.json"
[ "$(left)" -gt 20 ] && LMTERM_PDL=1 timeout $(lim 30) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda \
	--prompt-len 512 -n 64 --model-format awq --profile > "$L/profile_awq.txt" 2>&1
log "prefill"
[ "$(left)" -gt 15 ] && timeout $(lim 20) tests/bench_awq prefill > "$L/prefill.log" 2>&1

r_gold=77
if [ -d "$top/data" ] && [ "$(left)" -gt 15 ]; then
	log "golden"
	sh tests/unpack-data.sh "$top/data" "$top/data-unpacked" > /dev/null 2>&1
	TESTDATA="$top/data-unpacked" LMTERM_TEST_MODELS="llama3-rand-awq" LMTERM_PDL=1 \
		timeout $(lim 30) sh tests/test_golden_cuda.sh > "$L/golden.log" 2>&1
	r_gold=$?
fi
r_san=77
if command -v compute-sanitizer > /dev/null 2>&1 && [ "$(left)" -gt 15 ]; then
	log "memcheck"
	timeout $(lim 40) compute-sanitizer --tool memcheck --error-exitcode 9 tests/test_backend_ops > "$L/memcheck.log" 2>&1
	r_san=$?
fi
log "done"

# the summary (stdout is what surely comes back: the most important last)
# one decode line -> "name n N: us pct [| fp16 us pct]"
cm() { awk '/^decode|^dequant/ { o = $1 == "dequant" ? "deq " $2 : $2; for (i = 1; i < NF; i++) if ($i == "n") { o = o " n" $(i + 1); break }
	o = o ":"; for (i = 2; i <= NF; i++) { if ($i == "us") o = o " " $(i - 1) "us"; if ($i ~ /%;?$/) { v = $i; sub(/;/, "", v); o = o " " v } if ($i == "|") o = o " |" }
	print o }'; }
grep -A30 "^profile" "$L/profile_awq.txt" 2>/dev/null | sed -E 's/ +/ /g' | head -24
echo "-- prefill (bench_awq prefill: awq us, fp16 us, ratio) per slab MB"
awk 'BEGIN { printf "slab 128 MiB:" } /^== / { printf "\n%s:", $2 } /^prefill/ { u = ""; for (i = 1; i <= NF; i++) { if ($i == "n") n = $(i + 1); if ($i == "us") u = u "/" $(i - 1) } printf " %s.%s %s=%s", $2, n, u, $NF }' "$L/prefill.log" 2>/dev/null; echo
grep -h "^device" "$L/micro_v2pdl.log"
echo "-- AWQ tiled GEMV, PDL (| fp16 GEMV, PDL)"
cm < "$L/micro_v2pdl.log"
printf '%-16s %-6s %12s %12s %9s\n' run prompt prefill_tok/s decode_tok/s roofline
sed -e 's/[{},]/ /g' "$L/bench.jsonl" | awk '{
	for (i = 1; i <= NF; i++) { k = $i; gsub(/[":]/, "", k); v[k] = $(i + 1) }
	gsub(/"/, "", v["label"])
	printf "%-16s %-6s %12.0f %12.1f %8.1f%%\n", v["label"], v["prompt_len"], v["prefill_tok_s"], v["decode_tok_s"], 100 * v["roofline"] }'
grep -h "bench .* failed" "$L/bench.err" 2>/dev/null | head -3
echo "== AWQ round: $(tr '\n' ' ' < "$L/gpu.txt")"
grep -h "^FAIL\|^ *worst" "$L/backend_ops.log" "$L/backend_ops_pdl.log" "$L/awq_layout.log" | head -12
tail -3 "$L/backend_ops.log" | grep -v "checks,"
grep -h "W4A16" "$L/backend_ops.log" | awk '{for (i = 1; i <= NF; i++) if ($i == "err") print $(i + 1), $0}' | sort -g | tail -2 | cut -d' ' -f2- | sed -E 's/ +/ /g; s/^/worst W4A16: /'
grep -hE "FAIL|near|argmax|greedy|pass" "$L/golden.log" 2>/dev/null | tail -4
grep -hE "ERROR SUMMARY|Error" "$L/memcheck.log" 2>/dev/null | tail -2
tail -2 "$L/progress.log"
grep -h "checks," "$L/backend_ops.log" "$L/backend_ops_pdl.log"
echo "tests: awq_layout $(st $r_lay), backend_ops $(st $r_ops), backend_ops PDL $(st $r_opsp), golden(cuda,awq) $(st $r_gold), memcheck $(st $r_san)"
tar czf "$OUT/awqk.tgz" -C "$OUT" logs && rm -rf "$L"
