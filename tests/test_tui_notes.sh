#!/bin/sh
# test_tui_notes: the notes of a model's load (here three: a session longer than the model's context, Mistral's
# sliding window, a session that the KV cache cannot hold) in a 40x14 terminal, in English and in Chinese. The
# transcript was anchored at the bottom, so the first note began above the top row and nothing said there was
# more: the notes are now shown from their first line, "N more lines below (PgDn)" where they do not fit, and
# PgDn reaches the last one. A message sent goes back to the bottom, as ever.
. "${top_srcdir:-.}/tests/lib.sh"
. "${top_srcdir:-.}/tests/tmux.sh"
: "${top_builddir:=.}"
[ -x "$LMTERM" ] || skip "$LMTERM is not built"
if "$LMTERM" chat "$DEMO" --backend cpu --no-tui </dev/null 2>&1 | grep -q "not available in this build"; then
	skip "lmterm chat is not available in this build"
fi

tmux_setup tui-notes
# the demo model as a Mistral with a sliding window shorter than any session
mkdir "$tmp/mistral"
for f in "$DEMO"/*; do ln -s "$(cd "$(dirname "$f")" && pwd)/$(basename "$f")" "$tmp/mistral/"; done
rm "$tmp/mistral/config.json"
sed 's/"head_dim"/"sliding_window": 64,\n  "head_dim"/; s/LlamaForCausalLM/MistralForCausalLM/; s/"llama"/"mistral"/' \
	"$DEMO/config.json" >"$tmp/mistral/config.json"
grep -q '"mistral"' "$tmp/mistral/config.json" || { fail "config.json was not edited"; finish; }

# run LANG READY FIRST LAST: the chat at 40x14 in that locale; the top rows are the first note's label and its
# first line, and PgDn shows the end of the last note
run() {
	T new-session -d -s tui -x 40 -y 14 "env LC_ALL=$1 LANG=$1 LMTERM_LOCALEDIR=$tmp/locale LMTERM_HISTFILE= \
		$LMTERM chat $tmp/mistral --backend cpu --session-len 4096 --cache-max-entry-count 1024tok" ||
		{ fail "$1: tmux did not start"; return; }
	T set -g status off
	wait_for_text "$2" 60 || { show "$1: loading"; fail "$1: the chat did not start"; return; }
	sleep 0.3
	if screen | head -2 | tail -1 | grep -qF -- "$3"; then pass "$1: the first note is shown from its first line"
	else show "$1: start"; fail "$1: the first note's first line ('$3') is not on the top rows"; fi
	w=$(widest)
	[ "$w" -le 40 ] || { show "$1: start"; fail "$1: a line is $w columns wide"; }
	n=0
	while [ $n -lt 5 ] && ! screen | grep -qF -- "$4"; do
		T send-keys -t tui NPage
		sleep 0.3
		n=$((n + 1))
	done
	if screen | grep -qF -- "$4"; then pass "$1: PgDn shows the last note's end"
	else show "$1: PgDn"; fail "$1: PgDn does not reach the last note's end ('$4')"; fi
	T send-keys -t tui PPage PPage PPage PPage
	sleep 0.3
	T send-keys -t tui -l "hi"
	T send-keys -t tui Enter
	if wait_for "^>[ ]+hi" 30 && wait_for_text "$4" 1; then :; fi
	if screen | grep -q "^>[ ]*hi"; then pass "$1: a message sent is shown at the bottom"
	else show "$1: sent"; fail "$1: the message sent is not in view"; fi
	T kill-server >/dev/null 2>&1
}

run C.UTF-8 "ctx 0/" "--session-len 4096 is longer than the" "limited to 1024 tokens."
if zh_ok; then
	mkdir -p "$tmp/locale/zh_CN/LC_MESSAGES"
	msgfmt -o "$tmp/locale/zh_CN/LC_MESSAGES/lmterm.mo" "$top_srcdir/po/zh_CN.po"
	tmux_server "lmterm-tui-notes-$$-zh" # a new session just after kill-server can meet the old server
	run zh_CN.UTF-8 "上下文 0/" "--session-len 4096 超过模型的上下文" "会话限制为 1024 个 token。"
else
	echo "$ZH_SKIP"
fi
finish
