#!/bin/sh
# LMDeploy's engine options on chat, generate and ppl, and its auto_awq options on lite (man page, OPTIONS):
# what lmterm honours (--dtype, --rope-scaling-factor, --eager-mode), what it accepts because there is nothing
# to do (--tp 1, --device cuda, --enable-prefix-caching, --communicator, --clamp-zeros), and what it refuses
# with a message (another --tp or --device, --adapters, --revision, --download-dir, --w-sym); a model given as
# a Hugging Face id that is not a directory here gets the way to download it.
. "${top_srcdir:-.}/tests/lib.sh"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

# chat accepts the lot and answers
out=$(printf 'hello\n\nexit\n' | "$LMTERM" chat "$DEMO" --no-tui --backend cpu --seed 1 --max-new-tokens 8 \
	--dtype float16 --tp 1 --device cuda --enable-prefix-caching --eager-mode --communicator nccl \
	--rope-scaling-factor 2 2>"$tmp/err")
rc=$?
case "$out" in *"tokens/s"*) [ $rc -eq 0 ] && pass "chat takes LMDeploy's engine options" ;;
*) fail "chat with LMDeploy's options: rc $rc, out '$out', err '$(cat "$tmp/err")'" ;; esac
# flags with a boolean value, as --no-tui takes one
printf 'exit\n' | "$LMTERM" chat "$DEMO" --no-tui --backend cpu --eager-mode false --enable-prefix-caching=yes \
	>/dev/null 2>"$tmp/err" && pass "--eager-mode false, --enable-prefix-caching=yes" ||
	fail "boolean values of the flags: $(cat "$tmp/err")"

for cmd in chat generate ppl; do
	case $cmd in
	chat) extra="--no-tui" ;;
	generate) extra="-p hi" ;;
	ppl) extra="--file $DEMO/config.json" ;;
	esac
	expect_usage "$cmd --tp 2" "--tp 2: lmterm runs a model on one GPU" "$LMTERM" $cmd "$DEMO" $extra --tp 2
	expect_usage "$cmd --device npu" "--device npu: lmterm runs on NVIDIA GPUs" "$LMTERM" $cmd "$DEMO" $extra --device npu
	expect_usage "$cmd --dtype fp8" "--dtype: 'fp8' is not auto, float16 or bfloat16" "$LMTERM" $cmd "$DEMO" $extra --dtype fp8
	expect_usage "$cmd --rope-scaling-factor 0.5" "must be at least 1" "$LMTERM" $cmd "$DEMO" $extra --rope-scaling-factor 0.5
	expect_usage "$cmd --rope-scaling-factor x" "'x' is not a number" "$LMTERM" $cmd "$DEMO" $extra --rope-scaling-factor x
	expect_usage "$cmd --adapters" "LoRA adapters are not supported" "$LMTERM" $cmd "$DEMO" $extra --adapters a=b
	expect_usage "$cmd --revision" "lmterm does not download models" "$LMTERM" $cmd "$DEMO" $extra --revision main
	expect_usage "$cmd --download-dir" "lmterm does not download models" "$LMTERM" $cmd "$DEMO" $extra --download-dir "$tmp"
	expect_usage "$cmd --communicator" "'foo' is not nccl, native or cuda-ipc" "$LMTERM" $cmd "$DEMO" $extra --communicator foo
	expect_usage "$cmd --eager-mode maybe" "'maybe' is not a boolean" "$LMTERM" $cmd "$DEMO" $extra --eager-mode=maybe
done
expect_usage "lite --w-sym" "--w-sym: symmetric weights are not supported" "$LMTERM" lite auto_awq "$DEMO" --w-sym
expect_usage "lite --device npu" "--device npu: lmterm runs on NVIDIA GPUs" "$LMTERM" lite auto_awq "$DEMO" --device npu
expect_usage "lite --revision" "lmterm does not download models" "$LMTERM" lite auto_awq "$DEMO" --revision v1
expect_usage "lite --clamp-zeros maybe" "'maybe' is not a boolean" "$LMTERM" lite auto_awq "$DEMO" --clamp-zeros=maybe
# accepted by lite: the run goes on to its next check (here the work dir, which is a file)
: > "$tmp/file"
expect_fail "lite --device cuda --clamp-zeros accepted" "$tmp/file" \
	"$LMTERM" lite auto_awq "$DEMO" --device cuda --clamp-zeros --work-dir "$tmp/file" --calib-samples 0
# --w-sym false asks for what lmterm does (asymmetric, with zero points), as --clamp-zeros false is taken
expect_fail "lite --w-sym false accepted" "$tmp/file" \
	"$LMTERM" lite auto_awq "$DEMO" --w-sym false --w_sym=no --work-dir "$tmp/file" --calib-samples 0
expect_usage "lite --w-sym=true" "--w-sym: symmetric weights are not supported" "$LMTERM" lite auto_awq "$DEMO" --w-sym=true
expect_usage "lite --w-sym=maybe" "'maybe' is not a boolean" "$LMTERM" lite auto_awq "$DEMO" --w-sym=maybe

