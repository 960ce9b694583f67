#!/bin/sh
# test_gptq: GPTQ checkpoints run as the dense model of their exact dequantization.
# tests/make_gptq.py (standard-library Python, written apart from lmterm's loader) quantizes llama3-rand,
# qwen2-rand (q/k/v biases, tied) and internlm2-rand (packed wqkv) in AutoGPTQ's layout (sym and asym, the v1
# "gptq" zeros-minus-one and "gptq_v2" formats, group 128, 64 and -1, quantization_config or AutoGPTQ's
# quantize_config.json alone) and writes beside it the dense F32 model of (q - z) * s. On the CPU backend
# `generate --dump-logits` of the two must agree within 1e-4 relative, and the GPTQ model's 8 greedy ids must be
# the dense model's argmax where it is fed them (teacher-forced; a near tie within the tolerance may go either
# way). Controls: the
# original (unquantized) model and a v2 checkpoint declared as v1 must NOT agree, so the comparison can fail.
# Then bad input: each a message and a non-zero exit.
. "${top_srcdir:-.}/tests/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
MG="python3 $top_srcdir/tests/make_gptq.py"
FIX=$TESTDATA/fixtures
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
IDS="1 5 9 33 100 7 4000 12"
# GPTQ_BACKEND=cuda GPTQ_RTOL=3e-2 (the GPU round, scripts/gpu-round.sh): the comparison on the GPU, where the
# GPTQ model runs the W4A16 kernels and the dense one the fp16 GEMV, so only fp16 rounding parts them; the
# greedy ids are then compared over the first 4 tokens, as the golden tests on the GPU do
B=${GPTQ_BACKEND:-cpu} RTOL=${GPTQ_RTOL:-1e-4}
gen() { "$LMTERM" generate "$1" --ids "$IDS" -n 8 --greedy --print-ids --backend "$B" --dump-logits "$2" 2>"$tmp/err"; }

# same: DESC GPTQ_DIR DENSE_DIR: logits within RTOL, and the GPTQ model's greedy ids those of the dense model
# fed the same ids (teacher-forced: each id its argmax, or a near tie within RTOL, where fp16 may choose either)
same() {
	a=$(gen "$2" "$tmp/a.st") || { fail "$1: gptq: $(cat "$tmp/err")"; return; }
	a=$(first4 "$a")
	b=$("$LMTERM" generate "$3" --ids "$IDS $(echo "$a" | awk '{NF--; print}')" -n 1 --greedy --print-ids \
		--backend "$B" --dump-logits "$tmp/b.st" 2>"$tmp/err") || { fail "$1: dense: $(cat "$tmp/err")"; return; }
	if cmp=$($MG compare "$tmp/a.st" "$tmp/b.st" "$RTOL" "$a"); then pass "$1 ($B): $cmp, ids $a"
	else fail "$1 ($B): $cmp; ids $a"; fi
}

for fx in llama3-rand qwen2-rand internlm2-rand; do
	for v in "--group 128" "--group 64 --asym --format gptq_v2" "--group -1 --asym" "--group 64 --format gptq_v2 --quantize-config only"; do
		rm -rf "$tmp/g" "$tmp/d"
		$MG quantize "$FIX/$fx" "$tmp/g" "$tmp/d" $v || { fail "$fx $v: make_gptq.py"; continue; }
		same "$fx $v" "$tmp/g" "$tmp/d"
	done
done

# controls: the comparison can fail
gen "$tmp/g" "$tmp/a.st" >/dev/null && gen "$FIX/internlm2-rand" "$tmp/o.st" >/dev/null &&
	! $MG compare "$tmp/a.st" "$tmp/o.st" "$RTOL" >/dev/null && pass "control: the unquantized model differs" ||
	fail "control: the GPTQ model equals the unquantized one"
