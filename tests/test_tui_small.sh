#!/bin/sh
# test_tui_small: the dialogs' key hints at 40x14, in English and in Chinese (two columns a character), against
# tests/tui_fake_engine in tmux. The settings (F2) showed no keys at all there, and at 40x20 cut the Chinese list
# after "Esc：取"; the help's (F1) footer lost "close". Each hint is shown whole, in its short form where the full
# one does not fit, and no line is wider than the terminal. Every settings field shows its label and its value
# whole at 40x14 and 40x20 ("Repetition penalty" was cut to "Repetition pena"). The progress screen's keys too,
# and a status bar message too long for one row, the time left while the model loads, and the settings' error
# for a value that does not parse.
. "${top_srcdir:-.}/tests/lib.sh"
. "${top_srcdir:-.}/tests/tmux.sh"
: "${top_builddir:=.}"
PROG="$top_builddir/tests/tui_fake_engine"
[ -x "$PROG" ] || skip "$PROG is not built"

tmux_setup tui-small

# run LANG READY: the scripted chat at 40x14 in that locale, up to its status bar
run() {
	T new-session -d -s tui -x 40 -y 14 "env LC_ALL=$1 LANG=$1 LMTERM_LOCALEDIR=$tmp/locale LMTERM_HISTFILE= $PROG" ||
		{ fail "$1: tmux did not start"; return 1; }
	T set -g status off
	wait_for_text "$2" 30 || { show "$1: loading"; fail "$1: the chat did not start"; return 1; }
}
# check NAME KEY WAIT-FOR EXPECT...: press KEY, wait for WAIT-FOR, then every EXPECT is on the screen and no line
# is wider than 40 columns; Escape closes the dialog. An EXPECT "LABEL|VALUE" is a settings field: its line
# holds LABEL whole, then VALUE whole (the label was cut to "Repetition pena" at 40 columns)
check() {
	name=$1 key=$2 ready=$3
	shift 3
	T send-keys -t tui $key
	if ! wait_for_text "$ready" 5; then show "$name"; fail "$name: the dialog did not open"; return; fi
	sleep 0.3
	ok=1
	for e in "$@"; do
		case $e in
		*"|"*)
			label=${e%%|*} value=${e#*|}
			line=$(screen | grep -F -- "$label " | head -1)
			case $line in
			*"$label "*" $value "* | *"$label "*" $value") ;;
			*) fail "$name: the field '$label' is not shown whole with its value '$value'"; ok=0 ;;
			esac
			;;
		*) screen | grep -qF -- "$e" || { fail "$name: '$e' is not shown"; ok=0; } ;;
		esac
	done
	w=$(widest)
	[ "$w" -le 40 ] || { fail "$name: a line is $w columns wide"; ok=0; }
	if [ $ok = 1 ]; then pass "$name: the hints are shown whole"; else show "$name"; fi
	T send-keys -t tui Escape
	sleep 0.3
}

# progress LANG KEYS-REGEX: the progress screen (lite auto_awq's) at 40x14; its status bar shows its keys whole, in a
# shorter form where they do not fit (it was cut to "Ctrl-C: stop  F3: memory pa"); Ctrl-C stops the work
progress() {
	T new-session -d -s prog -x 40 -y 14 "env LC_ALL=$1 LANG=$1 LMTERM_LOCALEDIR=$tmp/locale $PROG --progress 300; sleep 30" ||
		{ fail "$1 progress: tmux did not start"; return; }
	n=0
	while [ $n -lt 100 ] && ! T capture-pane -p -t prog | tail -1 | grep -q "Ctrl-C"; do sleep 0.1; n=$((n + 1)); done
	last=$(T capture-pane -p -t prog | tail -1)
	if printf '%s\n' "$last" | grep -Eq -- "$2"; then pass "$1 40x14 progress: the keys are shown whole"
	else T capture-pane -p -t prog | sed 's/^/|/'; fail "$1 40x14 progress: the status bar '$last' does not end in whole keys"; fi
	T send-keys -t prog C-c
	T kill-session -t prog
}

# loading LANG REGEX: the model's load at 40x14 (the scripted engine's, slowed); the progress line keeps the time
# left, dropping the rate first (it was cut to "2 of 5  1.00/s  elapsed 1s  left")
loading() {
	T new-session -d -s load -x 40 -y 14 "env FAKE_SLOW_LOAD=1 LC_ALL=$1 LANG=$1 LMTERM_LOCALEDIR=$tmp/locale $PROG; sleep 30" ||
		{ fail "$1 loading: tmux did not start"; return; }
	n=0
	while [ $n -lt 100 ] && ! T capture-pane -p -t load | grep -q "shard 2"; do sleep 0.1; n=$((n + 1)); done
	if T capture-pane -p -t load | grep -Eq -- "$2"; then pass "$1 40x14 loading: the time left is shown"
	else T capture-pane -p -t load | sed 's/^/|/'; fail "$1 40x14 loading: no time left on the progress line"; fi
	T kill-session -t load
}

