#!/bin/sh
# test_vlm: vision-language checkpoints made from the internlm2 and qwen2 fixtures by tests/make_vlm.py: InternVL's
# layout (InternVLChatModel: the language model's config under "llm_config", its tensors under "language_model.",
# a vision tower and projector beside them) and Qwen2-VL's (the language model at the top with M-RoPE, the vision
# tower under "visual."). lmterm runs the language model exactly as the bare one (the same greedy tokens), and
# `lite auto_awq` quantizes it to the same tensors as the bare model's, carrying the vision tower, the projector,
# the remote code and the image processor's settings along.
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
for pair in "internlm2-rand ivl InternVL" "qwen2-rand ivlq InternVL" "qwen2-rand qvl Qwen2-VL"; do
	set -- $pair
	a=$(gen "$FIX/$1") b=$(gen "$tmp/$2")
	if [ -n "$a" ] && [ "$a" = "$b" ]; then pass "$1 inside $3: the same greedy tokens"
	else fail "$1 inside $3: '$b', bare '$a' ($(cat "$tmp/err"))"; fi
done

# quantize both with the same small calibration; the language model's tensors must be the bare model's
CAL="$TESTDATA/text/wiki.test.raw"
q() { "$LMTERM" lite auto_awq "$1" --work-dir "$2" --calib-dataset "$CAL" --calib-samples 4 --calib-seqlen 64 \
	--backend cpu >/dev/null 2>"$tmp/err" || fail "auto_awq $1: $(cat "$tmp/err")"; }
q "$FIX/internlm2-rand" "$tmp/q-bare"
q "$tmp/ivl" "$tmp/q-ivl"
q "$FIX/qwen2-rand" "$tmp/q-bareq"
q "$tmp/qvl" "$tmp/q-qvl"
# same_tensors BARE_OUT VLM_OUT VLM_SRC LM_PREFIX: the language model's tensors are the bare model's, byte for byte;
# the others are the source's, as F16 (F16 ones unchanged); the config keeps its own keys and says AWQ
same_tensors() {
	python3 - "$@" <<'PY'
import json, os, struct, sys
def tensors(d):
    out = {}
    for fn in sorted(set(json.load(open(os.path.join(d, "model.safetensors.index.json")))["weight_map"].values())):
        with open(os.path.join(d, fn), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n)); data = f.read()
        for k, v in h.items():
            if k != "__metadata__":
                a, b = v["data_offsets"]; out[k] = (v["dtype"], v["shape"], data[a:b])
    return out
bare, vlm, src, pre = tensors(sys.argv[1]), tensors(sys.argv[2]), tensors(sys.argv[3]), sys.argv[4]
lm = {k[len(pre):]: v for k, v in vlm.items() if k[len(pre):] in bare and k.startswith(pre)}
assert set(lm) == set(bare), "language model tensors differ in names: %s" % sorted(set(bare) - set(lm))[:5]
for k in bare:
    assert lm[k] == bare[k], "%s differs from the bare model's" % k
rest = {k: v for k, v in vlm.items() if not (k.startswith(pre) and k[len(pre):] in bare)}
want = {k: v for k, v in src.items() if not (k.startswith(pre) and (k[len(pre):] in bare or k[len(pre):].startswith("model.layers.")))}
assert set(rest) == set(want), "vision tensors: %s" % sorted(set(rest) ^ set(want))[:5]
for k, (dt, sh, raw) in want.items():
    assert rest[k][0] == "F16" and rest[k][1] == sh, "%s: %s %s" % (k, rest[k][0], rest[k][1])
    if dt == "F16":
        assert rest[k][2] == raw, "%s: F16 tensor changed" % k
c, c0 = json.load(open(os.path.join(sys.argv[2], "config.json"))), json.load(open(os.path.join(sys.argv[3], "config.json")))
q = {"quant_method": "awq", "version": "gemm", "bits": 4, "group_size": 128, "zero_point": True}
assert c["quantization_config"] == q, "quantization_config"
if "llm_config" in c0:
    assert c["llm_config"]["quantization_config"] == q, "llm_config.quantization_config"
assert c["architectures"] == c0["architectures"] and c["vision_config"] == c0["vision_config"], "config changed"
print(len(lm), "language model tensors equal,", len(rest), "vision tensors carried")
PY
}
if out=$(same_tensors "$tmp/q-bare" "$tmp/q-ivl" "$tmp/ivl" language_model. 2>&1); then pass "auto_awq of InternVL: $out"
else fail "auto_awq of InternVL: $out"; fi
if out=$(same_tensors "$tmp/q-bareq" "$tmp/q-qvl" "$tmp/qvl" "" 2>&1); then pass "auto_awq of Qwen2-VL: $out"
else fail "auto_awq of Qwen2-VL: $out"; fi
for f in preprocessor_config.json modeling_internvl_chat.py tokenizer.model; do
	cmp -s "$tmp/ivl/$f" "$tmp/q-ivl/$f" || fail "auto_awq of InternVL: $f not copied"
done
# 6 layer shards + the rest: the 97 tensors outside the layers take two shards (64 at most per shard)
n=$(ls "$tmp/q-ivl"/model-*.safetensors | wc -l)
[ "$n" -eq 4 ] && pass "the vision tower is split across shards" || fail "shards: $n, expected 4"
for pair in "q-bare q-ivl InternVL" "q-bareq q-qvl Qwen2-VL"; do
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

# bad input: one clear message naming the key
mkdir "$tmp/nollm" && cp "$tmp/ivlq"/* "$tmp/nollm/" &&
	python3 -c "import json,sys; c=json.load(open(sys.argv[1])); del c['llm_config']; json.dump(c, open(sys.argv[1],'w'))" "$tmp/nollm/config.json"
expect_fail "InternVL without llm_config" "llm_config" "$LMTERM" generate "$tmp/nollm" -p hi -n 1
cp "$tmp/ivlq/config.json" "$tmp/nollm/config.json" &&
	python3 -c "import json,sys; c=json.load(open(sys.argv[1])); c['llm_config']['architectures']=['Phi3ForCausalLM']; json.dump(c, open(sys.argv[1],'w'))" "$tmp/nollm/config.json"
expect_fail "InternVL around an unsupported language model" '"llm_config.architectures": unsupported architecture "Phi3ForCausalLM"' \
	"$LMTERM" lite auto_awq "$tmp/nollm" --work-dir "$tmp/never" --calib-samples 0
[ -e "$tmp/never" ] && fail "a work dir was left for an unsupported model"
finish
