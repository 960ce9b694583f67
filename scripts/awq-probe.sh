#!/bin/sh
# awq-probe.sh: where the W4A16 (AWQ) decode step's time goes, in one device call (issue 5).
#
# Run on the GPU machine from a bundle made by `scripts/gpu-round.sh prepare DEST` (or from a built tree):
#   cd DEST && sh scripts/awq-probe.sh
#   1. lmterm bench --model-format awq (InternLM2.5-7B shapes, p512, 128 steps): the plain step, then the step
#      without each op in turn (LMTERM_BENCH_SKIP, src/cmd_bench.c): the difference is what the op costs
#      inside the step, overlaps with its neighbours under PDL included (--profile times each op alone);
#   2. the same step under each VAR=VALUE[,VAR=VALUE] of PROBE_ENVS (a kernel's measurement switch, e.g.
#      LMTERM_AWQ_W=8: warps per tile), each after the W4A16 checks of test_backend_ops under it, with each
#      GEMV's time alone (--profile);
#   3. ncu --set full on the four AWQ GEMVs of one layer of a decode step (stall reasons, occupancy, DRAM
#      throughput), as text: $OUT/ncu-*.txt.
# PROBE_SKIPS and PROBE_ENVS replace the lists of 1 and 2 (set but empty: that part left out); PROBE_NCU=0
# leaves out 3, PROBE_NCU_ENV (VAR=VALUE...) profiles a variant. A whole run took 1 to 3 minutes on the H200.
set -u
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
for f in lmterm.xz tests/test_backend_ops.xz; do
	[ -f "$f" ] && xz -dc "$f" > "${f%.xz}" && chmod +x "${f%.xz}" && rm -f "$f"
done
OUT=${OUT:-$top/probe-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
t0=$(date +%s)
left() { echo $(( ${PROBE_BUDGET:-560} - ($(date +%s) - t0) )); }
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem,driver_version --format=csv,noheader
date -u '+%Y-%m-%d %H:%M UTC'
cfg=configs/internlm2_5-7b-chat.json
awq() { # label VAR=VALUE... : one AWQ p512 decode run, its decode line
	label=$1
	shift
	[ "$(left)" -gt 40 ] || { echo "$label: skipped (time)"; return; }
	r=$(env "$@" timeout 60 ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --model-format awq \
		--prompt-len 512 -n 128 2>&1 | sed -n 's/^decode.*: //p')
	echo "$label: ${r:-FAILED}"
}
awq base X=0
for op in ${PROBE_SKIPS-norm wqkv attn wo w13 swiglu w2 norm,attn,swiglu wqkv,wo,w13,w2}; do
	awq "without $op" LMTERM_BENCH_SKIP=$op
done
awq base X=0
# the likeliest first: the time guard ends the list where the call's time runs short
for e in ${PROBE_ENVS-X=0 LMTERM_AWQ_W=4 LMTERM_AWQ_W=8 LMTERM_AWQ_W=16 LMTERM_PDL=0}; do
	vars=$(echo "$e" | tr ',' ' ')
	# the variant's kernels against the cpu backend first (the W4A16 checks, F16 and BF16)
	if [ -x tests/test_backend_ops ] && [ "$(left)" -gt 90 ]; then
		env $vars LMTERM_TEST_ONLY=awq timeout 60 tests/test_backend_ops > "$OUT/ops.log" 2>&1
		echo "test_backend_ops (awq) with $e: rc $? ($(grep 'checks,' "$OUT/ops.log" | tail -1))"
		grep -m5 '^FAIL' "$OUT/ops.log"
		mv "$OUT/ops.log" "$OUT/ops-$(echo "$e" | tr -c 'A-Za-z0-9\n' _).log"
	fi
	awq "$e" $vars
	# each GEMV alone under the variant
	[ "$(left)" -gt 40 ] && env $vars timeout 40 ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda \
		--model-format awq --prompt-len 512 -n 32 --profile 2>&1 | grep -E "matmul (wqkv|wo|w13|w2) "
done
awq base X=0
if [ "${PROBE_NCU:-1}" != 0 ] && command -v ncu > /dev/null 2>&1 && [ "$(left)" -gt 120 ]; then
	# 128 GEMVs a step (4 per layer): skip 3 steps, then wqkv, wo, w13, w2 of layer 0
	# PROBE_NCU_ENV: VAR=VALUE... for the profiled run (a variant of the GEMV)
	timeout $(( $(left) - 20 )) env ${PROBE_NCU_ENV:-X=0} ncu --kernel-name regex:awq_tile_gemv --launch-skip 384 --launch-count 4 --set full \
		-o "$OUT/gemv" ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --model-format awq \
		--prompt-len 512 -n 8 > "$OUT/ncu-run.txt" 2>&1
	ncu --import "$OUT/gemv.ncu-rep" --page details > "$OUT/ncu-details.txt" 2>&1
	ncu --import "$OUT/gemv.ncu-rep" --page source --csv --print-source sass > "$OUT/ncu-sass.csv" 2>&1
	grep -E "awq_tile_gemv|Duration|DRAM Throughput|Achieved Occupancy|Theoretical Occupancy|Registers Per|Issue Slots Busy|No Eligible|Eligible Warps" \
		"$OUT/ncu-details.txt"
	rm -f "$OUT/gemv.ncu-rep"
	xz -9 "$OUT/ncu-sass.csv"
fi
