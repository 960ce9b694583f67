#!/bin/sh
# test_vlm: vision-language checkpoints made from the fixtures by tests/make_vlm.py: InternVL's layout
# (InternVLChatModel: the language model's config under "llm_config", its tensors under "language_model.",
# a vision tower and projector beside them), Qwen2-VL's (the language model at the top with M-RoPE, the vision
# tower under "visual.") and llava-hf's LLaVA and LLaVA-NeXT (the language model's config under "text_config",
# partial where transformers' defaults fill it in; tensors as transformers before 4.52 saved them,
# "language_model.model.*", or from 4.52 on, "model.language_model.*" and "lm_head"). lmterm runs the language model
# exactly as the bare one (the same greedy tokens), and `lite auto_awq` quantizes it to the same tensors as the bare
# model's, under the checkpoint's own names, carrying the vision tower, the projector, the remote code and the
# image processor's settings along.
. "${top_srcdir:-.}/tests/lib.sh"
FIX="$TESTDATA/fixtures"
[ -d "$FIX/internlm2-rand" ] || skip "no test data"
command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
MK="python3 $top_srcdir/tests/make_vlm.py"
gen() { "$LMTERM" generate "$1" --backend cpu -p "hello world, 你好" -n 16 --greedy --print-ids 2>"$tmp/err"; }

$MK "$FIX/internlm2-rand" "$tmp/ivl" --shards 2 --vision-layers 30 || fail "make_vlm internlm2"
$MK "$FIX/qwen2-rand" "$tmp/ivlq" || fail "make_vlm qwen2"
$MK "$FIX/qwen2-rand" "$tmp/qvl" --layout qwen2-vl --shards 2 || fail "make_vlm qwen2-vl"
$MK "$FIX/llama3-rand" "$tmp/llava" --layout llava --vision-layers 3 || fail "make_vlm llava"
$MK "$FIX/qwen2-rand" "$tmp/next" --layout llava-next --shards 2 || fail "make_vlm llava-next"
$MK "$FIX/llama-dynrope-rand" "$tmp/lmis" --layout llava --names new --text-type mistral || fail "make_vlm llava mistral"
grep -q '"hidden_act"\|"bos_token_id"\|"tie_word_embeddings"\|"dtype"' "$tmp/llava/config.json" &&
	fail "make_vlm llava: the text_config is not partial"
for pair in "internlm2-rand ivl InternVL" "qwen2-rand ivlq InternVL" "qwen2-rand qvl Qwen2-VL" \
	"llama3-rand llava LLaVA(old-layout,partial-text_config)" "qwen2-rand next LLaVA-NeXT(new-layout,sharded)" \
	"llama-dynrope-rand lmis LLaVA(new-layout,mistral)"; do
	set -- $pair
	a=$(gen "$FIX/$1") b=$(gen "$tmp/$2")
	if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "$1 inside $3: the same greedy tokens"
	else fail "$1 inside $3: '$b', bare '$a' ($(cat "$tmp/err"))"; fi
done

# tokenize and ppl read the language model's tokenizer and weights as the bare model's
a=$("$LMTERM" tokenize "$FIX/llama3-rand" "hello world, 你好" 2>&1) b=$("$LMTERM" tokenize "$tmp/llava" "hello world, 你好" 2>&1)
[ -n "$a" ] && [ "$a" = "$b" ] && pass "tokenize LLaVA as the bare model" || fail "tokenize LLaVA: '$b', bare '$a'"
head -c 3000 "$TESTDATA/text/wiki.test.raw" >"$tmp/ppl.txt"
a=$("$LMTERM" ppl "$FIX/qwen2-rand" --file "$tmp/ppl.txt" --ctx 64 --backend cpu 2>&1 | tail -1)
b=$("$LMTERM" ppl "$tmp/next" --file "$tmp/ppl.txt" --ctx 64 --backend cpu 2>&1 | tail -1)
case "$a" in perplexity:*) [ "$a" = "$b" ] && pass "ppl of LLaVA-NeXT as the bare model's ($a)" || fail "ppl LLaVA-NeXT: '$b', bare '$a'" ;;
*) fail "ppl of the bare model: $a" ;; esac

