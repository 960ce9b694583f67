#!/bin/sh
# lmterm generate on the demo model: greedy ids equal to transformers' goldens (from --ids and from -p
# text), --dump-logits writes the prompt's logits, and bad input fails with a message.
. "${top_srcdir:-.}/tests/lib.sh"
ST="${top_builddir:-.}/tests/st_tool"
G="$TESTDATA/golden/tiny-en-zh"
[ -x "$ST" ] || skip "tests/st_tool not built"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

for c in en_story zh_story chat_en; do
	ids=$("$ST" ints "$G/$c.safetensors" input_ids) || { fail "$c: reading the golden"; continue; }
	want=$("$ST" ints "$G/$c.safetensors" greedy_ids)
	n=$(echo "$want" | wc -w)
	# chat_en's golden ends with <|im_end|>: ask for more tokens, generation must stop there
	[ $c = chat_en ] && n=$((n + 20))
	got=$("$LMTERM" generate "$DEMO" --ids "$ids" -n $n --greedy --print-ids --backend cpu 2>"$tmp/err")
	if [ "$got" = "$want" ]; then pass "$c: --ids greedy equals golden ($(echo "$want" | wc -w) tokens)"
	else fail "$c: --ids greedy: got '$got' want '$want' ($(cat "$tmp/err"))"; fi
done

# -p text: encoded with the tokenizer and BOS, the same continuation as the golden
want=$("$ST" ints "$G/en_story.safetensors" greedy_ids)
got=$("$LMTERM" generate "$DEMO" -p "Once upon a time, there was a little" -n 40 --greedy --print-ids 2>"$tmp/err")
[ "$got" = "$want" ] && pass "-p text greedy equals golden" || fail "-p text: got '$got' want '$want' ($(cat "$tmp/err"))"

# text output: streams a non-empty continuation
out=$("$LMTERM" generate "$DEMO" -p "话说天下大势，" -n 12 --greedy 2>"$tmp/err")
[ $? -eq 0 ] && [ -n "$out" ] && pass "text output: $out" || fail "text output empty ($(cat "$tmp/err"))"

# --dump-logits: [prompt tokens, vocab] F32 whose row argmaxes are the golden's
ids=$("$ST" ints "$G/zh_story.safetensors" input_ids)
"$LMTERM" generate "$DEMO" --ids "$ids" -n 1 --greedy --print-ids --dump-logits "$tmp/l.safetensors" >/dev/null 2>"$tmp/err" ||
	fail "--dump-logits: $(cat "$tmp/err")"
shape=$("$ST" shape "$tmp/l.safetensors" logits)
[ "$shape" = "F32 $(echo "$ids" | wc -w) 8192" ] && pass "--dump-logits shape $shape" || fail "--dump-logits shape '$shape'"
am=$("$ST" argmax "$tmp/l.safetensors" logits)
[ "$am" = "$("$ST" ints "$G/zh_story.safetensors" argmax_ids)" ] && pass "--dump-logits argmax equals golden" ||
	fail "--dump-logits argmax '$am'"

# sampling: a seed reproduces the continuation; temperature 0 is greedy
s1=$("$LMTERM" generate "$DEMO" -p "Once upon a time" -n 24 --seed 5 --temperature 1 --print-ids 2>"$tmp/err")
s2=$("$LMTERM" generate "$DEMO" -p "Once upon a time" -n 24 --seed 5 --temperature 1 --print-ids 2>>"$tmp/err")
s3=$("$LMTERM" generate "$DEMO" -p "Once upon a time" -n 24 --seed 6 --temperature 1 --print-ids 2>>"$tmp/err")
[ -n "$s1" ] && [ "$s1" = "$s2" ] && pass "--seed 5 reproduces: $s1" || fail "--seed 5: '$s1' then '$s2' $(cat "$tmp/err")"
[ "$s1" != "$s3" ] && pass "--seed 6 differs" || fail "--seed 5 and 6 gave the same 24 tokens"
# the backend's sample op (the path the engine takes) and the host sampler on downloaded logits: one stream
s4=$(LMTERM_HOST_SAMPLING=1 "$LMTERM" generate "$DEMO" -p "Once upon a time" -n 24 --seed 5 --temperature 1 --print-ids 2>>"$tmp/err")
[ "$s1" = "$s4" ] && pass "LMTERM_HOST_SAMPLING=1 gives the same tokens" || fail "sample op '$s1', host sampler '$s4'"
g1=$("$LMTERM" generate "$DEMO" -p "Once upon a time" -n 16 --temperature 0 --print-ids 2>"$tmp/err")
g2=$("$LMTERM" generate "$DEMO" -p "Once upon a time" -n 16 --greedy --print-ids 2>>"$tmp/err")
[ -n "$g1" ] && [ "$g1" = "$g2" ] && pass "--temperature 0 is greedy" || fail "--temperature 0: '$g1' vs '$g2'"

