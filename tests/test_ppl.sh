#!/bin/sh
# lmterm ppl on the demo model, first 50000 characters of WikiText-2 valid, ctx 512, against the perplexity
# transformers computed by the same protocol (golden/tiny-en-zh/perplexity.json): policy 0 within 0.5%,
# int8 KV within 1% of policy 0, int4 KV within 5%. The golden's tokens are sentencepiece's (tokenizer.model):
# with it the token count is exact; with tokenizer.json (the default) the text's leading " \n" is one token
# shorter, as the tokenizers library has it (see tokenizer/fast_vs_spm.json). Bad inputs: one clear message.
. "${top_srcdir:-.}/tests/lib.sh"
MODEL=${TEST_MODEL:-$DEMO}
TEXT="$TESTDATA/text/wiki.valid.raw"
GOLD="$TESTDATA/golden/tiny-en-zh/perplexity.json"
[ -f "$TEXT" ] && [ -f "$GOLD" ] || skip "test data missing"

# "wiki.valid.raw[:50000]_ctx512": {"ppl": P, "tokens": N}
want=$(tr -d '\n ' < "$GOLD" | sed 's/.*"wiki\.valid\.raw\[:50000\]_ctx512":{"ppl":\([0-9.]*\),"tokens":\([0-9]*\)}.*/\1 \2/')
want_ppl=${want% *} want_tok=${want#* }
echo "golden: ppl $want_ppl over $want_tok tokens"

ppl() { # policy [options] -> "P N"
	pol=$1; shift
	out=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 50000 --ctx 512 --backend cpu --quant-policy "$pol" "$@" 2>&1)
	rc=$?
	last=$(printf '%s\n' "$out" | tail -n 1)
	case "$last" in
	"perplexity: "*) printf '%s\n' "$last" | sed 's/perplexity: \([0-9.]*\) (\([0-9]*\) tokens)/\1 \2/' ;;
	*) echo "FAIL: ppl --quant-policy $1 (rc $rc): $out" >&2; echo "nan 0" ;;
	esac
}
within() { # a b tol -> a within tol (relative) of b
	awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(a == a && d <= t) }'
}

