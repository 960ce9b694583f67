#!/bin/sh
# gpu-round.sh: the whole GPU round of the CUDA backend in ONE device call.
#
#   scripts/gpu-round.sh prepare DEST   (here, in a configured and built CUDA tree: `make -j2 && make -j2 check
#                                        TESTS=`) copies what the round needs into DEST: the binaries, the
#                                        shared libraries the GPU machine lacks (cJSON, utf8proc), the configs,
#                                        the fixture models and goldens (xz, unpacked there), this script.
#   scripts/gpu-round.sh run            (on the GPU machine, from DEST or from a build tree) runs:
#        1. tests/test_backend_ops          every op, cuda vs cpu (F16 and BF16)
#        2. tests/test_attn_ops             the attention kernels against float references
#        3. tests/test_golden_cuda.sh       the golden models on the cuda backend (fp16/bf16 tolerances),
#           tests/test_cuda_opts.sh         --eager-mode and --dtype on the cuda backend,
#           tests/test_gptq.sh              GPTQ checkpoints against their dequantization, on the cuda backend
#           tests/test_golden_fold.sh       the golden models on the other side of LMTERM_FOLD (the norms folded
#                                           into the GEMVs): folded on the cpu, unfolded on cuda
#           tests/test_qwen3.sh             a tiny Qwen3 (q/k norms) against its reference forward, AWQ round trip
#        4. lmterm bench configs/internlm2_5-7b-chat.json --dummy --dtype float16:
#             prompt 512 and 2048 (prefill, TTFT, decode at that context), decode at a 4096-token
#             context with --quant-policy 0, 8 and 4, and p512 decode sampling (T 0.8, top-k 40, top-p 0.9)
#             and the AWQ model at 512 as it is and with LMTERM_FOLD=0 (its norms not folded into the GEMVs)
#        5. lmterm bench --profile (each op of a decode step alone), by default and with LMTERM_PDL=0 and 1,
#           and the AWQ model (and with LMTERM_FOLD=0)
#        6. tests/test_backend_ops under compute-sanitizer memcheck (150 s at most)
#      and prints a short table last. Logs and the bench JSON go to $OUT (fetched by the device tool).
#      ROUND_LEAN=1 leaves out the LMTERM_PDL=1 runs and the AWQ bench (a round shared with other work).
#
# A device call (DEVICE.md): prepare into /work/main/.device/cuda, carry .device/cuda, and run
#   cd .device/cuda && sh scripts/gpu-round.sh run
set -u

mode=${1:-run}