rm -rf "$tmp/g" "$tmp/d"
$MG quantize "$FIX/llama3-rand" "$tmp/g" "$tmp/d" --group 64 --format gptq_v2
sed 's/"gptq_v2"/"gptq"/' "$tmp/g/config.json" > "$tmp/c" && mv "$tmp/c" "$tmp/g/config.json"
gen "$tmp/g" "$tmp/a.st" >/dev/null && gen "$tmp/d" "$tmp/b.st" >/dev/null &&
	! $MG compare "$tmp/a.st" "$tmp/b.st" "$RTOL" >/dev/null && pass "control: v2 zeros read as v1 differ" ||
	fail "control: v2 zeros read as v1 give the same logits"

# --model-format: gptq accepted where awq is; a mismatch is an error naming the right one
rm -rf "$tmp/g" "$tmp/d"
$MG quantize "$FIX/llama3-rand" "$tmp/g" "$tmp/d" --group 128
G=$tmp/g
out=$(printf 'hi\n\nexit\n' | "$LMTERM" chat "$G" --model-format gptq --no-tui --backend cpu --max-new-tokens 2 2>&1) &&
	pass "chat --model-format gptq" || fail "chat --model-format gptq: $out"
expect_fail "chat --model-format awq on GPTQ" "use --model-format gptq" sh -c "echo exit | '$LMTERM' chat '$G' --model-format awq --no-tui --backend cpu"
expect_fail "chat --model-format hf on GPTQ" "4-bit GPTQ (use --model-format gptq)" sh -c "echo exit | '$LMTERM' chat '$G' --model-format hf --no-tui --backend cpu"
expect_fail "chat --model-format gptq on AWQ" "use --model-format awq" sh -c "echo exit | '$LMTERM' chat '$FIX/llama3-rand-awq' --model-format gptq --no-tui --backend cpu"
expect_fail "chat --model-format gptq on a dense model" "no GPTQ quantization_config" sh -c "echo exit | '$LMTERM' chat '$FIX/llama3-rand' --model-format gptq --no-tui --backend cpu"
expect_fail "chat --model-format gptq4" "hf, awq or gptq" "$LMTERM" chat "$G" --model-format gptq4 --no-tui
expect_fail "bench --model-format gptq4" "hf, awq or gptq" "$LMTERM" bench "$G" --model-format gptq4
"$LMTERM" bench "$G" --model-format gptq --backend cpu --prompt-len 8 -n 4 >"$tmp/out" 2>&1 &&
	pass "bench --model-format gptq" || fail "bench --model-format gptq: $(tail -3 "$tmp/out")"
expect_fail "bench --model-format awq on GPTQ" "use --model-format gptq" "$LMTERM" bench "$G" --model-format awq --backend cpu -n 4
# lite auto_awq: already quantized
expect_fail "lite auto_awq on GPTQ" "already quantized" "$LMTERM" lite auto_awq "$G" --work-dir "$tmp/w" --calib-samples 0
[ ! -e "$tmp/w" ] && pass "lite auto_awq on GPTQ leaves no work dir" || fail "lite auto_awq left $tmp/w"

# bad configs: edit quantization_config (or quantize_config.json) of a good checkpoint
edit() { # FILE PYTHON-EXPR-ON-q
	python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); q=c.get('quantization_config', c); $2; json.dump(c, open(p, 'w'))" "$1"
}
bad_cfg() { # DESC PATTERN EXPR
	rm -rf "$tmp/b" && cp -r "$G" "$tmp/b" && edit "$tmp/b/config.json" "$3"
	expect_fail "$1" "$2" "$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
}
bad_cfg "desc_act true" "desc_act\" = true: GPTQ with act-order is not supported" "q['desc_act'] = True"
bad_cfg "bits 8" "\"quantization_config.bits\" = 8: only 4-bit GPTQ" "q['bits'] = 8"
bad_cfg "group size 0" "group_size\" = 0: expected -1 or a positive multiple of 8" "q['group_size'] = 0"
bad_cfg "group size not dividing" "not a multiple of the GPTQ group size 48" "q['group_size'] = 48"
bad_cfg "marlin format" "\"marlin\" is not supported (gptq or gptq_v2)" "q['checkpoint_format'] = 'marlin'"
bad_cfg "is_marlin_format" "is_marlin_format\" = true" "q['is_marlin_format'] = True"
bad_cfg "pack_dtype int64" "pack_dtype\": \"int64\" is not supported" "q['pack_dtype'] = 'int64'"
bad_cfg "quant_method bitsandbytes" "\"bitsandbytes\" is not supported (awq or gptq)" "q['quant_method'] = 'bitsandbytes'"
# quantize_config.json disagreeing with config.json
rm -rf "$tmp/b" && cp -r "$G" "$tmp/b"
echo '{"bits": 4, "group_size": 64, "desc_act": false, "sym": true}' > "$tmp/b/quantize_config.json"
expect_fail "quantize_config.json disagreeing" "quantize_config.json: group_size 64, sym true, format gptq, but config.json's quantization_config says group_size 128" \
	"$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