rs=$(ppl 0 --tokenizer "$MODEL/tokenizer.model"); ps=${rs% *} ns=${rs#* }
echo "policy 0, tokenizer.model: ppl $ps over $ns tokens"
[ "$ns" = "$want_tok" ] && pass "token count $ns (tokenizer.model)" || fail "token count $ns, transformers scored $want_tok"
within "$ps" "$want_ppl" 0.005 && pass "policy 0 within 0.5% of transformers (tokenizer.model)" ||
	fail "policy 0, tokenizer.model: $ps vs $want_ppl"
# --tokenizer DIR takes a model or tokenizer directory's tokenizer, as tokenize MODEL does ("not a regular file"):
# a directory holding only tokenizer.model scores as that file does
td=$(mktemp -d) && cp "$MODEL/tokenizer.model" "$td/"
a=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 2000 --ctx 128 --backend cpu --tokenizer "$MODEL/tokenizer.model" 2>&1 | tail -n 1)
b=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 2000 --ctx 128 --backend cpu --tokenizer "$td" 2>&1 | tail -n 1)
case "$a" in "perplexity: "*) [ "$b" = "$a" ] && pass "--tokenizer DIR: $b" || fail "--tokenizer DIR: '$b', the file gives '$a'" ;;
*) fail "--tokenizer FILE: $a" ;; esac
rm -rf "$td"
r0=$(ppl 0); p0=${r0% *} n0=${r0#* }
echo "policy 0: ppl $p0 over $n0 tokens"
[ $((n0 - want_tok)) -ge -2 ] && [ $((n0 - want_tok)) -le 2 ] && pass "token count $n0 (tokenizer.json)" ||
	fail "token count $n0, transformers scored $want_tok"
within "$p0" "$want_ppl" 0.005 && pass "policy 0 within 0.5% of transformers" || fail "policy 0: $p0 vs $want_ppl"
r8=$(ppl 8); p8=${r8% *}
echo "policy 8: ppl $p8"
within "$p8" "$p0" 0.01 && pass "int8 KV within 1% of policy 0" || fail "policy 8: $p8 vs $p0"
r4=$(ppl 4); p4=${r4% *}
echo "policy 4: ppl $p4"
within "$p4" "$p0" 0.05 && pass "int4 KV within 5% of policy 0" || fail "policy 4: $p4 vs $p0"

expect_fail "missing --file" "--file" "$LMTERM" ppl "$MODEL"
expect_fail "missing text file" "/nonexistent.txt" "$LMTERM" ppl "$MODEL" --file /nonexistent.txt --backend cpu
expect_fail "bad --ctx" "--ctx" "$LMTERM" ppl "$MODEL" --file "$TEXT" --ctx one
# a --ctx past the model's context (max_position_embeddings 2048) is scored, with a note saying so (none came)
err=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 300 --ctx 4096 --backend cpu 2>&1 >/dev/null)
case "$err" in *"--ctx 4096 is longer than the model's context of 2048 tokens"*) pass "--ctx past the model's context: a note" ;;
*) fail "--ctx past the model's context: no note: $err" ;; esac
err=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 300 --ctx 2048 --backend cpu 2>&1 >/dev/null)
[ -z "$err" ] && pass "--ctx within the model's context: no note" || fail "--ctx 2048: $err"
expect_fail "bad --quant-policy" "--quant-policy" "$LMTERM" ppl "$MODEL" --file "$TEXT" --quant-policy 3
# another model's tokenizer: its ids past the vocabulary are named before the weights are read (the embedding
# lookup found them, after loading; here the weights are cut short, so only the early check can speak)
qt="$TESTDATA/tokenizers/qwen3.tokenizer.json"
if [ -f "$qt" ]; then
	bw=$(mktemp -d) && cp "$MODEL"/* "$bw/" && for f in "$bw"/*.safetensors; do : > "$f"; done
	expect_fail "another model's tokenizer" "qwen3.tokenizer.json: the tokenizer gave id" \
		"$LMTERM" ppl "$bw" --file "$TEXT" --max-chars 2000 --ctx 128 --backend cpu --tokenizer "$qt"
	rm -rf "$bw"
fi
# --max-chars 0 scored the whole file (exit 0)
expect_usage "--max-chars 0" "--max-chars: 0 characters" "$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 0
expect_usage "bad --backend" "unknown backend 'gpu'" "$LMTERM" ppl "$MODEL" --file "$TEXT" --backend gpu
expect_fail "unknown option last" "unknown option '--bogus'" "$LMTERM" ppl "$MODEL" --file "$TEXT" --bogus
# the option parser alone decides: an unknown option given last is unknown (not "needs a value", nor "--file is
# required"), a known one given last without its value needs one; both are usage errors (exit 2)
expect_usage "unknown option last, exit 2" "lmterm: ppl: unknown option '--bogus'" \
	"$LMTERM" ppl "$MODEL" --file "$TEXT" --bogus
expect_usage "unknown option last, no --file" "lmterm: ppl: unknown option '--bogus'" "$LMTERM" ppl "$MODEL" --bogus
expect_usage "--ctx last" "lmterm: option '--ctx' needs a value" "$LMTERM" ppl "$MODEL" --file "$TEXT" --ctx
expect_usage "--file last" "lmterm: option '--file' needs a value" "$LMTERM" ppl "$MODEL" --file
expect_usage "--max_chars last" "lmterm: option '--max_chars' needs a value" \
	"$LMTERM" ppl "$MODEL" --file "$TEXT" --max_chars
# a model without BOS and a one-token text: nothing to predict is an error, not "perplexity: -nan (0 tokens)"
nb=${TMPDIR:-/tmp}/lmterm-ppl-nobos.$$
mkdir -p "$nb" && cp "$DEMO"/config.json "$DEMO"/tokenizer.json "$DEMO"/model* "$nb/" &&
	sed 's/"bos_token_id": *[0-9]*,//' "$DEMO/config.json" > "$nb/config.json" &&
	printf '{"add_bos_token": false}\n' > "$nb/tokenizer_config.json" && printf 'the' > "$nb/one.txt" && {
	expect_fail "one token without BOS" "nothing to predict" "$LMTERM" ppl "$nb" --file "$nb/one.txt" --backend cpu
	# a bos_token_id beyond the vocabulary: named as the BOS before the weights are read (the embedding lookup
	# found it: 'token id 100000 is outside the vocabulary', naming no file)
	sed 's/"bos_token_id": *[0-9]*/"bos_token_id": 100000/' "$DEMO/config.json" > "$nb/config.json" &&
		expect_fail "bos_token_id beyond the vocabulary" "$nb: BOS token id 100000 is outside" \
		"$LMTERM" ppl "$nb" --file "$nb/one.txt" --backend cpu
	rm -rf "$nb"
}
# a tokenizer of another model (--tokenizer) giving ids past the model's vocabulary: an error naming the text
# before any window is scored (the target after a 512-token chunk was read from the logits before the next
# chunk's embedding refused it: a read past their end, which valgrind shows; here id 56568 is that target)
big=${TMPDIR:-/tmp}/lmterm-ppl-vocab.$$
printf 'the%s \344\275\240%s' "$(yes ' the' | head -509 | tr -d '\n')" "$(yes ' the' | head -20 | tr -d '\n')" > "$big"
expect_fail "a tokenizer with ids past the model's vocabulary" "the tokenizer gave id 56568" \
	"$LMTERM" ppl "$DEMO" --file "$big" --ctx 1024 --backend cpu --tokenizer "$TESTDATA/tokenizers/qwen3.tokenizer.json"
