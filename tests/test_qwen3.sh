#!/bin/sh
# test_qwen3: Qwen3 (Qwen3ForCausalLM) against an independent reference. tests/make_qwen3.py (standard-library
# Python, written from transformers' modeling_qwen3.py, not from lmterm's C) writes a tiny random Qwen3 (head_dim 32
# while hidden / heads is 16, GQA, tied embeddings, q_norm and k_norm) and computes its forward pass in double
# precision. `lmterm generate --dump-logits` must match it within 1e-4 relative on every prompt position and give
# its greedy tokens:
#   - fp32 on the cpu backend; with attention_bias (q/k/v/o biases);
#   - --quant-policy 8 and 4: the reference stores K (normed, rotated) and V as LMDeploy's int8/int4 KV cache does;
#   - the AWQ round trip: lite auto_awq on the tiny model, whose result keeps model_type qwen3 and fp16 q/k norms,
#     and loads back; the reference runs its exact dequantization (q - z) * s; where the smoothing went
#     (make_qwen3.py smoothing: each consumer's columns scaled as its producer was divided; controls: each pair's
#     scale taken as 1 must fail).
# InternVL around the tiny Qwen3 runs (and quantizes) as the bare model.
# Controls (the comparison can fail): the unquantized reference against --quant-policy 8's logits, and a model
# with q_norm and k_norm swapped against the reference of the original, must NOT match. Then: chat and bench
# --profile (the qk_norm op) on it, bench --dummy from a config.json, and bad input (a missing k_norm, head_dim
# absent: Qwen3Config's 128, not hidden / heads; use_sliding_window).
# QWEN3_BACKEND=cuda QWEN3_RTOL=3e-2 (the GPU round): the same on the GPU (fp16 activations), the greedy ids
# compared over the first 4 tokens (each the reference's argmax, or a near tie within the tolerance), as
# test_gptq.sh does.
. "${top_srcdir:-.}/tests/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
MQ="python3 $top_srcdir/tests/make_qwen3.py"
TOK=$TESTDATA/fixtures/qwen2-rand
[ -f "$TOK/tokenizer.model" ] || skip "no qwen2-rand fixture (its tokenizer is borrowed)"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
B=${QWEN3_BACKEND:-cpu} RTOL=${QWEN3_RTOL:-1e-4}
# the CUDA attention kernels take head_dim 64 or 128 (the cpu run keeps 32, which is not hidden / heads either)
[ "$B" = cpu ] || { QWEN3_HEAD_DIM=64; export QWEN3_HEAD_DIM; }
IDS="1 5 9 33 100 7 4000 12"
REF=$MQ
check() { ref_check "$@"; } # tests/lib.sh

$MQ make "$tmp/q3" "$TOK" || { fail "make_qwen3.py make"; finish; }
check "qwen3 fp32" "$tmp/q3"
$MQ make "$tmp/q3b" "$TOK" --bias --seed 2 && check "qwen3 with attention_bias" "$tmp/q3b"
if [ "$B" = cpu ]; then
	check "qwen3 --quant-policy 8" "$tmp/q3" --quant-policy 8 -- --kv-bits 8
	check "qwen3 --quant-policy 4" "$tmp/q3" --quant-policy 4 -- --kv-bits 4
	# control: the int8 cache's logits are not the unquantized model's
	ids=$("$LMTERM" generate "$tmp/q3" --ids "$IDS" -n 8 --greedy --print-ids --backend cpu --quant-policy 8 \
		--dump-logits "$tmp/k.st" 2>"$tmp/err") && ! $MQ check "$tmp/q3" "$tmp/k.st" "$IDS" "$ids" "$RTOL" >"$tmp/out" &&
		pass "control: --quant-policy 8 differs from the unquantized reference: $(cat "$tmp/out")" ||
		fail "control: --quant-policy 8 matches the unquantized reference: $(cat "$tmp/err" "$tmp/out")"