# quantize both with the same small calibration; the language model's tensors must be the bare model's
CAL="$TESTDATA/text/wiki.test.raw"
q() { "$LMTERM" lite auto_awq "$1" --work-dir "$2" --calib-dataset "$CAL" --calib-samples 4 --calib-seqlen 64 \
	--backend cpu >/dev/null 2>"$tmp/err" || fail "auto_awq $1: $(cat "$tmp/err")"; }
q "$FIX/internlm2-rand" "$tmp/q-bare"
q "$tmp/ivl" "$tmp/q-ivl"
q "$FIX/qwen2-rand" "$tmp/q-bareq"
q "$tmp/qvl" "$tmp/q-qvl"
q "$FIX/llama3-rand" "$tmp/q-barel"
q "$tmp/llava" "$tmp/q-llava"
q "$tmp/next" "$tmp/q-next"
q "$FIX/llama-dynrope-rand" "$tmp/q-bared"
q "$tmp/lmis" "$tmp/q-lmis"
# same_tensors BARE_OUT VLM_OUT VLM_SRC NAMES: the language model's tensors are the bare model's, byte for byte;
# the others are the source's, as F16 (F16 ones unchanged); the config keeps its own keys and says AWQ.
# NAMES: the prefix of the language model's tensor names, or "llava-new" (model.* as model.language_model.*)
same_tensors() {
	python3 - "$@" <<'PY'
import json, os, struct, sys
def tensors(d):
    out = {}
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    for fn in files:
        with open(os.path.join(d, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
        for k, v in h.items():
            if k != "__metadata__":
                a, b = v["data_offsets"]; out[k] = (v["dtype"], v["shape"], data[a:b])
    return out
bare, vlm, src, pre = tensors(sys.argv[1]), tensors(sys.argv[2]), tensors(sys.argv[3]), sys.argv[4]
def local(k):  # the language model's own name of a tensor, or None
    if pre == "llava-new":
        return "model." + k[21:] if k.startswith("model.language_model.") else None if k.startswith("model.") else k
    return k[len(pre):] if k.startswith(pre) else None
lm = {local(k): v for k, v in vlm.items() if local(k) in bare}
assert set(lm) == set(bare), "language model tensors differ in names: %s" % sorted(set(bare) - set(lm))[:5]
for k in bare:
    assert lm[k] == bare[k], "%s differs from the bare model's" % k
rest = {k: v for k, v in vlm.items() if local(k) not in bare}
want = {k: v for k, v in src.items() if local(k) is None or not (local(k) in bare or local(k).startswith("model.layers."))}
assert set(rest) == set(want), "vision tensors: %s" % sorted(set(rest) ^ set(want))[:5]
for k, (dt, sh, raw) in want.items():
    assert rest[k][0] == "F16" and rest[k][1] == sh, "%s: %s %s" % (k, rest[k][0], rest[k][1])
    if dt == "F16":
        assert rest[k][2] == raw, "%s: F16 tensor changed" % k
c, c0 = json.load(open(os.path.join(sys.argv[2], "config.json"))), json.load(open(os.path.join(sys.argv[3], "config.json")))
q = {"quant_method": "awq", "version": "gemm", "bits": 4, "group_size": 128, "zero_point": True}
if c0["architectures"][0].startswith("Llava"):  # vLLM and transformers would quantize the vision tower too
    q["modules_to_not_convert"] = ["vision_tower", "multi_modal_projector", "model.vision_tower", "model.multi_modal_projector"]
assert c["quantization_config"] == q, "quantization_config %s" % c["quantization_config"]
for sub in ("llm_config", "text_config"):
    if sub in c0:
        assert c[sub]["quantization_config"] == q, sub + ".quantization_config"
        for k, v in c0[sub].items():  # its own keys kept, the dtype now float16
            assert c[sub][k] == (v if k not in ("dtype", "torch_dtype") else "float16"), "%s.%s changed" % (sub, k)
assert c["architectures"] == c0["architectures"] and c["vision_config"] == c0["vision_config"], "config changed"
print(len(lm), "language model tensors equal,", len(rest), "vision tensors carried")
PY
}
if out=$(same_tensors "$tmp/q-bare" "$tmp/q-ivl" "$tmp/ivl" language_model. 2>&1); then pass "auto_awq of InternVL: $out"
else fail "auto_awq of InternVL: $out"; fi
if out=$(same_tensors "$tmp/q-bareq" "$tmp/q-qvl" "$tmp/qvl" "" 2>&1); then pass "auto_awq of Qwen2-VL: $out"
else fail "auto_awq of Qwen2-VL: $out"; fi
for t in "q-barel q-llava llava language_model. LLaVA" "q-bareq q-next next llava-new LLaVA-NeXT" \
	"q-bared q-lmis lmis llava-new LLaVA(mistral)"; do
	set -- $t
	if out=$(same_tensors "$tmp/$1" "$tmp/$2" "$tmp/$3" "$4" 2>&1); then pass "auto_awq of $5: $out"
	else fail "auto_awq of $5: $out"; fi
done
for f in chat_template.json processor_config.json preprocessor_config.json tokenizer.model generation_config.json; do
	cmp -s "$tmp/next/$f" "$tmp/q-next/$f" || fail "auto_awq of LLaVA-NeXT: $f not copied"
done
for f in preprocessor_config.json modeling_internvl_chat.py tokenizer.model; do
	cmp -s "$tmp/ivl/$f" "$tmp/q-ivl/$f" || fail "auto_awq of InternVL: $f not copied"
done
# 6 layer shards + the rest: the 97 tensors outside the layers take two shards (64 at most per shard)
n=$(ls "$tmp/q-ivl"/model-*.safetensors | wc -l)
[ "$n" -eq 4 ] && pass "the vision tower is split across shards" || fail "shards: $n, expected 4"
for pair in "q-bare q-ivl InternVL" "q-bareq q-qvl Qwen2-VL" "q-barel q-llava LLaVA" "q-bareq q-next LLaVA-NeXT" \
	"q-bared q-lmis LLaVA(mistral)"; do
	set -- $pair
	a=$(gen "$tmp/$1") b=$(gen "$tmp/$2")
	if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "the quantized $3 runs as the quantized bare model"
	else fail "quantized $3: '$b', bare '$a' ($(cat "$tmp/err"))"; fi
done
if printf "hello\n\n" | "$LMTERM" chat "$tmp/q-ivl" --backend cpu --model-format awq --max-new-tokens 4 >/dev/null 2>"$tmp/err"; then
	case "$(cat "$tmp/err")" in
	"lmterm: InternVLChatModel is a vision-language model: lmterm runs its language model, so the chat is text only"*)
		pass "chat on the quantized InternVL, with a note that it is text only" ;;
	*) fail "chat on the quantized InternVL: no note first: $(cat "$tmp/err")" ;;
	esac
