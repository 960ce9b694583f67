#!/bin/sh
# test_phi3: Phi-3 (Phi3ForCausalLM) against an independent reference. tests/make_phi3.py (standard-library Python,
# written from transformers' modular_phi3.py and _compute_longrope_parameters, not from lmterm's C) writes a tiny
# random Phi-3 (fused qkv_proj and gate_up_proj, GQA or not, an untied lm_head) and computes its forward pass in
# double precision. `lmterm generate --dump-logits` must match it within 1e-4 relative on every prompt position and
# give its greedy tokens:
#   - fp32 on the cpu backend, with and without GQA;
#   - --quant-policy 8: the reference stores K (rotated) and V as LMDeploy's int8 KV cache does;
#   - LongRoPE (original_max_position_embeddings 16): a prompt shorter than 16 (the short factors), one longer
#     (the long factors, cos and sin times the attention factor), and one that crosses 16 while generating
#     (transformers then recomputes the whole sequence with the long factors, and so does lmterm);
#   - the AWQ round trip: lite auto_awq on the tiny models (GQA: no v -> o smoothing; without GQA: v -> o; LongRoPE
#     calibrated with the long factors), whose result keeps model_type phi3 and the fused names; the reference runs
#     its exact dequantization (q - z) * s; and where the smoothing went (make_phi3.py smoothing: each pair's
#     consumer columns scaled as its producer was divided, within the quantization's error; controls: each pair's
#     scale taken as 1 must fail);
#   - GPTQ (tests/make_gptq.py quantizes the fused tensors as they are): the same logits as the dense model of its
#     exact dequantization.
# Controls (the comparison can fail): gate and up halves swapped, the LongRoPE model read without its rope_scaling
# or with attention_factor 1, and the unquantized reference against --quant-policy 8's logits must NOT match.
# InternVL around the tiny Phi-3 runs (and quantizes) as the bare model. Then: chat (the built-in phi-3 template
# for a Phi-3 without one), bench --dummy on Phi-3-mini-128k's RoPE, the
# sliding_window note, and bad input (a qkv_proj of the wrong shape, partial_rotary_factor 0.75, yarn).
# PHI3_BACKEND=cuda PHI3_RTOL=3e-2 (the GPU round): the same on the GPU (fp16 activations), the greedy ids
# compared over the first 4 tokens (each the reference's argmax, or a near tie within the tolerance), as
# test_qwen3.sh does.
. "${top_srcdir:-.}/tests/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
MP="python3 $top_srcdir/tests/make_phi3.py"
MG="python3 $top_srcdir/tests/make_gptq.py"
TOK=$TESTDATA/fixtures/qwen2-rand
[ -f "$TOK/tokenizer.model" ] || skip "no qwen2-rand fixture (its tokenizer is borrowed)"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
B=${PHI3_BACKEND:-cpu} RTOL=${PHI3_RTOL:-1e-4}
# the CUDA attention kernels take head_dim 64 or 128: hidden 256 over 4 heads there (the cpu run keeps 64)
[ "$B" = cpu ] || { PHI3_HIDDEN=256; export PHI3_HIDDEN; }
SHORT="1 5 9 33 100 7 4000 12"
CROSS="$SHORT 8 77 300 2000"
LONG="$CROSS 45 6 91 17 23 5000 64 3"
IDS=$SHORT
REF=$MP
check() { ref_check "$@"; } # tests/lib.sh
# differs DESC MODEL REFERENCE-MODEL: lmterm's output of MODEL must not pass REFERENCE-MODEL's check
differs() {
	ids=$("$LMTERM" generate "$2" --ids "$IDS" -n 8 --greedy --print-ids --backend "$B" --dump-logits "$tmp/c.st" \
		2>"$tmp/err") && ! $MP check "$3" "$tmp/c.st" "$IDS" "$(first4 "$ids")" "$RTOL" >"$tmp/out" &&
		pass "control: $1: $(cat "$tmp/out")" || fail "control: $1 matches the reference: $(cat "$tmp/err" "$tmp/out")"
}