echo '{"bits": 4, "group_size": 128, "desc_act": true, "sym": true}' > "$tmp/b/quantize_config.json"
expect_fail "quantize_config.json with desc_act" "quantize_config.json: key \"desc_act\" = true" "$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
echo '{"bits": 4, "group_size": 128, "desc_act": false, "sym": true, "checkpoint_format": "gptq"}' > "$tmp/b/quantize_config.json"
out=$("$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu 2>&1) && pass "quantize_config.json agreeing" || fail "quantize_config.json agreeing: $out"
# a checkpoint of AutoGPTQ's quantize_config.json only: the messages do not say config.json declares it, and lite
# says what to do (it said 'already quantized', no more)
rm -rf "$tmp/b" "$tmp/d"
$MG quantize "$FIX/llama3-rand" "$tmp/b" "$tmp/d" --group 32 --quantize-config only
expect_fail "lite auto_awq on quantize_config.json's GPTQ" "already quantized (4-bit GPTQ); quantize the original" \
	"$LMTERM" lite auto_awq "$tmp/b" --work-dir "$tmp/w" --calib-samples 0
expect_fail "--model-format hf on quantize_config.json's GPTQ" "hf, but the quantization config says the weights are 4-bit GPTQ" \
	"$LMTERM" bench "$tmp/b" --model-format hf --backend cpu -n 4
# a group_size that g_idx contradicts (in order, groups of 32): the message says so, not act-order
echo '{"bits": 4, "group_size": 64, "desc_act": false, "sym": true}' > "$tmp/b/quantize_config.json"
expect_fail "group_size other than g_idx's" "g_idx holds groups of 32 inputs, but the quantization config says group_size 64" \
	"$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
# GPTQ InternLM2 with a head_dim of 4: the message names GPTQ (it said AWQ)
rm -rf "$tmp/b" "$tmp/d"
$MG quantize "$FIX/internlm2-rand" "$tmp/b" "$tmp/d" --group 32
edit "$tmp/b/config.json" "c.update(num_attention_heads=32, num_key_value_heads=16, head_dim=4)"
expect_fail "GPTQ InternLM2 head_dim 4" "GPTQ InternLM2 needs head_dim a multiple of 8" \
	"$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
# bad tensors
for k in permuted-gidx no-qzeros qweight-shape zero16; do
	rm -rf "$tmp/b" "$tmp/d"
	$MG quantize "$FIX/llama3-rand" "$tmp/b" "$tmp/d" --group 64 --break $k
	case $k in
	permuted-gidx) pat="q_proj.g_idx': g_idx?0? = 1, not 0: the inputs are permuted" ;; # ? for [ ]: a glob
	no-qzeros) pat="model.layers.1.self_attn.q_proj.qzeros' is missing" ;;
	qweight-shape) pat="q_proj.qweight' has shape ?128, 16?, but config.json implies ?16, 128?" ;;
	zero16) pat="model.layers.0.mlp.down_proj.qzeros: GPTQ zero point 16" ;;
	esac
	expect_fail "bad tensors: $k" "$pat" "$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
done
finish