# busy NAME LINE...: Enter while a slow reply streams; the status bar's message ("wait: a reply is being
# generated (Ctrl-C stops it)") is shown whole, over as many rows as it needs (it was cut at the edge, "(Ctrl-")
busy() {
	name=$1
	shift
	T send-keys -t tui "Slow reply" Enter
	sleep 0.5
	T send-keys -t tui x Enter
	ok=1
	for l in "$@"; do wait_for_text "$l" 5 || { fail "$name: '$l' is not shown"; ok=0; }; done
	w=$(widest)
	[ "$w" -le 40 ] || { fail "$name: a line is $w columns wide"; ok=0; }
	if [ $ok = 1 ]; then pass "$name: the status bar's message is shown whole"; else show "$name"; fi
	T send-keys -t tui C-c C-u
	wait_for_text "(stopped)" 10 || fail "$name: the reply did not stop"
	T send-keys -t tui C-l # the message goes with the next key
}

# English. F2 then Down Right: the KV policy changed, so the dialog also warns of the rebuild.
if run C.UTF-8 "ctx 0/"; then
	check "40x14 settings" "F2 Down Right" "KV quant policy" "Esc: cancel" "Enter: apply" "less memory per token)" \
		"KV cache size|0.80" "KV quant policy|8 (int8)" "Temperature|0.70" "Top-p|0.90" "Top-k|40" \
		"Repeat penalty|1.10"
	check "40x14 help" F1 "send the message" "Esc: close"
	busy "40x14 busy" "wait: a reply is being generated" "(Ctrl-C stops it)"
	# a value that does not parse: its error whole, with what to type (its end was cut: "nor a size such as ...")
	check "40x14 settings error" "F2 a b c Enter" "is neither" "or 32768tok" "Esc: cancel" "KV cache size|abc_"
	T send-keys -t tui Escape # the check's Escape dropped the typing; this one closes the dialog
	sleep 0.3
	T resize-window -t tui -x 40 -y 20
	sleep 0.5
	check "40x20 settings" "F2 Down Right" "KV quant policy" "Esc: cancel" "the conversation is kept." \
		"KV cache size|0.80" "KV quant policy|8 (int8)" "Temperature|0.70" "Top-p|0.90" "Top-k|40" \
		"Repeat penalty|1.10"
	progress C.UTF-8 "Ctrl-C: stop( +F3: memory( panel)?)? *$"
	loading C.UTF-8 "[0-9] of 5 .*left ([0-9]|--)"
fi

# Chinese
if zh_ok; then
	mkdir -p "$tmp/locale/zh_CN/LC_MESSAGES"
	msgfmt -o "$tmp/locale/zh_CN/LC_MESSAGES/lmterm.mo" "$top_srcdir/po/zh_CN.po"
	T kill-server >/dev/null 2>&1
	tmux_server "lmterm-tui-small-$$-zh" # one server per locale
	if run zh_CN.UTF-8 "上下文 0/"; then
		check "zh_CN 40x14 settings" "F2 Down Right" "KV 量化策略" "Esc：取消" "Enter：应用" "占用更少内存）" \
			"KV 缓存大小|0.80" "KV 量化策略|8 (int8)" "温度|0.70" "Top-p|0.90" "Top-k|40" "重复惩罚|1.10"
		check "zh_CN 40x14 help" F1 "发送消息" "Esc" "：关闭"
		check "zh_CN 40x14 settings error" "F2 a b c Enter" "(0,1) 之间的比例" "32768tok 这样的" "Esc：取消"
		T send-keys -t tui Escape
		sleep 0.3
		T resize-window -t tui -x 40 -y 20
		sleep 0.5
		check "zh_CN 40x20 settings" "F2 Down Right" "KV 量化策略" "Esc：取消" "对话内容会" "保留。" \
			"KV 缓存大小|0.80" "KV 量化策略|8 (int8)" "温度|0.70" "Top-p|0.90" "Top-k|40" "重复惩罚|1.10"
		progress zh_CN.UTF-8 "Ctrl-C：停止( +F3：内存(面板)?)? *$"
		loading zh_CN.UTF-8 "[0-9] / 5 .*剩余 ([0-9]|--)"
	fi
else
	echo "$ZH_SKIP"
fi
finish