$MP make "$tmp/p" "$TOK" || { fail "make_phi3.py make"; finish; }
check "phi3 fp32 (GQA)" "$tmp/p"
$MP make "$tmp/pm" "$TOK" --no-gqa --seed 2 && check "phi3 fp32 without GQA" "$tmp/pm"
[ "$B" = cpu ] && check "phi3 --quant-policy 8" "$tmp/p" --quant-policy 8 -- --kv-bits 8
$MP make "$tmp/sw" "$TOK" --break swap-gate-up
differs "gate and up halves swapped" "$tmp/sw" "$tmp/p"
if [ "$B" = cpu ]; then
	ids=$("$LMTERM" generate "$tmp/p" --ids "$IDS" -n 8 --greedy --print-ids --backend cpu --quant-policy 8 \
		--dump-logits "$tmp/k.st" 2>"$tmp/err") && ! $MP check "$tmp/p" "$tmp/k.st" "$IDS" "$ids" "$RTOL" >"$tmp/out" &&
		pass "control: --quant-policy 8 differs from the unquantized reference: $(cat "$tmp/out")" ||
		fail "control: --quant-policy 8 matches the unquantized reference: $(cat "$tmp/err" "$tmp/out")"
fi

# LongRoPE, both regimes and the switch
$MP make "$tmp/lr" "$TOK" --longrope
for IDS in "$SHORT" "$LONG" "$CROSS"; do
	check "longrope, a prompt of $(echo $IDS | wc -w) tokens (original_max_position_embeddings 16)" "$tmp/lr"
done
IDS=$LONG
copy_edit "$tmp/lr" "$tmp/nr" config.json "c['rope_scaling'] = None"
differs "the longrope model without its rope_scaling" "$tmp/nr" "$tmp/lr"
copy_edit "$tmp/lr" "$tmp/af" config.json "c['rope_scaling']['attention_factor'] = 1.0"
differs "the longrope model with attention_factor 1" "$tmp/af" "$tmp/lr"
IDS=$SHORT

# AWQ round trips (calibrated on WikiText-2, or on this script's own text where the test data has no text)
calib=$TESTDATA/text/wiki.test.raw
[ -f "$calib" ] || calib=$0
for m in p pm lr; do
	"$LMTERM" lite auto_awq "$tmp/$m" --work-dir "$tmp/awq-$m" --calib-dataset "$calib" --calib-samples 4 \
		--calib-seqlen 32 --w-group-size 32 >"$tmp/out" 2>&1 || { fail "lite auto_awq $m: $(tail -c 300 "$tmp/out")"; continue; }
	python3 - "$tmp/awq-$m" "$top_srcdir/tests" <<'EOF' && pass "auto_awq output ($m): model_type phi3, Phi3ForCausalLM, qkv_proj and gate_up_proj quantized under their names, fp16 norms" || fail "auto_awq output ($m): see above"
import glob, json, sys
sys.path.insert(0, sys.argv[2])
from st_io import read_safetensors
c = json.load(open(sys.argv[1] + "/config.json"))
t = {n: (d, s) for f in glob.glob(sys.argv[1] + "/*.safetensors") for n, d, s, _ in read_safetensors(f)}
bad = [x for x in (c.get("model_type") == "phi3", c.get("architectures") == ["Phi3ForCausalLM"],
                   c.get("quantization_config", {}).get("quant_method") == "awq") if not x]
nkv, hid = c["num_key_value_heads"], c["hidden_size"]
want = {"self_attn.qkv_proj": (4 + 2 * nkv) * hid // 4, "self_attn.o_proj": hid, "mlp.gate_up_proj": 256,
        "mlp.down_proj": hid}
for l in range(2):
    p = "model.layers.%d." % l
    for n, out in want.items():
        if t.get(p + n + ".scales", (0, [0, 0]))[1][1] != out or p + n + ".qweight" not in t or p + n + ".weight" in t:
            bad.append("%s: %s" % (p + n, t.get(p + n + ".scales")))
    if t.get(p + "input_layernorm.weight") != ("F16", [hid]):
        bad.append(p + "input_layernorm")
