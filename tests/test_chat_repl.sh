#!/bin/sh
# lmterm chat as a REPL through a pipe (stdin and stdout not terminals: the REPL is chosen by itself):
# two turns, `end`, a turn in the new session, `exit`; EOF quits cleanly; special tokens never shown;
# /save writes the conversation as Markdown (the default name, a name with spaces, ~/, never over a file);
# bad options get one clear message. The pseudo-terminal half (Ctrl-C) is tests/test_chat_pty.py.
. "${top_srcdir:-.}/tests/lib.sh"
MODEL=${TEST_MODEL:-$DEMO}
PROMPT='double enter to end input >>> '
OPTS="--backend cpu --temperature 0 --max-new-tokens 40 --cache-max-entry-count 4096tok"

out=$(printf 'Continue the story: It was a dark and stormy night.\n\nAnd then?\n\nend\n\nHello\nwho are you?\n\nexit\n\n' |
	"$LMTERM" chat "$MODEL" $OPTS 2>/tmp/lmterm-repl-err.$$)
rc=$?
err=$(cat /tmp/lmterm-repl-err.$$); rm -f /tmp/lmterm-repl-err.$$
printf '%s\n' "$out"
[ $rc -eq 0 ] && pass "exit status 0 after 'exit'" || fail "exit status $rc; stderr: $err"
n_prompt=$(printf '%s\n' "$out" | grep -o "$PROMPT" | wc -l)
[ "$n_prompt" -eq 5 ] && pass "5 prompts" || fail "$n_prompt prompts, want 5"
n_stats=$(printf '%s\n' "$out" | grep -c 'tokens/s')
[ "$n_stats" -eq 3 ] && pass "3 replies with a tokens/s line" || fail "$n_stats tokens/s lines, want 3"
printf '%s\n' "$out" | grep -q '(new session)' && pass "'end' starts a new session" || fail "no new session after 'end'"
# the context grows over the first two turns, and starts again after 'end'
ctx=$(printf '%s\n' "$out" | sed -n 's/.*context \([0-9]*\)).*/\1/p' | tr '\n' ' ')
set -- $ctx
if [ $# -eq 3 ] && [ "$2" -gt "$1" ] && [ "$3" -lt "$2" ]; then pass "context $1 -> $2, then $3 after 'end'"
else fail "contexts: $ctx"; fi
case "$out" in *'<|im_'*|*'</s>'*) fail "a special token was shown" ;; *) pass "no special tokens shown" ;; esac

# /save: the conversation so far as Markdown, in the current directory by default; a name with spaces; never
# over an existing file; ~/ is HOME; after 'end' there is nothing to save; nothing left behind
sdir=$(mktemp -d "${TMPDIR:-/tmp}/lmterm-save.XXXXXX")
mkdir "$sdir/home" "$sdir/cwd"
abs_lmterm=$(cd "$(dirname "$LMTERM")" && pwd)/$(basename "$LMTERM")
abs_model=$(cd "$MODEL" && pwd)
out=$(cd "$sdir/cwd" && printf 'Hello\nthere\n\n/save\n\n/save my notes.md\n\nAnd again?\n\n/save my notes.md\n\n/save ~/saved.md\n\n/save ~\n\n/save %s\n\nend\n\n/save\n\nexit\n\n' \
	"$sdir/no such dir/x.md" | HOME="$sdir/home" "$abs_lmterm" chat "$abs_model" $OPTS 2>&1); rc=$?
printf '%s\n' "$out"
[ $rc -eq 0 ] && pass "/save: exit status 0" || fail "/save: exit status $rc"
n_stats=$(printf '%s\n' "$out" | grep -c 'tokens/s')
[ "$n_stats" -eq 2 ] && pass "/save is not sent to the model (2 replies)" || fail "$n_stats replies, want 2"
dflt=$(printf '%s\n' "$out" | sed -n 's/.*lmterm: saved 2 messages to \(lmterm-chat-[0-9]\{8\}-[0-9]\{6\}\.md\)$/\1/p')
if [ -n "$dflt" ] && [ -f "$sdir/cwd/$dflt" ]; then pass "/save: the default name $dflt in the current directory"
else fail "/save without a name: no lmterm-chat-YYYYMMDD-HHMMSS.md"; fi
f="$sdir/cwd/my notes.md"
if [ -f "$f" ] && [ "$(head -1 "$f")" = "# lmterm chat" ] && grep -qx -- "- Model: tiny-en-zh" "$f" &&
	grep -Eq -- "^- Date: [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}$" "$f" &&
	[ "$(grep '^## ' "$f" | tr '\n' ,)" = "## User,## Assistant," ] &&
	[ "$(sed -n '/^## User$/,/^## Assistant$/p' "$f")" = "$(printf '## User\n\nHello\nthere\n\n## Assistant')" ]; then
	pass "/save my notes.md: the header, the two-line message verbatim, the reply"