# a quantized KV cache runs (its continuation may differ from the float one)
for q in 8 4; do
	got=$("$LMTERM" generate "$DEMO" --ids "1 1344 330 651" -n 8 --greedy --print-ids --quant-policy $q 2>"$tmp/err")
	[ $(echo "$got" | wc -w) -eq 8 ] && pass "--quant-policy $q: $got" || fail "--quant-policy $q: '$got' $(cat "$tmp/err")"
done

# bad input: one message naming the culprit, non-zero exit, no crash
# sampling without --seed: runs started within the same second differ (the seed was time(NULL): the same text)
n_distinct=$(for i in 1 2 3 4; do "$LMTERM" generate "$DEMO" -p "Once upon a time" -n 24 --temperature 1 --backend cpu; done |
	sort -u | wc -l)
[ "$n_distinct" -ge 3 ] && pass "sampling without --seed: $n_distinct different texts in 4 runs" ||
	fail "sampling without --seed: only $n_distinct different texts in 4 quick runs"
expect_fail "missing model dir" "nonexistent: No such file or directory" "$LMTERM" generate "$tmp/nonexistent" --ids "1 2 3"
mkdir "$tmp/empty"
expect_fail "a directory without config.json" "not a model directory (no config.json)" "$LMTERM" generate "$tmp/empty" --ids "1 2 3"
# a model directory that cannot be read: the reason, not "no config.json" (as root, run as nobody where setpriv is)
mkdir "$tmp/noperm" && cp "$DEMO/config.json" "$tmp/noperm/" && chmod 0 "$tmp/noperm" && chmod a+x "$tmp"
asuser=
[ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 && asuser="setpriv --reuid=65534 --regid=65534 --clear-groups"
if { [ "$(id -u)" != 0 ] || [ -n "$asuser" ]; } && $asuser "$LMTERM" --version >/dev/null 2>&1; then
	want="noperm/config.json: Permission denied"
	expect_fail "generate: an unreadable model directory" "$want" $asuser "$LMTERM" generate "$tmp/noperm" --ids "1 2"
	echo "some text" >"$tmp/t.txt" && chmod 644 "$tmp/t.txt"
	expect_fail "ppl: an unreadable model directory" "$want" $asuser "$LMTERM" ppl "$tmp/noperm" --file "$tmp/t.txt"
	expect_fail "bench: an unreadable model directory" "$want" $asuser "$LMTERM" bench "$tmp/noperm"
	expect_fail "chat: an unreadable model directory" "$want" $asuser "$LMTERM" chat "$tmp/noperm" --no-tui
	expect_fail "tokenize: an unreadable model directory" "noperm/tokenizer.model: Permission denied" \
		$asuser "$LMTERM" tokenize "$tmp/noperm" hi
else
	echo "SKIP: an unreadable model directory: running as root without setpriv, or lmterm out of nobody's reach"
fi
chmod 755 "$tmp/noperm"
expect_fail "bad --ids" "--ids" "$LMTERM" generate "$DEMO" --ids "1 x 3"
expect_fail "--ids out of vocabulary" "vocabulary" "$LMTERM" generate "$DEMO" --ids "1 99999"
expect_fail "empty --ids" "--ids" "$LMTERM" generate "$DEMO" --ids " "
expect_fail "-n -1" "-n" "$LMTERM" generate "$DEMO" --ids "1 2 3" -n -1
expect_fail "unknown option" "--bogus" "$LMTERM" generate "$DEMO" --ids "1 2 3" --bogus
expect_fail "neither -p nor --ids" "--ids" "$LMTERM" generate "$DEMO"
expect_fail "bad --quant-policy" "--quant-policy" "$LMTERM" generate "$DEMO" --ids "1" --quant-policy 3
for t in abc 0 -3 2x 300; do
	expect_fail "LMTERM_THREADS=$t" "LMTERM_THREADS=?$t?: give a number of threads from 1 to 256" env LMTERM_THREADS=$t "$LMTERM" generate "$DEMO" --ids "1" -n 1 --backend cpu
done
LMTERM_THREADS=1 "$LMTERM" generate "$DEMO" --ids "1" -n 2 --backend cpu >/dev/null 2>&1 && pass "LMTERM_THREADS=1" || fail "LMTERM_THREADS=1 refused"
expect_usage "bad --backend" "unknown backend 'gpu'" "$LMTERM" generate "$DEMO" --ids "1" --backend gpu
a=$("$LMTERM" generate "$DEMO" --ids "1" -n 3 --greedy --print-ids --backend pytorch 2>&1) &&
	[ "$a" = "$("$LMTERM" generate "$DEMO" --ids "1" -n 3 --greedy --print-ids 2>&1)" ] &&
	pass "--backend pytorch is auto" || fail "--backend pytorch: $a"
expect_usage "--greedy with a temperature" "contradict" "$LMTERM" generate "$DEMO" --ids "1" --greedy --temperature 0.8
# --greedy with --temperature 0 says the same thing twice: fine
"$LMTERM" generate "$DEMO" --ids "1" -n 2 --greedy --temperature 0 >/dev/null 2>&1 && pass "--greedy --temperature 0" || fail "--greedy --temperature 0 refused"
expect_fail "unwritable --dump-logits" "$tmp/no/dir/x: cannot create" "$LMTERM" generate "$DEMO" --ids "1 2" --dump-logits "$tmp/no/dir/x"
# the message names the file given, not the temporary name beside it that was never created
case $("$LMTERM" generate "$DEMO" --ids "1 2" --dump-logits "$tmp/no/dir/x" 2>&1) in
*.tmp-*) fail "unwritable --dump-logits: the message names the temporary file" ;;
*) pass "unwritable --dump-logits: the message names the file given" ;; esac
# --dump-logits onto something that is not a regular file: refused, and it stays what it was (the file is written
# beside it and renamed over it, which replaced /dev/full with a regular file when run as root)
mkfifo "$tmp/fifo"
expect_fail "--dump-logits onto a FIFO" "not a regular file" timeout 60 "$LMTERM" generate "$DEMO" --ids "1 2" -n 1 --dump-logits "$tmp/fifo"
[ -p "$tmp/fifo" ] && pass "the FIFO is still a FIFO" || fail "--dump-logits replaced the FIFO"
# SIGTERM while --dump-logits writes (64 MB here): the file is finished and renamed first, then the signal ends
# lmterm; it used to leave the temporary PATH.tmp-XXXXXX behind. (SIGTERM: a background job ignores SIGINT.)
mkdir -p "$tmp/sig"
many=$(yes 100 | head -2000 | tr '\n' ' ')
"$LMTERM" generate "$DEMO" --ids "$many" -n 1 --print-ids --backend cpu --dump-logits "$tmp/sig/l.st" >/dev/null 2>&1 &
pid=$!
i=0
while ! ls "$tmp/sig/l.st".tmp-* >/dev/null 2>&1 && [ $i -lt 3000 ]; do sleep 0.01; i=$((i + 1)); done
kill -TERM $pid 2>/dev/null
wait $pid; rc=$?
if ls "$tmp/sig/l.st".tmp-* >/dev/null 2>&1; then fail "SIGTERM during --dump-logits: left $(ls "$tmp/sig")"
elif [ $rc -ne 143 ] && [ $rc -ne 0 ]; then fail "SIGTERM during --dump-logits: rc $rc"
elif [ -f "$tmp/sig/l.st" ] && [ "$("$ST" shape "$tmp/sig/l.st" logits 2>/dev/null)" = "F32 2000 8192" ]; then
	pass "SIGTERM during --dump-logits: the file is complete, nothing else left (rc $rc)"