else fail "chat on the quantized InternVL: $(cat "$tmp/err")"; fi

# the quantized LLaVA-NeXT chats with the format found in config.json, says it is text only, and renders llava-hf's
# chat template (whose messages are lists of parts) with the user's text in it: the prompt is BOS and the tokens of
# "USER: 2+2? ASSISTANT:" (given a plain string, the template would render "USER: ASSISTANT:")
if out=$(printf "2+2?\n\n" | "$LMTERM" chat "$tmp/q-next" --backend cpu --temperature 0 --max-new-tokens 4 2>"$tmp/err"); then
	case "$(cat "$tmp/err")" in
	"lmterm: LlavaNextForConditionalGeneration is a vision-language model: lmterm runs its language model, so the chat is text only"*)
		pass "chat on the quantized LLaVA-NeXT, with a note that it is text only" ;;
	*) fail "chat on the quantized LLaVA-NeXT: no note first: $(cat "$tmp/err")" ;;
	esac
	n=$("$LMTERM" tokenize "$tmp/q-next" "USER: 2+2? ASSISTANT:" | wc -w)
	case "$out" in *"prompt $((n + 1)) tokens"*) pass "chat on LLaVA-NeXT renders llava-hf's template with the user's text" ;;
	*) fail "chat on LLaVA-NeXT: '$out', want a prompt of $((n + 1)) tokens (BOS and 'USER: 2+2? ASSISTANT:')" ;; esac