fi
# control: q_norm and k_norm swapped (same shapes) give other logits
$MQ make "$tmp/sw" "$TOK" --break swap-qk-norm
ids=$("$LMTERM" generate "$tmp/sw" --ids "$IDS" -n 8 --greedy --print-ids --backend "$B" --dump-logits "$tmp/s.st" 2>"$tmp/err") &&
	! $MQ check "$tmp/q3" "$tmp/s.st" "$IDS" "$(first4 "$ids")" "$RTOL" >"$tmp/out" &&
	pass "control: swapped q/k norms differ: $(cat "$tmp/out")" ||
	fail "control: swapped q/k norms match the reference: $(cat "$tmp/err" "$tmp/out")"

# AWQ round trip (calibrated on WikiText-2, or on this script's own text where the test data has no text: the GPU
# round's bundle)
calib=$TESTDATA/text/wiki.test.raw
[ -f "$calib" ] || calib=$0
"$LMTERM" lite auto_awq "$tmp/q3" --work-dir "$tmp/awq" --calib-dataset "$calib" \
	--calib-samples 4 --calib-seqlen 32 --w-group-size 32 >"$tmp/out" 2>&1 || fail "lite auto_awq: $(tail -c 300 "$tmp/out")"
if [ -f "$tmp/awq/config.json" ]; then
	python3 - "$tmp/awq" "$top_srcdir/tests" <<'EOF' && pass "auto_awq output: model_type qwen3, Qwen3ForCausalLM, fp16 q/k norms of every layer, quantized q_proj" || fail "auto_awq output: see above"
import glob, json, os, sys
sys.path.insert(0, sys.argv[2])
from st_io import read_safetensors
c = json.load(open(sys.argv[1] + "/config.json"))
t = {n: (d, s) for f in glob.glob(sys.argv[1] + "/*.safetensors") for n, d, s, _ in read_safetensors(f)}
bad = [x for x in (c.get("model_type") == "qwen3", c.get("architectures") == ["Qwen3ForCausalLM"],
                   c.get("quantization_config", {}).get("quant_method") == "awq") if not x]
for l in range(2):
    for k in ("q_norm", "k_norm"):
        if t.get("model.layers.%d.self_attn.%s.weight" % (l, k)) != ("F16", [int(os.environ.get("QWEN3_HEAD_DIM", "32"))]):
            bad.append("layer %d %s: %s" % (l, k, t.get("model.layers.%d.self_attn.%s.weight" % (l, k))))
    if "model.layers.%d.self_attn.q_proj.qweight" % l not in t:
        bad.append("layer %d: no q_proj.qweight" % l)
print(" ".join(map(str, bad)) or "", end="")
sys.exit(1 if bad else 0)
EOF
	check "qwen3 AWQ (lite auto_awq) against its dequantization" "$tmp/awq"
	[ "$B" = cpu ] && check "qwen3 AWQ --quant-policy 8" "$tmp/awq" --quant-policy 8 -- --kv-bits 8
	# where the smoothing went (make_qwen3.py smoothing); controls: a pair's scale taken as 1 must fail
	out=$($MQ smoothing "$tmp/q3" "$tmp/awq") && pass "auto_awq smoothing pairs: $out" ||
		fail "auto_awq smoothing pairs: $out"
	for pair in in-qkv post-gate up-down; do
		out=$($MQ smoothing "$tmp/q3" "$tmp/awq" --assume-none $pair) &&
			fail "control: smoothing $pair taken as none still matches: $out" ||
			pass "control: smoothing $pair taken as none: ${out##*; }"
	done
fi
[ "$B" = cpu ] || finish

# InternVL around a Qwen3 (InternVL 3.5's language models are Qwen3s; tests/make_vlm.py's layout): the language
# model gives the bare model's logits, and auto_awq of the wrapped model the bare model's quantized logits, bit for bit
python3 "$top_srcdir/tests/make_vlm.py" "$tmp/q3" "$tmp/ivl" --layout internvl || fail "make_vlm.py"
"$LMTERM" lite auto_awq "$tmp/ivl" --work-dir "$tmp/ivl-awq" --calib-dataset "$calib" --calib-samples 4 --calib-seqlen 32 \
	--w-group-size 32 >"$tmp/out" 2>&1 || fail "lite auto_awq of InternVL around Qwen3: $(tail -c 300 "$tmp/out")"