else fail "SIGTERM during --dump-logits: no complete file: $(ls -l "$tmp/sig")"; fi
expect_fail "--dump-logits onto a directory" "not a regular file" "$LMTERM" generate "$DEMO" --ids "1 2" -n 1 --dump-logits "$tmp"
# a file of the user's named like the temporary one is left alone
echo keep > "$tmp/l2.safetensors.tmp"
"$LMTERM" generate "$DEMO" --ids "1 2" -n 1 --print-ids --dump-logits "$tmp/l2.safetensors" >/dev/null 2>"$tmp/err" ||
	fail "--dump-logits beside a .tmp file: $(cat "$tmp/err")"
[ "$(cat "$tmp/l2.safetensors.tmp")" = keep ] && pass "an existing PATH.tmp is not overwritten" || fail "PATH.tmp was overwritten"
ls "$tmp"/l2.safetensors.tmp-* >/dev/null 2>&1 && fail "--dump-logits left a temporary file"
# --version: the version, then whether the CUDA backend is built and what CUDA sees (here: whatever this machine has)
v2=$("$LMTERM" --version | sed -n 2p)
case "$v2" in
"CUDA backend: built; CUDA runtime "*"; GPU"*|"CUDA backend: not built (configure --with-cuda"*) pass "--version: $v2" ;;
*) fail "--version's second line: '$v2'" ;;
esac
# without a driver, CUDA's error for the device count says the driver is too old: not what to tell the user
case "$v2" in *"no NVIDIA driver"*"insufficient"*) fail "--version blames the version of a missing driver: '$v2'" ;;
*"no NVIDIA driver"*) pass "--version without a driver: $v2" ;; esac
if [ -c /dev/full ]; then
	expect_fail "stdout on a full disk" "No space" sh -c '"$0" generate "$1" --ids "1 2" -n 2 >/dev/full' "$LMTERM" "$DEMO"
	expect_fail "--version on a full disk" "standard output" sh -c '"$0" --version >/dev/full' "$LMTERM"
