#!/bin/sh
# test_rand_model: tests/rand_model writes random-weight models that lmterm loads and runs (Llama, Qwen2 with
# biases and tied embeddings, InternLM2 with packed wqkv, Qwen3 with q/k norms and a head_dim of its own), deterministically for a seed whatever the thread
# count, and refuses a tokenizer larger than the config's vocabulary.
. "${top_srcdir:-.}/tests/lib.sh"
RM=${top_builddir:-.}/tests/rand_model
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
common='"hidden_size":128,"intermediate_size":384,"num_attention_heads":4,"num_key_value_heads":2,"num_hidden_layers":2,
"vocab_size":8192,"rms_norm_eps":1e-5,"rope_theta":10000,"max_position_embeddings":256,"bos_token_id":1,"eos_token_id":2'
echo "{\"architectures\":[\"LlamaForCausalLM\"],\"model_type\":\"llama\",$common,\"torch_dtype\":\"bfloat16\",\"initializer_range\":0.05}" > "$tmp/llama.json"
echo "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\",$common,\"tie_word_embeddings\":true,\"torch_dtype\":\"float16\"}" > "$tmp/qwen2.json"
echo "{\"architectures\":[\"InternLM2ForCausalLM\"],\"model_type\":\"internlm2\",$common,\"bias\":false,\"torch_dtype\":\"bfloat16\"}" > "$tmp/internlm2.json"
echo "{\"architectures\":[\"Qwen3ForCausalLM\"],\"model_type\":\"qwen3\",$common,\"head_dim\":64,\"tie_word_embeddings\":true,\"torch_dtype\":\"bfloat16\"}" > "$tmp/qwen3.json"
for a in llama qwen2 internlm2 qwen3; do
	"$RM" "$tmp/$a.json" "$tmp/$a" --tokenizer "$DEMO" --threads 2 2>"$tmp/log" || { fail "$a: $(cat "$tmp/log")"; continue; }
	n=$(ls "$tmp/$a"/model-*.safetensors | wc -l)
	[ "$n" -eq 3 ] && pass "$a: 3 shards" || fail "$a: $n shards"
	[ -f "$tmp/$a/tokenizer.json" ] && [ -f "$tmp/$a/model.safetensors.index.json" ] && pass "$a: tokenizer and index" || fail "$a: files missing"
	ids=$("$LMTERM" generate "$tmp/$a" --ids "1 2 3 4" -n 5 --greedy --print-ids --backend cpu 2>"$tmp/log")
	[ "$(echo $ids | wc -w)" -eq 5 ] && pass "$a: lmterm generates ($ids)" || fail "$a: generate: '$ids' $(tail -3 "$tmp/log")"
done
# Qwen2: biases, no lm_head (tied)
"$LMTERM" generate "$tmp/qwen2" --ids "1" -n 1 --greedy --backend cpu >/dev/null 2>&1 || fail "qwen2 generate"
grep -q 'self_attn.q_proj.bias' "$tmp/qwen2/model.safetensors.index.json" && pass "qwen2: q/k/v biases" || fail "qwen2: no biases"
grep -q 'lm_head' "$tmp/qwen2/model.safetensors.index.json" && fail "qwen2: lm_head written though tied" || pass "qwen2: tied, no lm_head"
grep -q 'attention.wqkv.weight' "$tmp/internlm2/model.safetensors.index.json" && grep -q '"output.weight"' "$tmp/internlm2/model.safetensors.index.json" \
	&& pass "internlm2: packed wqkv, output.weight" || fail "internlm2: names"
grep -q 'self_attn.k_norm.weight' "$tmp/qwen3/model.safetensors.index.json" && ! grep -q 'q_proj.bias' "$tmp/qwen3/model.safetensors.index.json" \
	&& pass "qwen3: q/k norms, no biases" || fail "qwen3: names"
# same seed, other thread count: the same bytes; another seed: other bytes
"$RM" "$tmp/llama.json" "$tmp/llama1" --tokenizer "$DEMO" --threads 1 2>/dev/null
"$RM" "$tmp/llama.json" "$tmp/llama2" --tokenizer "$DEMO" --threads 2 --seed 2 2>/dev/null
same=1
for f in "$tmp/llama"/model-*.safetensors; do cmp -s "$f" "$tmp/llama1/$(basename "$f")" || same=0; done
[ $same = 1 ] && pass "deterministic across thread counts" || fail "seed 1 differs between 1 and 2 threads"
cmp -s "$tmp/llama/model-00001-of-00003.safetensors" "$tmp/llama2/model-00001-of-00003.safetensors" && fail "seed 2 equals seed 1" || pass "another seed, other weights"
# a tokenizer bigger than vocab_size is refused
sed 's/"vocab_size":8192/"vocab_size":1000/' "$tmp/llama.json" > "$tmp/small.json"
expect_fail "tokenizer larger than vocab" "more than the config's vocab_size" "$RM" "$tmp/small.json" "$tmp/small" --tokenizer "$DEMO"
finish