else fail "chat on the quantized LLaVA-NeXT: $(cat "$tmp/err")"; fi

# bad input: one clear message naming the key
mkdir "$tmp/nollm" && cp "$tmp/ivlq"/* "$tmp/nollm/" &&
	python3 -c "import json,sys; c=json.load(open(sys.argv[1])); del c['llm_config']; json.dump(c, open(sys.argv[1],'w'))" "$tmp/nollm/config.json"
expect_fail "InternVL without llm_config" "llm_config" "$LMTERM" generate "$tmp/nollm" -p hi -n 1
cp "$tmp/ivlq/config.json" "$tmp/nollm/config.json" &&
	python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['llm_config']['architectures']=['Gemma2ForCausalLM']; json.dump(c, open(sys.argv[1],'w'))" "$tmp/nollm/config.json"
expect_fail "InternVL around an unsupported language model" '"llm_config.architectures": unsupported architecture "Gemma2ForCausalLM"' \
	"$LMTERM" lite auto_awq "$tmp/nollm" --work-dir "$tmp/never" --calib-samples 0
[ -e "$tmp/never" ] && fail "a work dir was left for an unsupported model"
# LLaVA: text_config missing, not an object, without model_type, of an unknown model_type; tensors in neither layout
mkdir "$tmp/badl" && cp "$tmp/llava"/* "$tmp/badl/"
edit() { python3 -c "import json,sys; c=json.load(open(sys.argv[1])); $1; json.dump(c, open(sys.argv[1],'w'))" "$tmp/badl/config.json"; }
for t in "del c['text_config']|key \"text_config\" is missing" \
	"c['text_config']=[1,2]|key \"text_config\" is not an object" \
	"del c['text_config']['model_type']|key \"text_config.model_type\" is missing" \
	"c['text_config']['model_type']='gemma'|unsupported language model \"gemma\"" \
	"c['text_config']['model_type']=7|key \"text_config.model_type\" is not a string" \
	"c['text_config']['hidden_size']=96|language_model.model.embed_tokens.weight' has shape"; do
	cp "$tmp/llava/config.json" "$tmp/badl/config.json" && edit "${t%%|*}"
	expect_fail "LLaVA: ${t%%|*}" "${t#*|}" "$LMTERM" generate "$tmp/badl" -p hi -n 1 --backend cpu
done
cp "$tmp/llava/config.json" "$tmp/badl/config.json" && edit "del c['text_config']['model_type']"
expect_fail "LLaVA auto_awq without model_type in text_config" 'text_config.model_type' \
	"$LMTERM" lite auto_awq "$tmp/badl" --work-dir "$tmp/never" --calib-samples 0
[ -e "$tmp/never" ] && fail "a work dir was left for a LLaVA without text_config.model_type"
cp "$tmp/llava/config.json" "$tmp/badl/config.json" && rm "$tmp/badl/model.safetensors" &&
	$MK "$FIX/llama3-rand" "$tmp/badl2" --layout llava && mv "$tmp/badl2/model.safetensors" "$tmp/badl/" &&
	python3 - "$tmp/badl/model.safetensors" <<'PY'
import json, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = b[8:8 + n].replace(b'"language_model.model.', b'"language_model.mode1.')
open(sys.argv[1], "wb").write(b[:8] + h + b[8 + n:])
PY
expect_fail "LLaVA with the language model in neither layout" "neither 'language_model.model.embed_tokens.weight'" \
	"$LMTERM" generate "$tmp/badl" -p hi -n 1 --backend cpu
finish
