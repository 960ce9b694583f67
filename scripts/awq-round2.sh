#!/bin/sh
# awq-round2.sh: one GPU round for the batch-1 W4A16 GEMV variants (cuda/awq_gemm.cu, issue 5).
#   scripts/awq-round2.sh prepare DEST   (here, after make lmterm tests/test_backend_ops tests/bench_awq)
#   sh run.sh                            (on the GPU machine, in DEST; logs in one tar under $OUT)
# 1. tests/test_backend_ops: the AWQ checks (LMTERM_TEST_ONLY=awq) per kernel variant, with and without PDL,
#    and every check once with the new kernel
# 2. tests/bench_awq decode 128: each variant (LMTERM_AWQ_KERNEL / _CW / _STAGES), with and without
#    LMTERM_PDL=1, batches 1..8 for the old and new kernels, 1 and 8 for the others
# 3. lmterm bench (7B, --dummy, fp16, awq, p512): old and new kernels, with and without PDL; --profile of both
# 4. compute-sanitizer memcheck on the AWQ checks with the new kernel
set -u
mode=${1:-run}
if [ "$mode" = prepare ]; then
	dest=${2:?usage: awq-round2.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	rm -rf "$dest" && mkdir -p "$dest/tests" "$dest/lib" || exit 1
	cp "$top/lmterm" "$dest/" && cp "$top/tests/test_backend_ops" "$top/tests/bench_awq" "$dest/tests/" || exit 1
	cp -r "$top/configs" "$dest/"
	cp -P /usr/lib/x86_64-linux-gnu/libcjson.so.1* /usr/lib/x86_64-linux-gnu/libutf8proc.so.2* "$dest/lib/"
	cp "$top/scripts/awq-round2.sh" "$dest/run.sh"
	strip "$dest/lmterm" "$dest/tests/test_backend_ops" "$dest/tests/bench_awq"
	xz -6 -T2 "$dest/lmterm" "$dest/tests/test_backend_ops" "$dest/tests/bench_awq"
	du -sh "$dest"
	exit 0
fi

top=$(pwd)
for f in lmterm.xz tests/*.xz; do [ -f "$f" ] && xz -dc "$f" > "${f%.xz}" && chmod +x "${f%.xz}"; done
OUT=${OUT:-$top/out}
L="$OUT/logs"
mkdir -p "$L"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
t0=$(date +%s)
left() { echo $(( ${BUDGET:-190} - ($(date +%s) - t0) )); }
lim() { l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $(( l > 3 ? l : 3 )); }
log() { echo "[$(( $(date +%s) - t0 ))s] $*" >> "$L/progress.log"; }
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv > "$L/gpu.txt" 2>&1
date -u '+%Y-%m-%d %H:%M UTC' >> "$L/gpu.txt"

# variants: "label env..." (env assignments for the kernel choice)
K4=LMTERM_AWQ_KERNEL=4
VARIANTS=${VARIANTS:-"v1:LMTERM_AWQ_KERNEL=1 v4:$K4 v4c8:$K4,LMTERM_AWQ_CW=8,LMTERM_AWQ_STAGES=12 v4c32:$K4,LMTERM_AWQ_CW=32,LMTERM_AWQ_STAGES=4 v4s4:$K4,LMTERM_AWQ_STAGES=4 v4c32s6:$K4,LMTERM_AWQ_CW=32,LMTERM_AWQ_STAGES=6 v4c24:$K4,LMTERM_AWQ_CW=24,LMTERM_AWQ_STAGES=6"}
FULLNB="v1 v4"
venv() { for v in $VARIANTS; do [ "${v%%:*}" = "$1" ] && echo "${v#*:}" | tr ',' ' '; done; }

log "correctness"
: > "$L/tests.txt"
t1() { # label pdl only timeout
	log "test $1 pdl$2 $3"
	env $(venv $1) LMTERM_PDL=$2 LMTERM_TEST_ONLY=$3 timeout $(lim $4) tests/test_backend_ops > "$L/ops_$1_$2_$3.log" 2>&1
	r=$?
	echo "test_backend_ops($3, PDL=$2) $1: rc $r, $(grep -c '^FAIL' "$L/ops_$1_$2_$3.log") FAIL lines, $(grep -h 'checks,' "$L/ops_$1_$2_$3.log" | tr '\n' ' ')" >> "$L/tests.txt"
}
t1 v4 1 awq 25
t1 v4 0 awq 25
t1 v4c32 1 awq 25
t1 v4c8 1 awq 25
t1 v4 1 all 90

: > "$L/micro.txt"
micro() { # pdl, min seconds left
	for v in $VARIANTS; do
		v=${v%%:*}
		[ "$(left)" -gt "$2" ] || break
		log "micro $v pdl$1"
		nb="1 8"
		case " $FULLNB " in *" $v "*) nb="1 2 3 4 6 8" ;; esac
		env $(venv $v) LMTERM_PDL=$1 BENCH_AWQ_NB="$nb" timeout $(lim 15) tests/bench_awq decode 128 > "$L/micro_${v}_pdl$1.log" 2>&1
		grep "^decode" "$L/micro_${v}_pdl$1.log" | sed "s/^/$v pdl$1 /" >> "$L/micro.txt"
	done
}
micro 1 70
micro 0 60
grep -h "^device" "$L"/micro_v1_pdl1.log > "$L/device.txt" 2>/dev/null

cfg=configs/internlm2_5-7b-chat.json
: > "$L/bench.txt"
for run in "v1 0" "v4 0" "v1 1" "v4 1" "v4c32 0" "v4c32 1" "v4c24 1"; do
	set -- $run
	[ "$(left)" -gt 25 ] || break
	log "bench $1 pdl$2"
	env $(venv $1) LMTERM_PDL=$2 timeout $(lim 30) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda \
		--model-format awq --prompt-len 512 -n 128 --json > "$L/b_$1_$2.json" 2>> "$L/bench.err"
	echo "$1 pdl$2 $(cat "$L/b_$1_$2.json")" >> "$L/bench.txt"
done
for v in v4 v1; do
	[ "$(left)" -gt 20 ] || break
	log "profile $v"
	env $(venv $v) timeout $(lim 20) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --model-format awq \
		--prompt-len 512 -n 64 --profile > "$L/profile_$v.txt" 2>&1
done
r_san=77
if command -v compute-sanitizer > /dev/null 2>&1 && [ "$(left)" -gt 25 ]; then
	log "memcheck v4"
	env $(venv v4) LMTERM_TEST_ONLY=awq timeout $(lim 60) compute-sanitizer --tool memcheck --error-exitcode 9 tests/test_backend_ops > "$L/memcheck.log" 2>&1
	r_san=$?
fi
log "done"

echo "== W4A16 round: $(tr '\n' ' ' < "$L/gpu.txt")"
cat "$L/device.txt"
echo "-- bench_awq decode (variant, pdl, shape, batch: us, % of copy)"
awk '{ for (i = 1; i <= NF; i++) { if ($i == "n") n = $(i + 1); if ($i == "us") u = $(i - 1); if ($i == "copy") p = $(i - 2) }
	k = sprintf("%-7s %s %-4s", $1, $2, $4); if (!(k in o)) ord[m++] = k; o[k] = o[k] sprintf("  n%s %7s us %6s", n, u, p) }
	END { for (i = 0; i < m; i++) print ord[i] ":" o[ord[i]] }' "$L/micro.txt"
echo "-- lmterm bench p512 (decode tok/s, roofline)"
sed -e 's/[{},]/ /g' "$L/bench.txt" | awk '{ for (i = 3; i <= NF; i++) { k = $i; gsub(/[":]/, "", k); v[k] = $(i + 1) }
	printf "%-4s %s prefill %8.0f decode %7.1f roofline %5.1f%%\n", $1, $2, v["prefill_tok_s"], v["decode_tok_s"], 100 * v["roofline"] }'
tail -3 "$L/bench.err" 2>/dev/null
for v in v4 v1; do echo "-- profile $v (no PDL)"; grep -iE "matmul|norm|rope|attention|swiglu|lm_head|argmax|step" "$L/profile_$v.txt" 2>/dev/null | sed -E "s/ +/ /g" | head -16; done
cat "$L/tests.txt"
grep -h "^FAIL" "$L"/ops_*.log 2>/dev/null | head -5
tail -2 "$L/progress.log"
echo "memcheck (v4, awq checks): rc $r_san; $(grep -h "ERROR SUMMARY" "$L/memcheck.log" 2>/dev/null | tail -1)"
tar czf "$OUT/w4.tgz" -C "$OUT" logs && rm -rf "$L"
