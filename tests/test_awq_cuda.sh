#!/bin/sh
# test_awq_cuda: the same model quantized with --backend cpu and --backend cuda (exact fp32 GEMMs; then TF32):
# the 4-bit codes must agree for the overwhelming majority of weights (>= 99% with fp32, >= 97% with TF32)
# and the perplexity of the two results within 1% (fp32) / 2% (TF32). Also a --search-scale run on both
# (the chosen ratios and codes compared, printed), a --search-clip run on cuda, and an InternLM2-layout random
# model (packed wqkv) written by tests/rand_model. Exits 77 without a GPU or without CUDA in this build.
# AWQ_CUDA_MODEL (default small-en-zh, else the demo model), AWQ_CUDA_SAMPLES/SEQLEN (default 8 x 256).
. "${top_srcdir:-.}/tests/lib.sh"
B=${top_builddir:-.}
M=${AWQ_CUDA_MODEL:-$TESTDATA/models/small-en-zh}
[ -f "$M/config.json" ] || M=$DEMO
S=${AWQ_CUDA_SAMPLES:-8} L=${AWQ_CUDA_SEQLEN:-256}
CAL=${AWQ_CUDA_CALIB:-$TESTDATA/text/wiki.test.raw}
EVAL=${AWQ_CUDA_EVAL:-$TESTDATA/text/ptb.valid.txt}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
head -c 10000 "$EVAL" > "$tmp/eval.txt"

quant() { # NAME BACKEND ARGS...
	n=$1 be=$2; shift 2
	t0=$(date +%s.%N)
	"$LMTERM" lite auto_awq "$M" --work-dir "$tmp/$n" --calib-dataset "$CAL" --calib-samples $S --calib-seqlen $L \
		--backend $be "$@" > "$tmp/$n.log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		grep -q "no usable GPU\|built without CUDA" "$tmp/$n.log" && skip "$(tail -1 "$tmp/$n.log")"
		fail "auto_awq $n ($be): $(tail -c 400 "$tmp/$n.log")"
		return 1
	fi
	echo "auto_awq $n ($be $*): $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"
}
ppl() { "$LMTERM" ppl "$1" --file "$tmp/eval.txt" --ctx 512 --backend cpu 2>/dev/null | sed -n 's/^perplexity: \([0-9.]*\).*/\1/p'; }
agree() { # NAME_A NAME_B MIN_PERCENT
	"$B/tests/awq_cmp" "$tmp/$1" "$tmp/$2" > "$tmp/cmp-$1-$2.txt" || { fail "awq_cmp $1 $2: $(tail -3 "$tmp/cmp-$1-$2.txt")"; return; }
	tot=$(tail -1 "$tmp/cmp-$1-$2.txt")
	echo "$1 vs $2: $tot"
	p=$(echo "$tot" | sed -n 's/^total: codes \([0-9.]*\)%.*/\1/p')
	awk "BEGIN{exit !($p >= $3)}" && pass "$1 vs $2: codes $p% equal (>= $3%)" || { fail "$1 vs $2: codes $p% equal (< $3%)"; cat "$tmp/cmp-$1-$2.txt"; }
}
close() { # WHAT A B REL
	awk "BEGIN{d=$2-$3; if (d<0) d=-d; exit !(d <= $4 * $2)}" && pass "$1: $2 vs $3 within $4" || fail "$1: $2 vs $3 not within $4"
}

echo "model $M, calibration $S x $L of $CAL"
quant cpu cpu || finish
quant cuda cuda || finish
LMTERM_AWQ_TF32=1 quant tf32 cuda || finish
agree cpu cuda 99
agree cpu tf32 97
pc=$(ppl "$tmp/cpu"); pg=$(ppl "$tmp/cuda"); pt=$(ppl "$tmp/tf32"); pb=$(ppl "$M")
echo "perplexity (ptb.valid[:10000], ctx 512): original $pb, cpu $pc, cuda fp32 $pg, cuda tf32 $pt"
[ -n "$pc" ] && [ -n "$pg" ] && [ -n "$pt" ] || { fail "a perplexity is missing"; finish; }
close "perplexity cpu vs cuda fp32" "$pc" "$pg" 0.01
close "perplexity cpu vs cuda tf32" "$pc" "$pt" 0.02
grep -q '"quant_method":[[:space:]]*"awq"' "$tmp/cuda/config.json" && pass "cuda output has quantization_config" || fail "cuda output lacks quantization_config"
[ "$(ls "$tmp/cpu" | sort)" = "$(ls "$tmp/cuda" | sort)" ] && pass "same files" || fail "files differ: $(ls "$tmp/cpu") / $(ls "$tmp/cuda")"

# the scale search on the device: same ratios (printed by LMTERM_AWQ_DEBUG) for most groups
LMTERM_AWQ_DEBUG=1 quant sscpu cpu --search-scale --calib-samples 4 || finish
LMTERM_AWQ_DEBUG=1 quant sscuda cuda --search-scale --calib-samples 4 || finish
grep "ratio" "$tmp/sscpu.log" | sed 's/ loss.*//' > "$tmp/r1"; grep "ratio" "$tmp/sscuda.log" | sed 's/ loss.*//' > "$tmp/r2"
nr=$(wc -l < "$tmp/r1"); same=$(paste -d'|' "$tmp/r1" "$tmp/r2" | awk -F'|' '$1==$2' | wc -l)
echo "search-scale: $same of $nr ratios equal"; paste "$tmp/r1" "$tmp/r2" | head -30
[ "$nr" -gt 0 ] && [ $((same * 10)) -ge $((nr * 8)) ] && pass "search-scale ratios: $same of $nr equal" || fail "search-scale ratios: $same of $nr equal"
agree sscpu sscuda 95
# the clipping search (on the host, from the device's buffers)
quant clipcuda cuda --search-clip --calib-samples 4 || finish
quant clipcpu cpu --search-clip --calib-samples 4 || finish
agree clipcpu clipcuda 97

# InternLM2's packed wqkv (GQA 4:1) and Qwen2's q/k/v biases on random models
for arch in internlm2 qwen2; do
	if [ $arch = internlm2 ]; then
		cfg='{"architectures":["InternLM2ForCausalLM"],"model_type":"internlm2","hidden_size":256,"intermediate_size":768,
"num_attention_heads":8,"num_key_value_heads":2,"num_hidden_layers":2,"vocab_size":8192,"rms_norm_eps":1e-5,
"rope_theta":1000000,"rope_scaling":{"type":"dynamic","factor":2.0},"max_position_embeddings":128,"bias":false,
"tie_word_embeddings":false,"torch_dtype":"bfloat16","bos_token_id":1,"eos_token_id":2}'
	else
		cfg='{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","hidden_size":256,"intermediate_size":768,
"num_attention_heads":4,"num_key_value_heads":2,"num_hidden_layers":2,"vocab_size":8192,"rms_norm_eps":1e-6,
"rope_theta":1000000,"max_position_embeddings":4096,"tie_word_embeddings":true,"torch_dtype":"bfloat16",
"bos_token_id":1,"eos_token_id":2}'
	fi
	echo "$cfg" > "$tmp/$arch.json"
	"$B/tests/rand_model" "$tmp/$arch.json" "$tmp/m-$arch" --tokenizer "$DEMO" --threads 2 2>"$tmp/rm.log" || { fail "rand_model $arch: $(cat "$tmp/rm.log")"; continue; }
	M0=$M; M="$tmp/m-$arch"
	quant ${arch}cpu cpu --calib-samples 4 && quant ${arch}cuda cuda --calib-samples 4 && agree ${arch}cpu ${arch}cuda 99
	M=$M0
done
finish