fi
# a reader that goes away while SIGPIPE is ignored (as under Python's subprocess): generation stops at the failed
# write with a message; it went on for all -n tokens (this prompt has no end of sequence for a million)
(trap '' PIPE; timeout 30 "$LMTERM" generate "$DEMO" -p hi -n 1000000 --greedy --backend cpu 2>"$tmp/pipe.err"
	echo $? >"$tmp/pipe.rc") | head -c 1 >/dev/null
if [ "$(cat "$tmp/pipe.rc")" = 1 ] && grep -q "Broken pipe" "$tmp/pipe.err"; then pass "generate stops when its reader has gone"
else fail "generate with its reader gone: exit $(cat "$tmp/pipe.rc"): $(cat "$tmp/pipe.err")"; fi
# a tokenizer whose ids lie beyond config.json's vocab_size: the message names the id (it was read after free)
FIX="$TESTDATA/fixtures/llama3-rand"
if [ -d "$FIX" ]; then
	mkdir "$tmp/v100" && cp "$FIX"/* "$tmp/v100/" && sed 's/"vocab_size": 8192/"vocab_size": 100/' "$FIX/config.json" >"$tmp/v100/config.json"
	id=$("$LMTERM" tokenize "$FIX" "hello world" | tr ' ' '\n' | awk '$1 >= 100 { print; exit }')
	expect_fail "tokenizer id beyond vocab_size" "gave id $id," "$LMTERM" generate "$tmp/v100" -p "hello world" -n 1
	# config.json's bos_token_id beyond the vocabulary is named as the BOS (it was blamed on the tokenizer)
	mkdir "$tmp/bos" && cp "$FIX"/* "$tmp/bos/" && sed 's/"bos_token_id": *[0-9]*/"bos_token_id": 100000/' \
		"$FIX/config.json" >"$tmp/bos/config.json"
	expect_fail "bos_token_id beyond vocab_size" "BOS token id 100000 is outside" \
		"$LMTERM" generate "$tmp/bos" -p "hello world" -n 1 --backend cpu
	# a tokenizer_config.json that is not JSON: its add_bos_token was taken as absent without a word
	mkdir "$tmp/tc" && cp "$FIX"/* "$tmp/tc/" && printf '{"add_bos_token": false,\n' >"$tmp/tc/tokenizer_config.json"
	expect_fail "tokenizer_config.json not valid JSON" "$tmp/tc/tokenizer_config.json: not a valid JSON object" \
		"$LMTERM" generate "$tmp/tc" -p "hello world" -n 1 --backend cpu
fi
# generation_config.json's unusable values: named on stderr when the run samples; a greedy run reads none of them
mkdir "$tmp/badgen" && cp "$DEMO"/* "$tmp/badgen/" &&
	printf '{"eos_token_id": [2, 4], "top_p": 90, "min_p": "x"}\n' >"$tmp/badgen/generation_config.json"
"$LMTERM" generate "$tmp/badgen" -p "Once" -n 2 --seed 1 --backend cpu >/dev/null 2>"$tmp/err" || fail "generate, bad generation_config: $(cat "$tmp/err")"
case "$(cat "$tmp/err")" in
*"generation_config.json: ignored top_p 90 (must be (0, 1]), min_p \"x\" (not a number)"*) pass "generate names generation_config's bad values" ;;
*) fail "generate, bad generation_config: $(cat "$tmp/err")" ;;
esac
"$LMTERM" generate "$tmp/badgen" -p "Once" -n 2 --greedy --backend cpu >/dev/null 2>"$tmp/err" || fail "generate --greedy: $(cat "$tmp/err")"
if grep -q "ignored" "$tmp/err"; then fail "generate --greedy warned about sampling values: $(cat "$tmp/err")"; else pass "generate --greedy: no sampling warning"; fi
# weights in a format lmterm does not read: the message says which file it found
mkdir "$tmp/binw" && cp "$DEMO"/*.json "$DEMO"/tokenizer* "$tmp/binw/" && rm -f "$tmp/binw/model.safetensors.index.json" &&
	: > "$tmp/binw/pytorch_model.bin"
expect_fail "PyTorch .bin weights" "the weights are PyTorch files (pytorch_model.bin)" "$LMTERM" generate "$tmp/binw" -p hi -n 1
rm "$tmp/binw/pytorch_model.bin" && : > "$tmp/binw/model-Q4_K_M.gguf"
expect_fail "a GGUF file" "model-Q4_K_M.gguf is a GGUF file" "$LMTERM" generate "$tmp/binw" -p hi -n 1

# Mistral's sliding-window attention (transformers attends to the last sliding_window tokens) is not done here:
# past the window a note says so; a window of null, or a Llama config with the key, gets none
swcopy() { # DIR MODEL_TYPE ARCH SLIDING
	mkdir "$1" && for f in "$DEMO"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$1/"; done
	rm "$1/config.json"
	sed -e "s/\"model_type\": \"llama\"/\"model_type\": \"$2\"/" -e "s/\"LlamaForCausalLM\"/\"$3\"/" \
		-e "s/\"rope_scaling\": null/\"rope_scaling\": null, \"sliding_window\": $4/" "$DEMO/config.json" > "$1/config.json"
}
swcopy "$tmp/sw" mistral MistralForCausalLM 16
swcopy "$tmp/swnull" mistral MistralForCausalLM null
swcopy "$tmp/swllama" llama LlamaForCausalLM 16
note="attends to its last 16 tokens only (sliding_window in config.json)"
"$LMTERM" generate "$tmp/sw" --ids "$(seq 100 129 | tr '\n' ' ')" -n 2 --greedy --print-ids > /dev/null 2>"$tmp/err" &&
	grep -qF "$note" "$tmp/err" && pass "sliding_window 16, 32 tokens: a note" || fail "sliding_window 16: no note ($(cat "$tmp/err"))"
"$LMTERM" generate "$tmp/sw" --ids "1 2 3" -n 2 --greedy --print-ids > /dev/null 2>"$tmp/err" && [ ! -s "$tmp/err" ] &&
	pass "sliding_window 16, 5 tokens: no note" || fail "sliding_window 16, 5 tokens: '$(cat "$tmp/err")'"
for d in swnull swllama; do
	"$LMTERM" generate "$tmp/$d" --ids "$(seq 100 129 | tr '\n' ' ')" -n 2 --greedy --print-ids > /dev/null 2>"$tmp/err" &&
		[ ! -s "$tmp/err" ] && pass "$d: no note" || fail "$d: '$(cat "$tmp/err")'"
done
out=$(printf 'exit\n' | "$LMTERM" chat "$tmp/sw" --no-tui --session-len 64 2>&1)
case "$out" in *"$note"*) pass "chat: the sliding-window note" ;; *) fail "chat: no sliding-window note: $out" ;; esac
expect_fail "sliding_window: -1" "sliding_window" sh -c 'sed "s/\"sliding_window\": 16/\"sliding_window\": -1/" "$0/config.json" > "$0/c" && mv "$0/c" "$0/config.json" && "$1" generate "$0" -p hi -n 1' "$tmp/sw" "$LMTERM"
finish
