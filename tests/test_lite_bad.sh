#!/bin/sh
# test_lite_bad: `lmterm lite auto_awq` on bad input: one clear message, exit 1 (2 for usage), and nothing
# left behind (neither the work dir nor its temporary sibling). Also Ctrl-C in the middle of a run.
. "${top_srcdir:-.}/tests/lib.sh"
FIX="$TESTDATA/fixtures"
[ -d "$FIX/llama3-rand" ] || skip "no test data"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
out="$tmp/out"
export LMTERM_DATA="$tmp/nodata" XDG_CACHE_HOME="$tmp/nocache"

nothing_left() { # DESC: neither the work dir nor a temporary one exists
	if [ -e "$out" ] || ls -d "$out".tmp-* >/dev/null 2>&1; then fail "$1: left files behind"; rm -rf "$out" "$out".tmp-*; fi
}
expect_rc() { # DESC RC PATTERN CMD...: exit status RC and PATTERN in the message
	d=$1 want=$2 pat=$3; shift 3
	msg=$("$@" 2>&1 >/dev/null); rc=$?
	if [ $rc -ne "$want" ]; then fail "$d: exit $rc, expected $want ($msg)"
	else case "$msg" in *"$pat"*) pass "$d" ;; *) fail "$d: message '$msg' lacks '$pat'" ;; esac; fi
	nothing_left "$d"
}
awq() { "$LMTERM" lite auto_awq "$@"; }

expect_rc "already quantized" 1 "already quantized" awq "$FIX/llama3-rand-awq" --work-dir "$out" --calib-samples 0

mkdir -p "$tmp/gpt2" && cp "$FIX/llama3-rand/"* "$tmp/gpt2/"
sed 's/LlamaForCausalLM/GPT2LMHeadModel/' "$FIX/llama3-rand/config.json" > "$tmp/gpt2/config.json"
expect_rc "unsupported architecture" 1 "GPT2LMHeadModel" awq "$tmp/gpt2" --work-dir "$out" --calib-samples 0
# a config.json that is not valid JSON: where it breaks, as the other commands say ("not a JSON object" did not)
mkdir -p "$tmp/badjson" && cp "$FIX/llama3-rand/"* "$tmp/badjson/" && printf '{"architectures": [' > "$tmp/badjson/config.json"
expect_rc "config.json not valid JSON" 1 "badjson/config.json: not valid JSON (near byte" awq "$tmp/badjson" \
	--work-dir "$out" --calib-samples 0

# tensors outside the layers are copied as they are: one that disagrees with config.json is refused up front
# (round-to-nearest used to write a result that no loader accepts, and exit 0)
mkdir -p "$tmp/v4096" && cp "$FIX/llama3-rand/"* "$tmp/v4096/"
sed 's/"vocab_size": 8192/"vocab_size": 4096/' "$FIX/llama3-rand/config.json" > "$tmp/v4096/config.json"
expect_rc "embeddings disagree with vocab_size" 1 "model.embed_tokens.weight" awq "$tmp/v4096" --work-dir "$out" --calib-samples 0

expect_rc "group size does not divide" 1 "does not divide" awq "$FIX/llama3-rand" --work-dir "$out" \
	--w-group-size 256 --calib-samples 0
# sizes whose result lmterm's cpu backend could not load (it wrote them, exit 0)
expect_rc "group size 1" 2 "multiple of 16" awq "$FIX/llama3-rand" --work-dir "$out" --w-group-size 1 --calib-samples 0
expect_rc "group size 8" 2 "multiple of 16" awq "$FIX/llama3-rand" --work-dir "$out" --w-group-size 8 --calib-samples 0
expect_rc "w-bits 8" 2 "4-bit" awq "$FIX/llama3-rand" --work-dir "$out" --w-bits 8
expect_rc "missing named dataset" 1 "ptb.train.txt" awq "$FIX/llama3-rand" --work-dir "$out"
expect_rc "missing dataset says where" 1 "$tmp/nocache/lmterm/datasets" awq "$FIX/llama3-rand" --work-dir "$out"
expect_rc "missing dataset file" 1 "nosuch.txt" awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$tmp/nosuch.txt"