bad += [n for n in t if n.split(".")[-2] in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")]
print(" ".join(map(str, bad)))
sys.exit(1 if bad else 0)
EOF
	check "phi3 AWQ ($m, lite auto_awq) against its dequantization" "$tmp/awq-$m"
	# where the smoothing went (make_phi3.py smoothing): each pair's consumer scaled as its producer was
	# (ref_check sets m: the model's name comes from the directory)
	mm=${m##*/awq-}
	[ "$mm" = lr ] && continue
	out=$($MP smoothing "$tmp/$mm" "$tmp/awq-$mm") && pass "auto_awq smoothing pairs ($mm): $out" ||
		fail "auto_awq smoothing pairs ($mm): $out"
done
# controls: with one pair's scale taken as 1, its consumer no longer matches (v -> o: without GQA only)
if [ -d "$tmp/awq-pm" ]; then
	for pair in in-qkv post-gate up-down v-o; do
		out=$($MP smoothing "$tmp/pm" "$tmp/awq-pm" --assume-none $pair) &&
			fail "control: smoothing $pair taken as none still matches: $out" ||
			pass "control: smoothing $pair taken as none: ${out##*; }"
	done
fi
IDS=$LONG
[ -d "$tmp/awq-lr" ] && check "longrope AWQ, a long prompt" "$tmp/awq-lr"
IDS=$SHORT
[ "$B" = cpu ] && [ -d "$tmp/awq-p" ] && check "phi3 AWQ --quant-policy 8" "$tmp/awq-p" --quant-policy 8 -- --kv-bits 8

# GPTQ: the fused tensors quantized as they are; the logits are those of the dense model of its dequantization
if $MG quantize "$tmp/p" "$tmp/g" "$tmp/gd" --group 32 >"$tmp/out" 2>&1; then
	"$LMTERM" generate "$tmp/g" --ids "$IDS" -n 4 --greedy --print-ids --backend "$B" --dump-logits "$tmp/a.st" >"$tmp/ga" 2>"$tmp/err" &&
		"$LMTERM" generate "$tmp/gd" --ids "$IDS" -n 4 --greedy --print-ids --backend "$B" --dump-logits "$tmp/b.st" >"$tmp/gb" 2>>"$tmp/err" &&
		cmp=$($MG compare "$tmp/a.st" "$tmp/b.st" "$RTOL") && cmp -s "$tmp/ga" "$tmp/gb" &&
		pass "phi3 GPTQ: the logits of its dequantization ($cmp)" || fail "phi3 GPTQ: $(cat "$tmp/err") $cmp"
	check "phi3 GPTQ's dequantization against the reference" "$tmp/gd"
else
	fail "make_gptq.py quantize: $(cat "$tmp/out")"
fi
[ "$B" = cpu ] || finish

# InternVL around a Phi-3 (Mini-InternVL-Chat-4B-V1-5's language model is Phi-3-mini; tests/make_vlm.py's layout):
# the language model gives the bare model's logits, and auto_awq of the wrapped model the bare model's quantized
# logits, bit for bit
if python3 "$top_srcdir/tests/make_vlm.py" "$tmp/p" "$tmp/ivl" --layout internvl >"$tmp/out" 2>&1 &&
	"$LMTERM" lite auto_awq "$tmp/ivl" --work-dir "$tmp/ivl-awq" --calib-dataset "$calib" --calib-samples 4 \
		--calib-seqlen 32 --w-group-size 32 >"$tmp/out" 2>&1; then
	for pair in "p ivl" "awq-p ivl-awq"; do
		set -- $pair
		"$LMTERM" generate "$tmp/$1" --ids "$IDS" -n 2 --greedy --backend cpu --dump-logits "$tmp/l1.st" >/dev/null 2>&1 &&
			"$LMTERM" generate "$tmp/$2" --ids "$IDS" -n 2 --greedy --backend cpu --dump-logits "$tmp/l2.st" >/dev/null 2>"$tmp/err" &&
			cmp -s "$tmp/l1.st" "$tmp/l2.st" && pass "$2: the logits of $1, bit for bit" || fail "$2 differs from $1: $(cat "$tmp/err")"
	done
else
	fail "InternVL around Phi-3: $(tail -c 300 "$tmp/out")"
fi

# the engine: a chat turn, the built-in phi-3 template where the model has none of its own (LMDeploy's)
copy_edit "$tmp/p" "$tmp/t" tokenizer_config.json "c.pop('chat_template', None)"
out=$(printf 'hello\n\nexit\n' | "$LMTERM" chat "$tmp/t" --no-tui --backend cpu --max-new-tokens 3 2>&1)
case "$out" in
*"template phi-3"*"(3 tokens"*) pass "chat on phi3 with the built-in phi-3 template" ;;
*) fail "chat on phi3: $out" ;;
esac
# a chat reply that crosses original_max_position_embeddings (the engine feeds its cache again with the long
# factors) is generate's greedy text, which the crossing check above holds to the reference
out=$(printf 'hello there\n\nexit\n' | "$LMTERM" chat "$tmp/lr" --no-tui --backend cpu --temperature 0 --max-new-tokens 24 \
	--chat-template base 2>&1)
