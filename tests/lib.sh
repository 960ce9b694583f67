# tests/lib.sh: helpers for shell tests. Exit 0 pass, 1 fail, 77 skip.
set -u
# The tests look for the English messages whatever the locale of whoever runs them: in a Chinese locale, with
# lmterm's translations installed, they would be translated. Tests of the Chinese messages set the locale
# per command (LC_ALL=zh_CN.UTF-8 ... , LMTERM_LOCALEDIR).
unset LANGUAGE
LC_ALL=C.UTF-8
export LC_ALL
# The chat screen appends every message sent to its input history file ($XDG_STATE_HOME/lmterm/history): set
# and empty, there is none, so that no test writes into the home of whoever runs it. Tests of the history file
# set LMTERM_HISTFILE or XDG_STATE_HOME per command, to a temporary directory.
LMTERM_HISTFILE=
export LMTERM_HISTFILE
: "${LMTERM:=./lmterm}" "${TESTDATA:=tests/data-unpacked}" "${top_srcdir:=.}"
DEMO="$top_srcdir/models/tiny-en-zh"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }
skip() { echo "SKIP: $*"; exit 77; }
# expect_fail DESC PATTERN CMD...: the command must exit non-zero (not by a signal) and print PATTERN on stderr
expect_fail() {
	desc=$1 pat=$2; shift 2
	out=$("$@" 2>&1 >/dev/null); rc=$?
	if [ $rc -eq 0 ]; then fail "$desc: exit 0"; return; fi
	if [ $rc -ge 128 ]; then fail "$desc: killed by signal (rc $rc): $out"; return; fi
	case "$out" in *$pat*) pass "$desc" ;; *) fail "$desc: message '$out' lacks '$pat'" ;; esac
}
# copy_edit SRC DST FILE PYTHON: DST a copy of the model directory SRC whose JSON file FILE has had PYTHON run on it
# (the parsed file as c)
copy_edit() {
	rm -rf "$2" && cp -r "$1" "$2" &&
		python3 -c "import json,sys; p=sys.argv[1]; c=json.load(open(p)); $4; json.dump(c, open(p, 'w'))" "$2/$3"
}
# bad_config DESC PATTERN SRC PYTHON: lmterm generate on a copy of SRC ($tmp/b) whose config.json PYTHON edited
# fails with PATTERN (expect_fail)
bad_config() {
	copy_edit "$3" "$tmp/b" config.json "$4" || { fail "$1: could not edit a copy of $3"; return; }
	expect_fail "$1" "$2" "$LMTERM" generate "$tmp/b" --ids "1 2" -n 1 --backend cpu
}
# expect_usage DESC PATTERN CMD...: a usage error: exit status 2 and PATTERN on stderr
expect_usage() {
	desc=$1 pat=$2; shift 2
	out=$("$@" 2>&1 >/dev/null); rc=$?
	if [ $rc -ne 2 ]; then fail "$desc: exit $rc, want 2 (a usage error): $out"; return; fi
	case "$out" in *"$pat"*) pass "$desc" ;; *) fail "$desc: message '$out' lacks '$pat'" ;; esac
}
# zh_ok: the Chinese messages can be checked: msgfmt and a zh_CN.UTF-8 locale are there, and this build has
# translations (a build configured with --disable-nls prints English whatever the locale)
zh_ok() {
	command -v msgfmt >/dev/null 2>&1 && locale -a 2>/dev/null | grep -qi '^zh_CN\.utf-\?8$' &&
		grep -q '^#define ENABLE_NLS 1' "${top_builddir:-.}/config.h" 2>/dev/null
}
ZH_SKIP="SKIP: zh_CN: msgfmt, the zh_CN.UTF-8 locale or translations (configure --disable-nls) missing"
finish() { [ $fails -eq 0 ] && exit 0; echo "$fails failure(s)"; exit 1; }
# Tests of an architecture against an independent reference forward (tests/make_qwen3.py, make_phi3.py):
# ref_check DESC MODEL [GENERATE-ARGS...] [-- CHECK-ARGS...]: lmterm generate's logits (--dump-logits) and 8
# greedy ids from $IDS on backend $B against "$REF check" at tolerance $RTOL (off the cpu, the first 4 ids only);
# the reference is fed lmterm's ids, and an id other than its argmax passes only as a near tie within the
# tolerance (16-bit rounding may choose either); uses $LMTERM and the scratch $tmp
first4() { if [ "$B" = cpu ]; then echo "$1"; else echo "$1" | cut -d' ' -f1-4; fi; }
ref_check() {
	desc=$1 m=$2; shift 2
	gargs= cargs=
	while [ $# -gt 0 ] && [ "$1" != -- ]; do gargs="$gargs $1"; shift; done
	[ $# -gt 0 ] && shift && cargs="$*"
	# shellcheck disable=SC2086
	ids=$("$LMTERM" generate "$m" --ids "$IDS" -n 8 --greedy --print-ids --backend "$B" --dump-logits "$tmp/l.st" \
		$gargs 2>"$tmp/err") || { fail "$desc: generate: $(cat "$tmp/err")"; return 1; }
	[ "$B" = cpu ] || ids=$(first4 "$ids")
	# shellcheck disable=SC2086
	if out=$($REF check "$m" "$tmp/l.st" "$IDS" "$ids" "$RTOL" $cargs); then pass "$desc ($B): $out"; return 0; fi
	fail "$desc ($B): $out"
	return 1
}