rm -f "$big"
# a model whose final norm weight is NaN: an error naming the cause, not "perplexity: nan" and exit 0
if command -v python3 >/dev/null 2>&1; then
	nn=${TMPDIR:-/tmp}/lmterm-ppl-nan.$$
	mkdir -p "$nn" && cp "$DEMO"/* "$nn/" && python3 - "$nn" <<'PY' && {
import json, os, struct, sys
d = sys.argv[1]
for f in sorted(os.listdir(d)):
    if not f.endswith(".safetensors"):
        continue
    p = os.path.join(d, f)
    with open(p, "r+b") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        hdr = json.loads(fh.read(n))
        t = hdr.get("model.norm.weight")
        if not t:
            continue
        nan = {"F32": b"\x00\x00\xc0\x7f", "F16": b"\x00\x7e", "BF16": b"\xc0\x7f"}[t["dtype"]]
        a, b = t["data_offsets"]
        fh.seek(8 + n + a)
        fh.write(nan * ((b - a) // len(nan)))
        sys.exit(0)
sys.exit(1)
PY
		expect_fail "NaN weights" "not finite" "$LMTERM" ppl "$nn" --file "$TEXT" --max-chars 300 --ctx 64 --backend cpu
	}
	rm -rf "$nn"
fi
# LMDeploy's Python spelling names the same option
a=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --ctx 64 --backend cpu --max_chars 300 2>/dev/null)
b=$("$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars 300 --ctx 64 --backend cpu 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && pass "--max_chars is --max-chars" || fail "--max_chars: '$a' vs '$b'"
expect_fail "--seed-like wrap of ' -5'" "not a non-negative integer" "$LMTERM" ppl "$MODEL" --file "$TEXT" --max-chars " -5"
expect_fail "not a model" "/nonexistent-model: No such file or directory" "$LMTERM" ppl /nonexistent-model --file "$TEXT" --backend cpu
# a FIFO as the text (or anywhere a file is read) is refused at once, not waited on for a writer
fifo=${TMPDIR:-/tmp}/lmterm-ppl-fifo.$$
rm -f "$fifo" && mkfifo "$fifo" && {
	expect_fail "a FIFO as --file" "not a regular file" timeout 30 "$LMTERM" ppl "$MODEL" --file "$fifo" --backend cpu
	rm -f "$fifo"
}
# the result could not be written: not a success
if [ -c /dev/full ]; then
	expect_fail "stdout on a full disk" "standard output" sh -c '"$0" ppl "$1" --file "$2" --max-chars 200 --ctx 64 --backend cpu >/dev/full' \
		"$LMTERM" "$MODEL" "$TEXT"
fi
# the progress line on a terminal (script(1) gives the pty) rewrites itself with ESC [ K, which TERM=dumb
# prints as text: there no progress line, as when stderr is not a terminal, and the result all the same
if command -v script >/dev/null 2>&1; then
	log=$(mktemp) || exit 1
	for t in xterm dumb; do
		TERM=$t script -qec "\"$LMTERM\" ppl \"$MODEL\" --file \"$TEXT\" --max-chars 3000 --ctx 64 --backend cpu" \
			"$log" >/dev/null 2>&1
		rc=$?
		esc=$(tr -cd '\033' < "$log" | wc -c)
		if [ $rc -ne 0 ] || ! grep -q "perplexity" "$log"; then fail "TERM=$t: ppl rc $rc, no perplexity"
		elif [ $t = dumb ] && [ "$esc" -eq 0 ]; then pass "TERM=dumb: no escape sequence on the terminal"
		elif [ $t = xterm ] && grep -q "$(printf '\033\\[K')" "$log"; then pass "TERM=xterm: the progress line erases with ESC [ K"
		else fail "TERM=$t: $esc escapes: $(tr '\033\r' '^|' < "$log" | head -c 300)"; fi
	done
	rm -f "$log"
fi
finish