for pair in "q3 ivl" "awq ivl-awq"; do
	set -- $pair
	"$LMTERM" generate "$tmp/$1" --ids "$IDS" -n 2 --greedy --backend cpu --dump-logits "$tmp/l1.st" >/dev/null 2>&1 &&
		"$LMTERM" generate "$tmp/$2" --ids "$IDS" -n 2 --greedy --backend cpu --dump-logits "$tmp/l2.st" >/dev/null 2>"$tmp/err" &&
		cmp -s "$tmp/l1.st" "$tmp/l2.st" && pass "$2: the logits of $1, bit for bit" || fail "$2 differs from $1: $(cat "$tmp/err")"
done

# the engine: a chat turn (the template of the borrowed tokenizer_config.json)
out=$(printf 'hello\n\nexit\n' | "$LMTERM" chat "$tmp/q3" --no-tui --backend cpu --max-new-tokens 3 2>&1) &&
	pass "chat on qwen3" || fail "chat on qwen3: $out"
# two turns through Qwen3's own chat template (tests/data/tokenizers/qwen3.tokenizer_config.json's) in the
# interpreter: the engine re-renders the conversation, whose earlier replies the template rewrites
rm -rf "$tmp/t" && cp -r "$tmp/q3" "$tmp/t"
python3 -c "import json, sys; c = json.load(open(sys.argv[1])); c['chat_template'] = json.load(open(sys.argv[2]))['chat_template']; json.dump(c, open(sys.argv[1], 'w'))" \
	"$tmp/t/tokenizer_config.json" "$TESTDATA/tokenizers/qwen3.tokenizer_config.json"
out=$(printf 'hello\n\nhow are you\n\nexit\n' | "$LMTERM" chat "$tmp/t" --no-tui --backend cpu --temperature 0 --max-new-tokens 3 2>&1)
case "$out" in
*"template jinja (qwen3)"*"(3 tokens"*"(3 tokens"*) pass "chat, two turns through Qwen3's own template" ;;
*) fail "chat through Qwen3's own template: $out" ;;
esac
out=$(printf 'hello\n\nexit\n' | "$LMTERM" chat "$tmp/awq" --model-format awq --quant-policy 8 --no-tui --backend cpu \
	--max-new-tokens 3 2>&1) && pass "chat on qwen3 AWQ --model-format awq --quant-policy 8" || fail "chat on AWQ: $out"
# bench --profile lists the qk_norm op; bench --dummy from a Qwen3-0.6B-shaped config (a quarter of its layers)
"$LMTERM" bench "$tmp/q3" --backend cpu --prompt-len 8 -n 4 --profile >"$tmp/out" 2>&1 && grep -q "qk_norm" "$tmp/out" &&
	pass "bench --profile: qk_norm" || fail "bench --profile: $(tail -5 "$tmp/out")"
cat >"$tmp/c.json" <<'EOF'
{"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024, "intermediate_size": 3072,
 "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 128, "num_hidden_layers": 7,
 "vocab_size": 151936, "rms_norm_eps": 1e-06, "rope_theta": 1000000, "tie_word_embeddings": true,
 "torch_dtype": "bfloat16", "max_position_embeddings": 40960}
EOF
"$LMTERM" bench "$tmp/c.json" --dummy --backend cpu --prompt-len 8 -n 3 >"$tmp/out" 2>&1 &&
	pass "bench --dummy, a Qwen3-0.6B-shaped config" || fail "bench --dummy: $(tail -3 "$tmp/out")"

# bad input
$MQ make "$tmp/nk" "$TOK" --break no-k-norm
expect_fail "a missing k_norm" "tensor 'model.layers.1.self_attn.k_norm.weight' is missing (needed by Qwen3ForCausalLM)" \
	"$LMTERM" generate "$tmp/nk" --ids "1 2" -n 1 --backend cpu
bad_config "head_dim absent: Qwen3Config's 128" "q_proj.weight' has shape ?$((4 * ${QWEN3_HEAD_DIM:-32})), 64?, but config.json implies ?512, 64?" \
	"$tmp/q3" "del c['head_dim']"
bad_config "use_sliding_window" "use_sliding_window\" = true: sliding-window attention is not supported" \
	"$tmp/q3" "c['use_sliding_window'] = True"
bad_config "an unknown architecture lists Qwen3" "Qwen3ForCausalLM" "$tmp/q3" "c['architectures'] = ['Qwen4ForCausalLM']"
finish