else fail "/save my notes.md:"; cat "$f"; fi
# the reply in the file is the one printed (its first line)
first=$(sed -n '/^## Assistant$/,$p' "$f" | sed '1,2d' | head -1)
[ -n "$first" ] && printf '%s\n' "$out" | grep -qF -- "$first" && pass "/save: the reply as it was printed" ||
	fail "/save: the reply's first line '$first' was not printed"
printf '%s\n' "$out" | grep -qF "lmterm: my notes.md exists (not overwritten); try /save my notes-1.md" &&
	[ "$(grep -c '^## ' "$f")" -eq 2 ] && pass "/save does not overwrite a file, and suggests another name" ||
	fail "/save over an existing file: no refusal, or the file changed"
if printf '%s\n' "$out" | grep -qF "lmterm: saved 4 messages to $sdir/home/saved.md" && [ "$(grep -c '^## ' "$sdir/home/saved.md")" -eq 4 ]; then
	pass "/save ~/FILE: in HOME, the whole conversation"
else fail "/save ~/saved.md: not in HOME, or not 4 messages"; fi
ls "$sdir/home"/lmterm-chat-*.md >/dev/null 2>&1 && pass "/save ~: the default name in HOME" ||
	fail "/save ~: no lmterm-chat-YYYYMMDD-HHMMSS.md in HOME"
printf '%s\n' "$out" | grep -qF "lmterm: cannot save to $sdir/no such dir/x.md: No such file or directory" &&
	pass "/save to a missing directory: the error" || fail "/save to a missing directory: no error"
printf '%s\n' "$out" | grep -qF "lmterm: nothing to save yet: the conversation is empty" &&
	pass "/save after 'end': nothing to save" || fail "/save after 'end': no 'nothing to save'"