# lmterm list (lmdeploy list): the names --chat-template takes, each of them taken
names=$("$LMTERM" list | tail -n +2)
[ "$(echo "$names" | wc -l)" -ge 5 ] && pass "list: $(echo $names)" || fail "list printed '$names'"
for t in $names; do
	printf 'exit\n' | "$LMTERM" chat "$DEMO" --no-tui --backend cpu --chat-template "$t" > /dev/null 2>"$tmp/err" ||
		fail "list names '$t', which --chat-template refuses: $(cat "$tmp/err")"
done
expect_usage "list x" "list: unexpected argument 'x'" "$LMTERM" list x

# a Hugging Face model id that is not a directory here: how to get it
hub=internlm/internlm2_5-7b-chat
how="huggingface-cli download $hub --local-dir internlm2_5-7b-chat"
expect_fail "chat $hub" "$how" "$LMTERM" chat $hub --no-tui
expect_fail "lmterm $hub (chat without the word)" "$how" "$LMTERM" $hub --no-tui
expect_fail "generate $hub" "$how" "$LMTERM" generate $hub -p hi
expect_fail "ppl $hub" "$how" "$LMTERM" ppl $hub --file "$DEMO/config.json"
expect_fail "lite auto_awq $hub" "$how" "$LMTERM" lite auto_awq $hub
expect_fail "tokenize $hub" "$how" "$LMTERM" tokenize $hub hi
expect_fail "bench $hub" "$how" "$LMTERM" bench $hub
expect_fail "a missing path is not taken for a model id" "$tmp/none: No such file or directory" \
	"$LMTERM" generate "$tmp/none" -p hi
expect_fail "a file is not a model directory" "not a directory" "$LMTERM" generate "$DEMO/config.json" -p hi
# an empty directory: every command says what is missing (bench said it could not open DIR/config.json)
mkdir "$tmp/empty"
for c in "chat --no-tui" "generate -p hi" "ppl --file $DEMO/config.json" "bench" "bench --dummy"; do
	set -- $c
	cmd=$1; shift
	expect_fail "$cmd on an empty directory" "$tmp/empty: not a model directory (no config.json)" \
		"$LMTERM" $cmd "$tmp/empty" "$@"
done
expect_fail "lite on an empty directory" "$tmp/empty: not a model directory (no config.json)" \
	"$LMTERM" lite auto_awq "$tmp/empty"

# --rope-scaling-factor F is dynamic NTK RoPE with factor F, as if config.json said so: a copy of the demo model
# with a 16-token context (a), the same with {"type": "dynamic", "factor": 2} in config.json (b); 40 prompt
# tokens. Logits of a with the option = b's, byte for byte; a's without it differ.
for d in a b; do
	mkdir "$tmp/$d"
	for f in "$DEMO"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/$d/"; done
	rm "$tmp/$d/config.json"
done
sed 's/"max_position_embeddings": 2048/"max_position_embeddings": 16/' "$DEMO/config.json" > "$tmp/a/config.json"
sed 's/"rope_scaling": null/"rope_scaling": {"type": "dynamic", "factor": 2.0}/' "$tmp/a/config.json" > "$tmp/b/config.json"
grep -q '"max_position_embeddings": 16' "$tmp/b/config.json" && grep -q dynamic "$tmp/b/config.json" ||
	fail "the test's config edits did not apply"
ids=$(seq 100 139 | tr '\n' ' ')
gen() { "$LMTERM" generate "$@" --ids "$ids" -n 1 --greedy --print-ids --backend cpu > /dev/null 2>>"$tmp/err"; }
gen "$tmp/a" --rope-scaling-factor 2 --dump-logits "$tmp/la.st" && gen "$tmp/b" --dump-logits "$tmp/lb.st" &&
	gen "$tmp/a" --dump-logits "$tmp/l0.st" || fail "generate on the copies: $(cat "$tmp/err")"
cmp -s "$tmp/la.st" "$tmp/lb.st" && pass "--rope-scaling-factor 2: the logits of config.json's dynamic RoPE" ||
	fail "--rope-scaling-factor 2 and config.json's dynamic factor 2 give different logits"
cmp -s "$tmp/la.st" "$tmp/l0.st" && fail "--rope-scaling-factor 2 changed nothing past the 16-token context" ||
	pass "--rope-scaling-factor 2 changes the logits past max_position_embeddings"
# ppl takes it too
p2=$("$LMTERM" ppl "$tmp/a" --file "$TESTDATA/text/wiki.valid.raw" --max-chars 400 --ctx 64 --rope-scaling-factor 2 --backend cpu 2>"$tmp/err" | tail -n 1)
pb=$("$LMTERM" ppl "$tmp/b" --file "$TESTDATA/text/wiki.valid.raw" --max-chars 400 --ctx 64 --backend cpu 2>>"$tmp/err" | tail -n 1)
case "$p2" in "perplexity: "*) [ "$p2" = "$pb" ] && pass "ppl --rope-scaling-factor 2: $p2" ||
	fail "ppl: '$p2' with the option, '$pb' with config.json's" ;;
*) fail "ppl --rope-scaling-factor: '$p2' ($(cat "$tmp/err"))" ;; esac
finish
