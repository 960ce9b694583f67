#!/bin/sh
# test_awq_quality: quantize small-en-zh on the CPU with WikiText-2 text three ways (round-to-nearest, AWQ at
# ratio 0.5, AWQ with --search-scale) and check them against the bf16 original:
#   perplexity on PTB (issue #5): AWQ <= round-to-nearest, AWQ and search-scale within 5% of bf16;
#   fidelity, the mean KL(bf16 || quantized) per token, on PTB and on held-out WikiText-2 (wiki.valid.raw):
#   search-scale <= ratio 0.5 (the search minimizes the blocks' output error, so the model must follow bf16
#   more closely); with AWQ_FULL=1 also AWQ <= round-to-nearest.
# "search-scale perplexity <= ratio 0.5 perplexity" is printed, not asserted: on this model a quantization
# that follows bf16 more closely has a perplexity closer to bf16's, which is HIGHER than the quantized
# models' (bf16 is overconfident: a softmax temperature of 1.02 alone lowers its PTB perplexity by 5%);
# docs/QUANTIZATION.md has the measurements.
# CI variant (about 2 minutes on 2 idle cores): 8 windows x 256 tokens, the first 10000 characters of
# ptb.valid.txt. AWQ_FULL=1: 32 x 512 and 50000 characters (about 10 minutes). WikiText-2's train split is
# not in the test data: its test split (wiki.test.raw) stands in for calibration; wiki.valid.raw[:10000] is
# the held-out text. Perplexity and KL come from tests/test_awq_quality_kl (the engine's cpu backend, `lmterm
# ppl`'s protocol); `lmterm ppl` itself must print the same AWQ figure.
. "${top_srcdir:-.}/tests/lib.sh"
M="$TESTDATA/models/small-en-zh"
KL="${top_builddir:-.}/tests/test_awq_quality_kl"
[ -d "$M" ] || skip "no small-en-zh"
[ -x "$KL" ] || skip "no $KL"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
if [ "${AWQ_FULL:-0}" = 1 ]; then S=32 L=512 CH=50000 FULL=1; else S=8 L=256 CH=10000 FULL=0; fi

quant() { # NAME ARGS...
	n=$1; shift
	t0=$(date +%s)
	"$LMTERM" lite auto_awq "$M" --work-dir "$tmp/$n" --calib-dataset "$TESTDATA/text/wiki.test.raw" \
		--calib-samples $S --calib-seqlen $L "$@" 2>"$tmp/$n.log" || { fail "auto_awq $n: $(tail -c 300 "$tmp/$n.log")"; return; }
	echo "auto_awq $n: $(($(date +%s) - t0)) s"
}
quant rtn --calib-samples 0
quant awq
quant ss --search-scale
for n in rtn awq ss; do
	[ -f "$tmp/$n/config.json" ] || { fail "$n: no output"; finish; }
done
grep -q '"quant_method":[[:space:]]*"awq"' "$tmp/awq/config.json" || fail "config.json lacks quantization_config"

# TEXT CHARS: one line per model "kl: K ppl: P top1: A DIR", then "ref ppl: P (N tokens) DIR"
"$KL" "$M" "$TESTDATA/text/ptb.valid.txt" 512 $CH "$tmp/rtn" "$tmp/awq" "$tmp/ss" > "$tmp/ptb.txt" 2>&1 ||
	{ fail "test_awq_quality_kl on ptb: $(tail -c 300 "$tmp/ptb.txt")"; finish; }
"$KL" "$M" "$TESTDATA/text/wiki.valid.raw" 512 10000 "$tmp/rtn" "$tmp/awq" "$tmp/ss" > "$tmp/wiki.txt" 2>&1 ||
	{ fail "test_awq_quality_kl on wiki.valid: $(tail -c 300 "$tmp/wiki.txt")"; finish; }
get() { # FILE FIELD NAME
	awk -v f="$2" -v d="$tmp/$3" '$NF == d { for (i = 1; i < NF; i++) if ($i == f ":") print $(i + 1) }' "$1"
}
b=$(sed -n 's/^ref ppl: \([0-9.]*\).*/\1/p' "$tmp/ptb.txt")
r=$(get "$tmp/ptb.txt" ppl rtn) a=$(get "$tmp/ptb.txt" ppl awq) s=$(get "$tmp/ptb.txt" ppl ss)
kr=$(get "$tmp/ptb.txt" kl rtn) ka=$(get "$tmp/ptb.txt" kl awq) ks=$(get "$tmp/ptb.txt" kl ss)
wr=$(get "$tmp/wiki.txt" kl rtn) wa=$(get "$tmp/wiki.txt" kl awq) ws=$(get "$tmp/wiki.txt" kl ss)
echo "calibration ${S}x$L; ptb.valid.txt[:$CH] perplexity: bf16 $b  rtn $r  awq $a  awq+search-scale $s"
echo "KL(bf16 || q) on ptb.valid.txt[:$CH]: rtn $kr  awq $ka  awq+search-scale $ks"
echo "KL(bf16 || q) on wiki.valid.raw[:10000]: rtn $wr  awq $wa  awq+search-scale $ws"
for v in "$b" "$r" "$a" "$s" "$kr" "$ka" "$ks" "$wr" "$wa" "$ws"; do
	[ -n "$v" ] || { fail "a figure is missing: $(cat "$tmp/ptb.txt" "$tmp/wiki.txt")"; finish; }
done

# the product's own perplexity command agrees with the tool on the AWQ model (same engine, same protocol)
head -c $CH "$TESTDATA/text/ptb.valid.txt" > "$tmp/eval.txt" # ptb is ASCII
p=$("$LMTERM" ppl "$tmp/awq" --file "$tmp/eval.txt" --ctx 512 --backend cpu | sed -n 's/^perplexity: \([0-9.]*\).*/\1/p')
[ "$p" = "$a" ] && pass "lmterm ppl $p = test_awq_quality_kl $a" || fail "lmterm ppl '$p' != test_awq_quality_kl $a"

check() { # DESC AWK-CONDITION
	awk "BEGIN{exit !($2)}" && pass "$1" || fail "$1"
}
check "awq perplexity $a <= rtn $r" "$a <= $r"
check "awq perplexity $a within 5% of bf16 $b" "$a <= 1.05 * $b"
check "search-scale perplexity $s within 5% of bf16 $b" "$s <= 1.05 * $b"
check "search-scale KL $ks <= awq KL $ka on ptb" "$ks <= $ka"
check "search-scale KL $ws <= awq KL $wa on wiki.valid" "$ws <= $wa"
if [ $FULL = 1 ]; then
	check "awq KL $ka <= rtn KL $kr on ptb" "$ka <= $kr"
	check "awq KL $wa <= rtn KL $wr on wiki.valid" "$wa <= $wr"
fi
awk "BEGIN{exit !($s <= $a)}" && echo "note: search-scale perplexity $s <= ratio 0.5 $a" ||
	echo "note: search-scale perplexity $s > ratio 0.5 $a (bf16 $b; docs/QUANTIZATION.md says why)"
finish
