#!/bin/sh
# LMDeploy's engine options where they act, on the cuda backend (skips without a GPU): --eager-mode runs the
# decode steps op by op, and must give the graph's tokens and logits bit for bit; --dtype float16 on a bf16
# model converts the weights at load and computes in fp16: other logits, the same first greedy tokens as bf16.
. "${top_srcdir:-.}/tests/lib.sh"
M="$TESTDATA/fixtures/llama3-rand"
[ -f "$M/config.json" ] || skip "fixture llama3-rand missing"
grep -q '"dtype": "bfloat16"' "$M/config.json" || skip "llama3-rand is no longer bf16: this test needs a bf16 model"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
"$LMTERM" generate "$M" --ids "1 2 3" -n 2 --greedy --print-ids --backend cuda > /dev/null 2> "$tmp/err" ||
	skip "no usable GPU: $(head -c 200 "$tmp/err")"
ids="1 17 255 3000 42 7 99 1024"
gen() { "$LMTERM" generate "$M" --ids "$ids" -n 24 --greedy --print-ids --backend cuda "$@" 2>>"$tmp/err"; }
g=$(gen) && e=$(gen --eager-mode) && h=$(gen --dtype float16) || fail "generate: $(cat "$tmp/err")"
[ -n "$g" ] && [ "$g" = "$e" ] && pass "--eager-mode: the graph's 24 greedy tokens" ||
	fail "--eager-mode: '$e' against the graph's '$g'"
[ "$(echo "$h" | cut -d' ' -f1-4)" = "$(echo "$g" | cut -d' ' -f1-4)" ] &&
	pass "--dtype float16: the first 4 greedy tokens of bf16 ($h)" || fail "--dtype float16: '$h', bf16 '$g'"
gen -n 1 --dump-logits "$tmp/bf.st" > /dev/null && gen -n 1 --dtype float16 --dump-logits "$tmp/f16.st" > /dev/null ||
	fail "--dump-logits: $(cat "$tmp/err")"
cmp -s "$tmp/bf.st" "$tmp/f16.st" && fail "--dtype float16 gave bf16's logits: the option did nothing" ||
	pass "--dtype float16: logits other than bf16's"
finish