printf 'just a few words of text\n' > "$tmp/short.txt"
expect_rc "dataset too short" 1 "too short" awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$tmp/short.txt" \
	--calib-samples 4 --calib-seqlen 64
printf '{"text": "fine"}\n{"txt": 1}\n' > "$tmp/bad.jsonl"
expect_rc "jsonl without text" 1 "bad.jsonl:2" awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$tmp/bad.jsonl" \
	--calib-samples 1 --calib-seqlen 4
# two records run together on one line: the second was dropped without a word (json.loads: 'Extra data')
printf '{"text": "fine"}\r\n{"text": "one"}{"text": "two"}\n' > "$tmp/two.jsonl"
expect_rc "jsonl: two records on a line" 1 "two.jsonl:2" awq "$FIX/llama3-rand" --work-dir "$out" \
	--calib-dataset "$tmp/two.jsonl" --calib-samples 1 --calib-seqlen 4
# a NUL ("\u0000") in a record's text is read as a space and the rest of the text is used (the text was cut
# there: "0 tokens, too short")
printf '{"text": "\\u0000The rest of this record is plain text, long enough for one window of sixteen tokens."}\n' > "$tmp/nul.jsonl"
if msg=$(awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$tmp/nul.jsonl" --calib-samples 1 --calib-seqlen 16 \
	2>&1 >/dev/null) && [ -f "$out/config.json" ]; then pass "jsonl: the text after a NUL is used"
else fail "jsonl: a NUL in the text: $msg"; fi
rm -rf "$out" "$out".tmp-*

: > "$tmp/afile"
out_save=$out; out="$tmp/afile/out"
expect_rc "unwritable work dir" 1 "afile/out" awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0
out=$out_save
mkdir -p "$out" && : > "$out/keep"
msg=$(awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0 2>&1 >/dev/null); rc=$?
if [ $rc -eq 1 ] && [ -f "$out/keep" ] && ! ls -d "$out".tmp-* >/dev/null 2>&1; then pass "non-empty work dir refused"
else fail "non-empty work dir: rc $rc, $msg"; fi
rm -rf "$out"

# names that cannot be renamed onto: refused before the work, not after it (nor a ".tmp-*" left in the cwd)
expect_rc "empty work dir" 1 "name the directory" awq "$FIX/llama3-rand" --work-dir "" --calib-samples 0
ls -d .tmp-* >/dev/null 2>&1 && { fail "empty work dir: left .tmp-* in $(pwd)"; rm -rf .tmp-*; }
expect_rc "work dir ." 1 "name the directory" awq "$FIX/llama3-rand" --work-dir "$tmp/." --calib-samples 0

# a symbolic link to an empty directory: the result goes there (renaming onto the link failed after the whole
# run: 'cannot rename ... Not a directory'); a link to nothing is refused before the work
mkdir "$tmp/target" && ln -s target "$tmp/link"
if msg=$(awq "$FIX/llama3-rand" --work-dir "$tmp/link/" --calib-samples 0 2>&1 >/dev/null) && [ -L "$tmp/link" ] &&
   [ -f "$tmp/target/config.json" ] && ! ls -d "$tmp"/*.tmp-* >/dev/null 2>&1; then pass "work dir: a link to an empty directory"
else fail "work dir: a link to an empty directory: $msg"; fi
rm -rf "$tmp/target" "$tmp/link"
ln -s nowhere "$tmp/link"
out_save=$out; out="$tmp/link"
expect_rc "work dir: a link to nothing" 1 "symbolic link" awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0
out=$out_save
ls -d "$tmp"/*.tmp-* >/dev/null 2>&1 && fail "work dir: a link to nothing: left $(ls -d "$tmp"/*.tmp-*)"
rm -f "$tmp/link"

# a full disk: a 200 KiB tmpfs, mounted in a user and mount namespace of lmterm's own where the system lets an
# unprivileged user have one (unshare -rm), else not tested. The message names the work dir given and the
# cause; it named the file in the temporary directory, already removed by then
mkdir "$tmp/small"
if unshare -rm sh -c 'mount -t tmpfs -o size=200k tmpfs "$1"' sh "$tmp/small" 2>/dev/null; then
	msg=$(unshare -rm sh -c 'mount -t tmpfs -o size=200k tmpfs "$1" || exit 99
		"$2" lite auto_awq "$3" --work-dir "$1/out" --calib-samples 0 2>&1 >/dev/null; echo "rc $?"; ls -A "$1"' \
		sh "$tmp/small" "$LMTERM" "$FIX/llama3-rand")
	case "$msg" in
	*"--work-dir $tmp/small/out: cannot write model-0000"*"No space left on device; nothing was left behind"*)
		case "$msg" in
		*.tmp-*) fail "full disk: the message names the temporary directory: $msg" ;;
		*"rc 1") pass "full disk: the work dir and the cause named, nothing left" ;;
		*) fail "full disk: not exit 1 with nothing left: $msg" ;;
		esac ;;
	*) fail "full disk: $msg" ;;
	esac
else echo "not tested: a full disk (no tmpfs can be mounted in a user namespace here)"; fi

expect_rc "bad boolean" 2 "not a boolean" awq "$FIX/llama3-rand" --work-dir "$out" --search-scale maybe
expect_rc "bad integer" 2 "--calib-samples" awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples -3
expect_rc "unknown option" 2 "--frobnicate" awq "$FIX/llama3-rand" --work-dir "$out" --frobnicate
expect_rc "bad dtype" 2 "--dtype" awq "$FIX/llama3-rand" --work-dir "$out" --dtype float8
# a search asked for with no calibration windows (it wrote a plain round-to-nearest model, exit 0)
expect_rc "--search-scale without calibration" 2 "--search-scale needs calibration data" \
	awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0 --search-scale
expect_rc "--search-clip without calibration" 2 "--search-clip needs calibration data" \
	awq "$FIX/llama3-rand" --work-dir "$out" --search-clip true --calib-samples 0
expect_rc "bad backend" 2 "unknown backend 'gpu'" awq "$FIX/llama3-rand" --work-dir "$out" --backend gpu
expect_rc "missing model" 1 "nomodel" awq "$tmp/nomodel" --work-dir "$out" --calib-samples 0

# "--search-scale False" is false and a following option still parses; RTN of the fixture succeeds
if awq "$FIX/llama3-rand" --search-scale False --work-dir "$out" --calib-samples 0 2>/dev/null &&
   [ -f "$out/config.json" ] && [ -f "$out/model.safetensors.index.json" ]; then pass "--search-scale False parses"
else fail "--search-scale False run"; fi
rm -rf "$out"

# the progress lines on stderr give no time left before an item has finished (they said "0s left"), then do
msg=$(awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0 2>&1 >/dev/null)
if printf '%s\n' "$msg" | grep ' 0/[0-9]' | grep -q 'left'; then fail "progress: time left before any item finished: $msg"
elif ! printf '%s\n' "$msg" | grep ' 1/[0-9]' | grep -q 's left'; then fail "progress: no time left after an item: $msg"
else pass "progress: time left only once an item has finished"; fi
rm -rf "$out"

# Ctrl-C in the middle of calibration: exit non-zero, nothing left
# (started directly, not through the awq function: a signal to a subshell would not reach lmterm)
"$LMTERM" lite auto_awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$TESTDATA/text/wiki.test.raw" \
	--calib-samples 64 --calib-seqlen 1024 --search-scale --threads 1 2>"$tmp/int.log" &
pid=$!
sleep 2
kill -INT $pid
wait $pid; rc=$?
if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q interrupted "$tmp/int.log"; then pass "Ctrl-C stops cleanly (rc $rc)"
elif [ $rc -eq 0 ]; then fail "Ctrl-C: the run finished before the signal (make it longer)"
else fail "Ctrl-C: rc $rc: $(tail -c 300 "$tmp/int.log")"; fi
nothing_left "Ctrl-C"

# SIGTERM and SIGHUP stop it the same way (they used to kill it and leave the half-written directory)
for sig in TERM HUP; do
	"$LMTERM" lite auto_awq "$FIX/llama3-rand" --work-dir "$out" --calib-dataset "$TESTDATA/text/wiki.test.raw" \
		--calib-samples 64 --calib-seqlen 1024 --search-scale --threads 1 2>"$tmp/int.log" &
	pid=$!
	sleep 2
	kill -$sig $pid
	wait $pid; rc=$?
	if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q interrupted "$tmp/int.log"; then pass "SIG$sig stops cleanly (rc $rc)"
	else fail "SIG$sig: rc $rc: $(tail -c 300 "$tmp/int.log")"; fi
	nothing_left "SIG$sig"
done

# The same in a terminal, where the progress panel is full-screen (tmux): SIGTERM and SIGHUP used to go to the
# terminal's own handler, which restored the screen and ended the process with DIR.tmp-* left behind
if command -v tmux >/dev/null 2>&1; then
	# a server of its own for each session: a new one on the name of a server still shutting down after
	# kill-server failed now and then under load ("server exited unexpectedly")
	T() { tmux -L "$sock" -f /dev/null "$@"; }
	for sig in TERM HUP; do
		sock="lmterm-lite-$$-$sig"
		rm -f "$tmp/pid"
		T new-session -d -s lite -x 120 -y 40 \
			"sh -c 'echo \$\$ > $tmp/pid; exec \"$LMTERM\" lite auto_awq \"$FIX/llama3-rand\" --work-dir \"$out\" \
			--calib-dataset \"$TESTDATA/text/wiki.test.raw\" --calib-samples 64 --calib-seqlen 1024 --search-scale \
			--threads 1'" || { fail "tmux did not start"; break; }
		T set-option -t lite remain-on-exit on >/dev/null
		panel=0
		for i in $(seq 1 50); do
			T capture-pane -p -t lite 2>/dev/null | grep -q "Ctrl-C" && { panel=1; break; }
			sleep 0.2
		done
		[ $panel = 1 ] || fail "terminal: no progress panel: $(T capture-pane -p -t lite 2>/dev/null | head -5)"
		sleep 1
		kill -$sig "$(cat "$tmp/pid")"
		dead=
		for i in $(seq 1 100); do
			dead=$(T display -p -t lite '#{pane_dead} #{pane_dead_status}' 2>/dev/null)
			case $dead in 1*) break ;; esac
			sleep 0.2
		done
		sleep 0.5
		# tmux fills in the exit status lazily and may replace the last output by its "Pane is dead" line, so
		# either tells a clean stop: status 1..127, or lmterm's "interrupted" still on the pane (killed by the
		# signal, there would be neither)
		dead=$(T display -p -t lite '#{pane_dead} #{pane_dead_status}' 2>/dev/null)
		st=${dead#* }
		case $st in [0-9]*) ;; *) st= ;; esac
		if [ "${dead%% *}" = 1 ] && { { [ -n "$st" ] && [ "$st" -ne 0 ] && [ "$st" -lt 128 ]; } ||
			T capture-pane -p -t lite | grep -q interrupted; }; then
			pass "terminal: SIG$sig stops the progress panel cleanly (status '$st')"
		else fail "terminal: SIG$sig: pane '$dead': $(T capture-pane -p -t lite | grep . | tail -3)"; fi
		nothing_left "terminal: SIG$sig"
		T kill-server >/dev/null 2>&1
	done
	# after the first layer the panel names its figure: the layer's error (it said "last item: 0.008");
	# an empty NO_COLOR leaves the colours on, as in chat and as the manual says (lite turned them off)
	sock="lmterm-lite-$$-panel"
	T new-session -d -s lite -x 120 -y 40 "NO_COLOR= \"$LMTERM\" lite auto_awq \"$DEMO\" --work-dir \"$out\" \
		--calib-dataset \"$TESTDATA/text/wiki.test.raw\" --calib-samples 8 --calib-seqlen 256 --search-scale --threads 1" ||
		fail "tmux did not start"
	shown=0
	for i in $(seq 1 150); do
		T capture-pane -p -t lite 2>/dev/null | grep -q "1 of 6" && { shown=1; break; }
		sleep 0.2
	done
	pane=$(T capture-pane -p -t lite 2>/dev/null)
	if [ $shown = 0 ]; then fail "terminal: the first layer did not finish: $(printf '%s\n' "$pane" | head -5)"
	elif printf '%s\n' "$pane" | grep -q "error of the last layer: 0\.[0-9]"; then pass "terminal: the panel names the layer's error"
	else fail "terminal: the panel does not name the error: $(printf '%s\n' "$pane" | head -8)"; fi
	esc=$(printf '\033')
	T capture-pane -e -p -t lite 2>/dev/null | grep -q "$esc\[[0-9;]*3[0-7]m" && pass "terminal: NO_COLOR= (empty) keeps the colours" ||
		fail "terminal: NO_COLOR= (empty) turned the colours off"
	T send-keys -t lite C-c
	sleep 2
	T kill-server >/dev/null 2>&1
	rm -rf "$out" "$out".tmp-*
fi

# a reader of the progress lines that goes away does not kill the run: the result is complete
"$LMTERM" lite auto_awq "$FIX/llama3-rand" --work-dir "$out" --calib-samples 0 2>&1 | head -c 1 >/dev/null
sleep 1
if [ -f "$out/config.json" ] && [ -f "$out/model.safetensors.index.json" ] && ! ls -d "$out".tmp-* >/dev/null 2>&1; then
	pass "closed stderr pipe: the run completes"
else fail "closed stderr pipe: no complete $out"; fi
rm -rf "$out" "$out".tmp-*

# the one progress line on a terminal (stdin is not one, so no panel; script(1) gives the pty): it erases the
# rest of the line with ESC [ K where TERM knows it, and with TERM=dumb only a carriage return and spaces
if command -v script >/dev/null 2>&1; then
	for t in xterm dumb; do
		TERM=$t script -qec "\"$LMTERM\" lite auto_awq \"$FIX/llama3-rand\" --work-dir \"$out\" --calib-samples 0 \
			--threads 1 </dev/null" "$tmp/tty.$t" >/dev/null 2>&1
		rc=$?
		esc=$(tr -cd '\033' < "$tmp/tty.$t" | wc -c)
		cr=$(tr -cd '\r' < "$tmp/tty.$t" | wc -c)
		if [ $rc -ne 0 ] || [ ! -f "$out/config.json" ]; then fail "TERM=$t progress line: rc $rc, no result"
		elif [ $t = dumb ] && [ "$esc" -eq 0 ] && [ "$cr" -gt 1 ]; then pass "TERM=dumb progress line: no escape sequence"
		elif [ $t = xterm ] && grep -q "$(printf '\r\033\[K')" "$tmp/tty.$t"; then pass "TERM=xterm progress line erases with ESC [ K"
		else fail "TERM=$t progress line: $esc escapes, $cr carriage returns: $(tr '\033\r' '^|' < "$tmp/tty.$t" | head -c 300)"; fi
		rm -rf "$out" "$out".tmp-*
	done
fi
finish
