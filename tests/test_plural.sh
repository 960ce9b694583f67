#!/bin/sh
# test_plural: a count of 1 is followed by a singular noun ("1 token", not "1 tokens"; P_() in src/i18n.h) in the
# messages users see most: the chat REPL's line after each reply and its start banner, lmterm bench's report, the
# warning of a one-token KV cache, a truncated safetensors file; other counts keep the plural. Under zh_CN.UTF-8
# (Chinese has one form) the same lines are the Chinese ones.
. "${top_srcdir:-.}/tests/lib.sh"
MODEL=$DEMO # greedy, its first reply token to 'Hello' is not the end of the reply
cfg="$TESTDATA/fixtures/llama3-rand/config.json"
tmp=${TMPDIR:-/tmp}/lmterm-plural.$$
mkdir -p "$tmp" || exit 1
trap 'rm -rf "$tmp"' EXIT
# has DESC TEXT STRING: the fixed STRING is in TEXT; no_one_plural DESC TEXT: no count of exactly 1 in TEXT is
# followed by a plural ("1 tokens", "1 layers"; "11 tokens" and the unit "1 tokens/s" are fine)
has() { case "$2" in *"$3"*) pass "$1" ;; *) fail "$1: no '$3' in: $2" ;; esac; }
no_one_plural() {
	if printf '%s\n' "$2" | grep -Eq '(^|[^0-9.])1 (tokens|layers|threads)([^/]|$)'; then fail "$1: $2"; else pass "$1"; fi
}

# the REPL: one token of reply (greedy, --max-new-tokens 1), a prompt of several
chat() { printf 'Hello\n\n' | "$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --max-new-tokens 1 "$@" 2>&1; }
out=$(chat --cache-max-entry-count 4096tok)
has "REPL: a reply of one token" "$out" "(1 token, "
no_one_plural "REPL: no '1 tokens'" "$out"
printf '%s\n' "$out" | grep -Eq 'tokens/s, prompt [0-9]+ tokens in [0-9.]+ s, context [0-9]+\)' &&
	pass "REPL: the prompt's count keeps the plural" || fail "REPL: prompt count: $out"
printf '%s\n' "$out" | grep -Eq 'KV cache 4096 tokens \(policy 0, [0-9]+ bytes/token\), session [0-9]+ tokens, template ' &&
	pass "banner: plural counts" || fail "banner: $out"
# a KV cache of one token: the warning, the banner (the message is then too long for the session)
out=$(chat --cache-block-seq-len 1 --cache-max-entry-count 1tok)
has "a one-token cache: the warning" "$out" "sessions are limited to 1 token: the KV cache holds that many"
has "a one-token cache: the banner" "$out" "KV cache 1 token (policy 0, "
has "a one-token session: the banner" "$out" ", session 1 token, template "
no_one_plural "a one-token cache: no '1 tokens'" "$out"

# bench: one layer, a prompt of one token, one CPU thread
if [ -f "$cfg" ]; then
	sed 's/"num_hidden_layers": *[0-9]*/"num_hidden_layers": 1/' "$cfg" >"$tmp/bench.json"
	out=$(LMTERM_THREADS=1 "$LMTERM" bench "$tmp/bench.json" --dummy --backend cpu --prompt-len 1 -n 4 2>&1) ||
		fail "bench: $out"
	has "bench: one layer" "$out" ": LlamaForCausalLM, 1 layer, dim "
	has "bench: a prompt of one token" "$out" "prefill    1 token in "
	has "bench: one thread" "$out" ", 1 thread (cpu backend)"
	no_one_plural "bench: no '1 tokens'" "$out"
	out=$("$LMTERM" bench "$tmp/bench.json" --dummy --backend cpu --prompt-len 3 -n 4 2>&1)
	has "bench: a prompt of three tokens" "$out" "prefill    3 tokens in "
else
	echo "SKIP: bench: no $cfg"
fi

# a model whose safetensors file is one byte long
mkdir -p "$tmp/m" && cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$tmp/m/" && printf x >"$tmp/m/model.safetensors"
expect_fail "a one-byte safetensors file" "model.safetensors: truncated: 1 byte, too short" \
	"$LMTERM" generate "$tmp/m" --ids 1 -n 1 --backend cpu

# the same lines in Chinese
if zh_ok; then
	mkdir -p "$tmp/locale/zh_CN/LC_MESSAGES"
	msgfmt -o "$tmp/locale/zh_CN/LC_MESSAGES/lmterm.mo" "$top_srcdir/po/zh_CN.po" || fail "msgfmt zh_CN.po"
	zh() { LC_ALL=zh_CN.UTF-8 LANG=zh_CN.UTF-8 LMTERM_LOCALEDIR="$tmp/locale" "$@"; }
	out=$(printf 'Hello\n\n' | zh "$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --max-new-tokens 1 \
		--cache-max-entry-count 4096tok 2>&1)
	has "zh_CN: REPL line" "$out" "（1 个 token，"
	printf '%s\n' "$out" | grep -Eq 'token/秒，提示 [0-9]+ 个 token 用时 [0-9.]+ 秒，上下文 [0-9]+）' &&
		pass "zh_CN: REPL prompt count" || fail "zh_CN: REPL prompt count: $out"
	printf '%s\n' "$out" | grep -Eq 'KV 缓存 4096 个 token（策略 0，每 token [0-9]+ 字节），会话 [0-9]+ 个 token，模板 ' &&
		pass "zh_CN: banner" || fail "zh_CN: banner: $out"
	if [ -f "$tmp/bench.json" ]; then
		out=$(zh "$LMTERM" bench "$tmp/bench.json" --dummy --backend cpu --prompt-len 1 -n 4 2>&1)
		has "zh_CN: bench layers" "$out" "LlamaForCausalLM，1 层，维度 "
		has "zh_CN: bench prefill" "$out" "预填充     1 个 token 用时 "
	fi
	out=$(zh "$LMTERM" generate "$tmp/m" --ids 1 -n 1 --backend cpu 2>&1)
	has "zh_CN: truncated file" "$out" "文件被截断：1 字节，"
else
	echo "$ZH_SKIP"
fi
finish