if [ "$mode" = prepare ]; then
	dest=${2:?usage: gpu-round.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	for f in lmterm tests/test_backend_ops tests/test_golden tests/test_attn_ops tests/bench_handoff; do
		[ -x "$top/$f" ] || { echo "gpu-round: $top/$f is not built (make -j2 && make -j2 check TESTS=)"; exit 1; }
	done
	rm -rf "$dest" && mkdir -p "$dest/tests" "$dest/lib" "$dest/scripts" "$dest/data"
	cp "$top/lmterm" "$dest/"
	cp "$top/tests/test_backend_ops" "$top/tests/test_golden" "$top/tests/test_attn_ops" "$top/tests/bench_handoff" \
		"$dest/tests/"
	cp "$top/tests/lib.sh" "$top/tests/unpack-data.sh" "$top/tests/test_golden_cuda.sh" "$top/tests/test_cuda_opts.sh" \
		"$top/tests/test_golden_fold.sh" \
		"$top/tests/test_gptq.sh" "$top/tests/make_gptq.py" "$top/tests/st_io.py" "$top/tests/test_qwen3.sh" \
		"$top/tests/make_qwen3.py" "$top/tests/test_phi3.sh" "$top/tests/make_phi3.py" "$dest/tests/"
	cp "$top/scripts/gpu-round.sh" "$top/scripts/awq-probe.sh" "$dest/scripts/"
	cp -r "$top/configs" "$dest/"
	cp -P /usr/lib/x86_64-linux-gnu/libcjson.so.1* /usr/lib/x86_64-linux-gnu/libutf8proc.so.2* "$dest/lib/"
	# the random fixtures and their goldens (the bigger real-text models stay home: carry limit);
	# ROUND_FIXTURES: which (set but empty: none, to leave room for ROUND_REAL_MODELS="small-en-zh tiny-en-zh")
	mkdir -p "$dest/data/fixtures" "$dest/data/golden"
	: > "$dest/data/fixture-models"
	for m in ${ROUND_FIXTURES-llama3-rand llama3-rand-awq qwen2-rand llama-dynrope-rand internlm2-rand}; do
		cp -r "$top/tests/data/fixtures/$m" "$dest/data/fixtures/"
		cp -r "$top/tests/data/golden/$m" "$dest/data/golden/"
		echo "$m" >> "$dest/data/fixture-models"
	done
	# ROUND_REAL_MODELS: trained models of tests/data/models too (tiny-en-zh-internlm2 is 13 MB, small-en-zh 36)
	# (the demo model tiny-en-zh lives in models/ of the tree: compressed into the bundle's models/)
	for m in ${ROUND_REAL_MODELS:-}; do
		if [ "$m" = tiny-en-zh ]; then
			mkdir -p "$dest/models/$m"
			for f in "$top/models/$m"/*; do
				case "$f" in
				*.safetensors) xz -6 -T2 -c "$f" > "$dest/models/$m/$(basename "$f").xz" ;;
				*) cp "$f" "$dest/models/$m/" ;;
				esac
			done
		else
			mkdir -p "$dest/data/models"
			cp -r "$top/tests/data/models/$m" "$dest/data/models/"
		fi
		cp -r "$top/tests/data/golden/$m" "$dest/data/golden/"
		echo "$m" >> "$dest/data/real-models"
	done
	# the device call's tree is limited (64 MiB with everything else carried): stripped, xz-compressed
	strip "$dest/lmterm" "$dest/tests/test_backend_ops" "$dest/tests/test_golden" "$dest/tests/test_attn_ops" \
		"$dest/tests/bench_handoff"
	xz -6 -T2 "$dest/lmterm" "$dest/tests/test_backend_ops" "$dest/tests/test_golden" "$dest/tests/test_attn_ops" \
		"$dest/tests/bench_handoff"
	du -sh "$dest"
	exit 0
fi

[ "$mode" = run ] || { echo "usage: gpu-round.sh prepare DEST | run"; exit 2; }
cd "$(dirname "$0")/.." || exit 1
top=$(pwd)
for f in lmterm.xz tests/*.xz models/*/*.xz; do
	[ -f "$f" ] || continue
	{ xz -dc "$f" > "${f%.xz}" 2>/dev/null ||
		python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$f" "${f%.xz}"; } &&
		chmod +x "${f%.xz}" && rm -f "$f"
done
OUT=${OUT:-$top/gpu-round-out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export top_srcdir="$top" top_builddir="$top" LMTERM="$top/lmterm"
if [ -d "$top/data" ]; then
	sh tests/unpack-data.sh "$top/data" "$top/data-unpacked" || exit 1
	fixtures="llama3-rand llama3-rand-awq qwen2-rand llama-dynrope-rand internlm2-rand"
	[ -f "$top/data/fixture-models" ] && fixtures=$(tr '\n' ' ' < "$top/data/fixture-models")
	export TESTDATA="$top/data-unpacked" LMTERM_TEST_MODELS="$fixtures $(cat "$top/data/real-models" 2>/dev/null | tr '\n' ' ')"
else
	export TESTDATA="$top/tests/data-unpacked"
fi

nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
date -u '+%Y-%m-%d %H:%M UTC' | tee -a "$OUT/gpu.txt"

t0=$(date +%s)
# the device call is limited to 600 s: a step starts only while enough of that is left
left() { echo $(( ${ROUND_BUDGET:-540} - ($(date +%s) - t0) )); }
lim() { l=$(left); [ "$l" -gt "$1" ] && echo "$1" || echo $(( l > 5 ? l : 5 )); }
status() { [ "$1" -eq 0 ] && echo pass || { [ "$1" -eq 77 ] && echo skip || echo "FAIL($1)"; }; }

timeout $(lim 120) tests/test_backend_ops > "$OUT/backend_ops.log" 2>&1; r_ops=$?
grep -E "^FAIL|checks," "$OUT/backend_ops.log" | tail -15
# again with programmatic dependent launch on every kernel (LMTERM_PDL=1: by default only for AWQ models)
lean=${ROUND_LEAN:-0} r_pdl=77
if [ "$lean" != 1 ]; then
	echo "== again with LMTERM_PDL=1" >> "$OUT/backend_ops.log"
	LMTERM_PDL=1 timeout $(lim 60) tests/test_backend_ops > "$OUT/ops_pdl.tmp" 2>&1; r_pdl=$?
	cat "$OUT/ops_pdl.tmp" >> "$OUT/backend_ops.log"
	grep -E "^FAIL|checks," "$OUT/ops_pdl.tmp" | tail -5
	rm -f "$OUT/ops_pdl.tmp"
fi
timeout $(lim 60) tests/test_attn_ops > "$OUT/attn_ops.log" 2>&1; r_attn=$?
tail -3 "$OUT/attn_ops.log"
timeout $(lim 90) sh tests/test_golden_cuda.sh > "$OUT/golden.log" 2>&1; r_gold=$?
grep -E "rel err|FAIL|failure" "$OUT/golden.log" | tail -15
timeout $(lim 60) sh tests/test_cuda_opts.sh > "$OUT/cuda_opts.log" 2>&1; r_opts=$?
grep -E "^(ok|FAIL|SKIP)" "$OUT/cuda_opts.log"
# GPTQ checkpoints on the GPU (W4A16 kernels) against their dense dequantization (fp16 GEMV), fp16 tolerance
GPTQ_BACKEND=cuda GPTQ_RTOL=3e-2 timeout $(lim 120) sh tests/test_gptq.sh > "$OUT/gptq.log" 2>&1; r_gptq=$?
grep -E "^FAIL|\(cuda\)" "$OUT/gptq.log" | head -15
# the golden models on the other side of LMTERM_FOLD: the cpu folded, cuda unfolded
timeout $(lim 120) sh tests/test_golden_fold.sh > "$OUT/golden_fold.log" 2>&1; r_fold=$?
grep -E "rel err|FAIL|failure|^ok" "$OUT/golden_fold.log" | tail -12
# Qwen3's q/k norms on the GPU (qk_norm kernel, in the decode graph) against the reference forward
QWEN3_BACKEND=cuda QWEN3_RTOL=3e-2 timeout $(lim 90) sh tests/test_qwen3.sh > "$OUT/qwen3.log" 2>&1; r_qwen3=$?
grep -E "^FAIL|\(cuda\)" "$OUT/qwen3.log" | head -10
# Phi-3's fused tensors and LongRoPE (cos/sin scaled, both regimes, the switch) on the GPU against the reference
PHI3_BACKEND=cuda PHI3_RTOL=3e-2 timeout $(lim 90) sh tests/test_phi3.sh > "$OUT/phi3.log" 2>&1; r_phi3=$?
grep -E "^FAIL|\(cuda\)" "$OUT/phi3.log" | head -14

cfg=configs/internlm2_5-7b-chat.json
: > "$OUT/bench.jsonl"
bench() { # label prompt-len n policy [more options]
	label=$1 plen=$2 steps=$3 pol=$4
	shift 4
	[ "$(left)" -gt 30 ] || { echo "bench $label skipped: round time spent"; return; }
	if env ${pdl:+LMTERM_PDL=$pdl} timeout $(lim 60) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --prompt-len "$plen" -n "$steps" \
		--quant-policy "$pol" --json "$@" > "$OUT/bench1.json" 2>> "$OUT/bench.err"; then
		sed "s/^{/{\"label\": \"$label\", /" "$OUT/bench1.json" >> "$OUT/bench.jsonl"
	else
		echo "bench $label failed: $(tail -1 "$OUT/bench.err")"
	fi
}
# pdl empty: LMTERM_PDL unset, the default (fp16: the GEMVs alone; AWQ: every kernel); 0 and 1 force it
pdl=
bench p512 512 128 0
pdl=0
bench p512-pdl0 512 128 0
pdl=
bench p2048 2048 64 0
bench kv0-4k 4096 64 0
bench kv8-4k 4096 64 8
bench kv4-4k 4096 64 4
bench p512-smp 512 128 0 --temperature 0.8 --top-k 40 --top-p 0.9
# the AWQ decode step (issue 5) as it is (its norms folded into the GEMVs) and without the fold, twice each
for k in a b; do
	bench awq-$k 512 128 0 --model-format awq
	export LMTERM_FOLD=0
	bench awq-nofold-$k 512 128 0 --model-format awq
	unset LMTERM_FOLD
done
if [ "$lean" != 1 ]; then
	pdl=1
	bench p512-pdl 512 128 0
	bench kv0-4k-pdl 4096 64 0
	pdl=0
	bench awq-p512 512 128 0 --model-format awq
	pdl=1
	bench awq-p512-pdl 512 128 0 --model-format awq
	# the same pairs again, interleaved: the spread between runs of identical code
	pdl=
	bench p512-b 512 128 0
	pdl=0
	bench p512-pdl0-b 512 128 0
	pdl=1
	bench p512-pdl-b 512 128 0
	pdl=0
	bench awq-p512-b 512 128 0 --model-format awq
	pdl=1
	bench awq-pdl-b 512 128 0 --model-format awq
	pdl=
fi
rm -f "$OUT/bench1.json"
# the human-readable report of the first configuration, for the memory lines
timeout $(lim 60) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda --prompt-len 512 -n 32 > "$OUT/bench512.txt" 2>&1
cat "$OUT/bench512.txt"

# where a decode step's time goes: each op alone (bench --profile), without and with PDL, and the GEMV
# shapes of cuda/gemv.cu (LMTERM_GEMV=v) for batch 1
: > "$OUT/profile.txt"
# ROUND_PROFILES: more runs as NAME:VAR=VALUE[,VAR=VALUE] (e.g. gemv9:LMTERM_GEMV=9; a list of PDL families
# as LMTERM_PDL=gemv+norm, since the comma separates the variables), each also running the
# backend-ops test under that environment; a NAME that starts with awq profiles the AWQ model
for run in base:X=0 awq:X=0 $([ "$lean" = 1 ] || echo pdl0:LMTERM_PDL=0 pdl1:LMTERM_PDL=1 awqnofold:LMTERM_FOLD=0) ${ROUND_PROFILES:-}; do
	[ "$(left)" -gt 40 ] || break
	name=${run%%:*} envs=$(echo "${run#*:}" | tr ',' ' ')
	echo "== profile $name ($envs)" >> "$OUT/profile.txt"
	[ "$name" = base ] || [ "$name" = awq ] || { env $envs timeout $(lim 60) tests/test_backend_ops > "$OUT/ops1.tmp" 2>&1 ||
		echo "backend_ops with $envs FAILED: $(grep -m3 FAIL "$OUT/ops1.tmp")" | tee -a "$OUT/profile.txt"; }
	fmt=; case $name in awq*) fmt="--model-format awq" ;; esac
	env $envs timeout $(lim 60) ./lmterm bench "$cfg" --dummy --dtype float16 --backend cuda $fmt \
		--prompt-len 512 -n 32 --profile > "$OUT/prof1.tmp" 2>&1
	sed -n '/^decode/p;/^roofline/p;/^profile/,$p' "$OUT/prof1.tmp" >> "$OUT/profile.txt"
done
rm -f "$OUT/prof1.tmp" "$OUT/ops1.tmp"
cat "$OUT/profile.txt"

# last, so that a slow sanitizer cannot cost the timings: every op's kernels under memcheck
r_san=77
if command -v compute-sanitizer > /dev/null 2>&1; then
	[ "$(left)" -gt 20 ] && timeout $(lim 150) compute-sanitizer --tool memcheck --error-exitcode 9 tests/test_backend_ops > "$OUT/memcheck.log" 2>&1
	r_san=$?
	tail -2 "$OUT/memcheck.log"
fi

echo
echo "== GPU round: $(head -2 "$OUT/gpu.txt" | tail -1)"
echo "tests: backend_ops $(status $r_ops) (PDL $(status $r_pdl)), attn_ops $(status $r_attn), golden(cuda) $(status $r_gold), LMDeploy options(cuda) $(status $r_opts), gptq(cuda) $(status $r_gptq), qwen3(cuda) $(status $r_qwen3), phi3(cuda) $(status $r_phi3), folded norms $(status $r_fold), memcheck $(status $r_san)"
printf '%-11s %-6s %-6s %12s %9s %12s %9s %9s\n' run prompt policy prefill_tok/s ttft_ms decode_tok/s roofline copy_GB/s
sed -e 's/[{},]/ /g' "$OUT/bench.jsonl" | awk '{
	for (i = 1; i <= NF; i++) { k = $i; gsub(/[":]/, "", k); v[k] = $(i + 1) }
	gsub(/"/, "", v["label"])
	printf "%-11s %-6s %-6s %12.0f %9.2f %12.1f %8.1f%% %9.0f\n", v["label"], v["prompt_len"], v["quant_policy"],
		v["prefill_tok_s"], 1000 * v["ttft_s"], v["decode_tok_s"], 100 * v["roofline"], v["copy_bw"] / 1e9 }'

# the device tool brings back only a few files: everything in one archive, the console tells the rest
tar czf /tmp/gpu-round-logs.tgz -C "$OUT" . && find "$OUT" -mindepth 1 -delete && mv /tmp/gpu-round-logs.tgz "$OUT/"