want=$("$LMTERM" generate "$tmp/lr" -p "hello there" -n 24 --greedy --backend cpu 2>&1)
case "$out" in
*">>> $want"*"(24 tokens"*"context 29)"*) pass "chat past the longrope model's original length: generate's text" ;;
*) fail "chat on longrope: '$out', generate: '$want'" ;;
esac
out=$(printf 'hello\n\nexit\n' | "$LMTERM" chat "$tmp/awq-p" --model-format awq --no-tui --backend cpu --max-new-tokens 3 2>&1) &&
	pass "chat on phi3 AWQ --model-format awq" || fail "chat on phi3 AWQ: $out"
# bench --dummy on Phi-3-mini-128k-instruct's attention and RoPE (head_dim 96, longrope's 48 factors each, its
# original 4096 of 131072), narrowed to 4 heads and one layer
python3 - "$tmp/c.json" <<'EOF'
import json, sys
f = [1.0 + 0.01 * i for i in range(48)]
json.dump({"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 384, "intermediate_size": 1024,
           "num_attention_heads": 4, "num_key_value_heads": 4, "num_hidden_layers": 1, "vocab_size": 32064,
           "max_position_embeddings": 131072, "original_max_position_embeddings": 4096, "rms_norm_eps": 1e-05,
           "rope_theta": 10000.0, "rope_scaling": {"type": "longrope", "short_factor": f, "long_factor": f},
           "sliding_window": 262144, "tie_word_embeddings": False, "torch_dtype": "bfloat16"}, open(sys.argv[1], "w"))
EOF
"$LMTERM" bench "$tmp/c.json" --dummy --backend cpu --prompt-len 8 -n 3 >"$tmp/out" 2>&1 &&
	pass "bench --dummy, Phi-3-mini-128k's RoPE" || fail "bench --dummy: $(tail -3 "$tmp/out")"
# Phi-3-mini-4k's sliding window (2047 there): lmterm attends to everything, and says so
$MP make "$tmp/w" "$TOK" --sliding-window 4
"$LMTERM" generate "$tmp/w" --ids "$IDS" -n 1 --backend cpu >/dev/null 2>"$tmp/err" &&
	grep -q "attends to its last 4 tokens only" "$tmp/err" && pass "sliding_window: the note" ||
	fail "sliding_window: $(cat "$tmp/err")"

# bad input
$MP make "$tmp/bq" "$TOK" --break qkv-rows
PH=${PHI3_HIDDEN:-64}
expect_fail "a qkv_proj without its last rows" "tensor 'model.layers.1.self_attn.qkv_proj.weight' has shape ?$((7 * PH / 4)), $PH?, but config.json implies ?$((8 * PH / 4)), $PH?" \
	"$LMTERM" generate "$tmp/bq" --ids "1 2" -n 1 --backend cpu
bad_config "partial_rotary_factor 0.75 (Phi-4-mini)" "partial_rotary_factor\" = 0.75: only full rotary embeddings are supported" \
	"$tmp/p" "c['partial_rotary_factor'] = 0.75"
bad_config "a long_factor of 5 entries" "rope_scaling.long_factor\" must be a list of $((PH / 8)) numbers (head_dim / 2)" \
	"$tmp/lr" "c['rope_scaling']['long_factor'] = c['rope_scaling']['long_factor'][:5]"
bad_config "yarn" "unsupported RoPE type \"yarn\" (supported: default, linear, llama3, dynamic, longrope)" \
	"$tmp/lr" "c['rope_scaling']['type'] = 'yarn'"
bad_config "an unknown architecture lists Phi3" "Phi3ForCausalLM" "$tmp/p" "c['architectures'] = ['Phi4MMForCausalLM']"
finish