left=$(cd "$sdir" && find . -name '*.tmp' -o -name '.lmterm-save*')
[ -z "$left" ] && pass "/save leaves no temporary file" || fail "/save left $left"
rm -rf "$sdir"
# a reply cut short by the session's end is saved as incomplete (it was saved as a whole reply, unmarked)
sdir=$(mktemp -d "${TMPDIR:-/tmp}/lmterm-save.XXXXXX")
out=$(cd "$sdir" && printf 'Tell me a long story about cats\n\n/save cut.md\n\n' |
	"$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --session-len 40 2>&1)
if printf '%s\n' "$out" | grep -q "the session is full" && [ "$(grep '^## ' "$sdir/cut.md" | tail -1)" = "## Assistant (incomplete)" ]; then
	pass "/save: a reply cut short by the session's end is marked incomplete"
else fail "/save after the session filled up: the reply is not marked incomplete:"; printf '%s\n' "$out"; cat "$sdir/cut.md"; fi
rm -rf "$sdir"

# EOF without 'exit': the pending input is answered, then a clean exit
out=$(printf 'Hello' | "$LMTERM" chat "$MODEL" $OPTS 2>/dev/null); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'tokens/s' && pass "EOF after unterminated input: answered, exit 0" ||
	fail "EOF after input: rc $rc, output: $out"
out=$("$LMTERM" chat "$MODEL" $OPTS </dev/null 2>/dev/null); rc=$?
[ $rc -eq 0 ] && pass "EOF at the prompt: exit 0" || fail "EOF at the prompt: rc $rc"

# a closed stdin is an empty one (it used to leave fd 0 to the REPL's signal pipe, which it then waited on for ever)
timeout 60 "$LMTERM" chat "$MODEL" $OPTS <&- >/dev/null 2>&1; rc=$?
[ $rc -eq 0 ] && pass "closed stdin: exit 0" || fail "closed stdin: rc $rc (124: it hung)"
# stdin that cannot be read (a directory) is an error, not the end of the input (exit 0 with no word)
expect_fail "stdin a directory" "cannot read standard input: Is a directory" \
	sh -c 'timeout 60 "$0" chat "$1" --backend cpu </' "$LMTERM" "$MODEL"
# a closed stdout: the replies went nowhere, so not a success
printf 'Hello\n\n' | timeout 60 "$LMTERM" chat "$MODEL" $OPTS >&- 2>/dev/null; rc=$?
[ $rc -eq 1 ] && pass "closed stdout: exit 1" || fail "closed stdout: rc $rc"
# a reader that goes away while SIGPIPE is ignored (as under Python's subprocess): the reply stops at the failed
# write and the REPL ends with a message; it went on to the end of the session (here 32768 tokens, minutes)
err=/tmp/lmterm-repl-pipe.$$
(trap '' PIPE; printf 'Hello\n\nAgain\n\n' | timeout 30 "$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --chat-template base \
	--session-len 32768 --cache-max-entry-count 32768tok 2>"$err"; echo $? >"$err.rc") | head -c 1 >/dev/null
if [ "$(cat "$err.rc")" = 1 ] && grep -q "cannot write to standard output: Broken pipe" "$err"; then
	pass "the reader gone: the reply stops, exit 1"
else fail "the reader gone: exit $(cat "$err.rc") (124: it wrote on): $(cat "$err")"; fi
rm -f "$err" "$err.rc"

# a full session: the engine's message names no key, the REPL says how to start a new session here ('end');
# a message no session could hold is called too long, with no new session suggested
out=$(printf 'Tell me a long story about a dragon and a knight.\n\nGo on.\n\nGo on.\n\nGo on.\n\n' |
	"$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --max-new-tokens 40 --session-len 64 2>&1)
printf '%s\n' "$out" | grep -q "the session is full" && printf '%s\n' "$out" | grep -q "type 'end' for a new session" &&
	pass "a full session points at 'end'" || fail "a full session: no hint about 'end': $out"
long=$(yes word | head -100 | tr '\n' ' ')
out=$(printf '%s\n\n' "$long" | "$LMTERM" chat "$MODEL" --backend cpu --session-len 64 2>&1)
if printf '%s\n' "$out" | grep -q "too long" && ! printf '%s\n' "$out" | grep -q "new session"; then
	pass "a message longer than the session is called too long"
else fail "a message longer than the session: $out"; fi
# a line of more bytes than one message to the engine holds, none of them starting a UTF-8 character (only
# continuation bytes): it is sent in pieces all the same (the splitter found no character boundary and sent
# empty pieces for ever)
out=$( (head -c 1500 /dev/zero | tr '\0' '\200'; printf '\n\nexit\n\n') | timeout 60 "$LMTERM" chat "$MODEL" $OPTS 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'tokens/s' && pass "a long line that is not UTF-8: answered, exit 0" ||
	fail "a long line that is not UTF-8: rc $rc (124: it hung): $out"

# control characters in a line are dropped and the rest kept, as the chat screen's editor does: a NUL cut the line
# there (the model never saw " world"), an ESC went to the model
ptoks() { printf "$1" | "$LMTERM" chat "$MODEL" --backend cpu --temperature 0 --max-new-tokens 1 2>&1 | sed -n 's/.*prompt \([0-9]*\) token.*/\1/p'; }
want=$(ptoks 'Hello world\n')
for c in "a NUL:Hello\\000 world" "a NUL first:\\000Hello world" "an ESC and a CR:Hello\\033 world\\r"; do
	got=$(ptoks "${c#*:}\\n")
	[ -n "$want" ] && [ "$got" = "$want" ] && pass "${c%%:*} in a line: dropped, the rest kept" ||
		fail "${c%%:*} in a line: a prompt of '$got' tokens, want '$want'"
done

# "lmterm [chat] [MODEL] [OPTIONS]": without the word chat, a model directory or options first are chat's
out=$(printf 'Hello\n\n' | "$LMTERM" "$MODEL" $OPTS 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'tokens/s' && pass "lmterm MODEL is lmterm chat MODEL" ||
	fail "lmterm MODEL: rc $rc: $out"
out=$(printf 'Hello\n\n' | LMTERM_DEMO_MODEL="$MODEL" "$LMTERM" --no-tui $OPTS 2>&1); rc=$?
[ $rc -eq 0 ] && printf '%s\n' "$out" | grep -q 'tokens/s' && pass "lmterm --no-tui is lmterm chat --no-tui" ||
	fail "lmterm --no-tui: rc $rc: $out"
# a demo model path that is no model: the message names the variable it came from (it named only the path)
expect_fail "LMTERM_DEMO_MODEL not a model" "LMTERM_DEMO_MODEL=/nonexistent-demo: not a model directory" \
	env LMTERM_DEMO_MODEL=/nonexistent-demo "$LMTERM" chat --no-tui
expect_usage "lmterm --frobnicate is chat's unknown option" "chat: unknown option '--frobnicate'" "$LMTERM" --frobnicate
expect_usage "lmterm WORD that is no command nor directory" "unknown command 'nonesuch-cmd'" "$LMTERM" nonesuch-cmd

expect_fail "bad --quant-policy" "--quant-policy" "$LMTERM" chat "$MODEL" --quant-policy 2
expect_fail "bad --cache-max-entry-count" "--cache-max-entry-count" "$LMTERM" chat "$MODEL" --cache-max-entry-count 1.5
expect_fail "bad --top-p" "--top-p" "$LMTERM" chat "$MODEL" --top-p 2
expect_usage "bad --backend" "unknown backend 'gpu'" "$LMTERM" chat "$MODEL" --backend gpu
expect_usage "--tp 2" "--tp 2: lmterm runs a model on one GPU" "$LMTERM" chat "$MODEL" --tp 2
# LMDeploy's engine names and --tp 1, as its tutorials write them: the chat runs
out=$(echo | "$LMTERM" chat "$MODEL" --backend turbomind --tp 1 2>&1)
case "$out" in *"tiny-en-zh: "*"session"*) pass "--backend turbomind --tp 1" ;; *) fail "--backend turbomind --tp 1: $out" ;; esac
expect_fail "bad --no-tui value" "--no-tui" "$LMTERM" chat "$MODEL" --no-tui=maybe
expect_fail "unknown option" "--frobnicate" "$LMTERM" chat "$MODEL" --frobnicate
expect_fail "unknown option last, no value" "unknown option '--frobnicate'" "$LMTERM" chat "$MODEL" --cache-block-seq-len 64 --frobnicate
# the option parser alone decides: an unknown option given last is unknown (not "needs a value"), a known one
# given last without its value needs one; both are usage errors (exit 2)
expect_usage "unknown option last" "lmterm: chat: unknown option '--frobnicate'" "$LMTERM" chat "$MODEL" --frobnicate
expect_usage "unknown option last, after a flag" "lmterm: chat: unknown option '--frobnicate'" \
	"$LMTERM" chat "$MODEL" --no-tui --frobnicate
expect_usage "unknown short option last" "lmterm: chat: unknown option '-x'" "$LMTERM" chat "$MODEL" --seed 1 -x
expect_usage "--seed last" "lmterm: option '--seed' needs a value" "$LMTERM" chat "$MODEL" --seed
expect_usage "--chat-template last" "lmterm: option '--chat-template' needs a value" \
	"$LMTERM" chat "$MODEL" --backend cpu --chat-template
expect_usage "--session_len last" "lmterm: option '--session_len' needs a value" "$LMTERM" chat "$MODEL" --session_len
# LMDeploy's Python spelling names the same option
expect_fail "--session_len is --session-len" "--session-len: 1 is out of range" "$LMTERM" chat "$MODEL" --session_len 1
expect_fail "a size beyond uint64" "too large" "$LMTERM" chat "$MODEL" --cache-max-entry-count 1e300GiB
expect_fail "not a model directory" "/nonexistent-model" "$LMTERM" chat /nonexistent-model
expect_fail "unknown template" "nonesuch" sh -c "echo | '$LMTERM' chat '$MODEL' --backend cpu --chat-template nonesuch"
expect_fail "missing template file" "cannot open" sh -c "echo | '$LMTERM' chat '$MODEL' --backend cpu --chat-template /nonexistent/t.json"
# a tokenizer_config.json that is not valid JSON: its chat template was lost without a word (the built-in 'base'
# was used); now a message naming the file, and --chat-template still works
bad=/tmp/lmterm-repl-tc.$$
mkdir -p "$bad" && cp "$MODEL"/* "$bad/" && printf '{"chat_template": "{{ x }}",\n' > "$bad/tokenizer_config.json"
expect_fail "tokenizer_config.json not valid JSON" "$bad/tokenizer_config.json: not valid JSON" \
	sh -c "echo | '$LMTERM' chat '$bad' --backend cpu"
out=$(printf 'hi\n\n' | "$LMTERM" chat "$bad" $OPTS --chat-template chatml 2>&1) &&
	pass "tokenizer_config.json not valid JSON: --chat-template chatml still chats" || fail "--chat-template chatml: $out"
rm -rf "$bad"
expect_fail "cache too small" "block" sh -c "echo | '$LMTERM' chat '$MODEL' --backend cpu --cache-max-entry-count 100B"
# a cache smaller than the session: said before the model's line (it came after the first reply, or never); it
# names --session-len only where that was given
out=$(echo | "$LMTERM" chat "$MODEL" --backend cpu --cache-max-entry-count 256tok 2>&1)
case "$out" in
*"--session-len"*) fail "a small cache without --session-len: $out" ;;
"lmterm: sessions are limited to 256 tokens: the KV cache holds that many"*"session 256 tokens"*) pass "a small cache: a word on the session length first" ;;
*) fail "a small cache: $out" ;;
esac
out=$(echo | "$LMTERM" chat "$MODEL" --backend cpu --cache-max-entry-count 256tok --session-len 1024 2>&1)
case "$out" in
"lmterm: --session-len 1024 does not fit: the KV cache holds 256 tokens"*"Sessions are limited to 256 tokens."*)
	pass "--session-len larger than the cache: said first" ;;
*) fail "--session-len larger than the cache: $out" ;;
esac
# a session longer than the model's context (max_position_embeddings 2048, no dynamic RoPE): a note, and the
# session is as long as asked; at the model's length no note
out=$(echo | "$LMTERM" chat "$MODEL" --backend cpu --session-len 4096 2>&1)
case "$out" in
"lmterm: --session-len 4096 is longer than the model's context of 2048 tokens"*"session 4096 tokens"*)
	pass "--session-len beyond max_position_embeddings: a note first" ;;
*) fail "--session-len beyond max_position_embeddings: $out" ;;
esac
out=$(echo | "$LMTERM" chat "$MODEL" --backend cpu --session-len 2048 2>&1)
case "$out" in
*"longer than the model"*) fail "--session-len at max_position_embeddings: $out" ;;
*"session 2048 tokens"*) pass "--session-len at max_position_embeddings: no note" ;;
*) fail "--session-len 2048: $out" ;;
esac
# generation_config.json's unusable values are named, not silently replaced; the rest of the file still counts
gdir=${TMPDIR:-/tmp}/lmterm-repl-gen.$$
mkdir -p "$gdir" && cp "$MODEL"/* "$gdir"/ &&
	printf '{"eos_token_id": [2, 4], "temperature": "0.7", "top_p": 90, "top_k": 40}\n' >"$gdir/generation_config.json"
out=$(echo | "$LMTERM" chat "$gdir" --backend cpu 2>&1)
case "$out" in
"lmterm: $gdir/generation_config.json: ignored temperature \"0.7\" (not a number), top_p 90 (must be (0, 1])"*"session"*)
	pass "generation_config.json: bad values named before the model's line" ;;
*) fail "generation_config.json's bad values: $out" ;;
esac
# in Chinese the list reads with a Chinese comma (it was an English ", " between translated items)
if zh_ok; then
	mkdir -p "$gdir/locale/zh_CN/LC_MESSAGES" &&
		msgfmt -o "$gdir/locale/zh_CN/LC_MESSAGES/lmterm.mo" "$top_srcdir/po/zh_CN.po" || fail "msgfmt zh_CN.po"
	out=$(echo | LC_ALL=zh_CN.UTF-8 LMTERM_LOCALEDIR="$gdir/locale" "$LMTERM" chat "$gdir" --backend cpu 2>&1)
	case "$out" in
	*'已忽略 temperature "0.7"（不是数字），top_p 90'*) pass "zh_CN: the ignored values, listed with a Chinese comma" ;;
	*) fail "zh_CN: generation_config note: $out" ;;
	esac
fi
rm -rf "$gdir"
finish
