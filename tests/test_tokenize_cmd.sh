#!/bin/sh
# lmterm tokenize: ids of known strings equal the goldens (both formats of the demo tokenizer), --json round,
# and bad inputs fail with a message naming the file.
. "${top_srcdir:-.}/tests/lib.sh"
[ -x "$LMTERM" ] || skip "no lmterm binary"
tmp=${TMPDIR:-/tmp}/test_tokenize_cmd.$$
mkdir -p "$tmp" || exit 1
trap 'rm -rf "$tmp"' EXIT

check_ids() { # DESC EXPECTED CMD...
	desc=$1 want=$2; shift 2
	got=$("$@" 2>"$tmp/err"); rc=$?
	if [ $rc -ne 0 ]; then fail "$desc: exit $rc: $(cat "$tmp/err")"; return; fi
	[ "$got" = "$want" ] && pass "$desc" || fail "$desc: got '$got', want '$want'"
}

# goldens (tokenizer/goldens.json): the directory uses tokenizer.json; the .model file is sentencepiece
check_ids "dir, Hello world" "465 291 3734 980" "$LMTERM" tokenize "$DEMO" "Hello world"
check_ids "tokenizer.json, leading space" "2108 285 563 1253" "$LMTERM" tokenize "$DEMO/tokenizer.json" " leading space"
check_ids "tokenizer.model, leading space" "3730 2108 285 563 1253" "$LMTERM" tokenize "$DEMO/tokenizer.model" " leading space"
check_ids "json matches special tokens" "1 297 3003 345 3730 2 281 3754 875 3730 0" \
	"$LMTERM" tokenize "$DEMO" "<s> literal </s> tokens <unk>"
check_ids "model leaves <s> as text" "3730 7245 3738 6894 297 3003 345 3730 7245 6453 3738 6894 281 3754 875 3730 7245 3124 6894" \
	"$LMTERM" tokenize "$DEMO/tokenizer.model" "<s> literal </s> tokens <unk>"
check_ids "stdin text" "2378 3930 15 3741 548 4079 15 15 3741 548 4258" \
	sh -c "printf 'line1\nline2\n\nline4' | \"\$0\" tokenize \"\$1\"" "$LMTERM" "$DEMO"
check_ids "empty text" "" "$LMTERM" tokenize "$DEMO" ""
# a TEXT that begins with '-' after "--" (it was an unknown option, with no way around it but stdin)
check_ids "-- then a text that begins with -" "$(printf '%s' '-x --json' | "$LMTERM" tokenize "$DEMO")" \
	"$LMTERM" tokenize "$DEMO" -- "-x --json"

# --json
got=$(printf '["Hello world", "", "\\u4f60\\u597d"]' | "$LMTERM" tokenize "$DEMO" --json 2>"$tmp/err"); rc=$?
want=$(for s in "Hello world" "" "你好"; do printf '%s\n' "$("$LMTERM" tokenize "$DEMO" "$s")"; done |
	awk 'BEGIN { printf "[" } { gsub(/ /, ", "); printf "%s[%s]", (NR > 1 ? ", " : ""), $0 } END { print "]" }')
[ $rc -eq 0 ] && [ "$got" = "$want" ] && pass "--json" || fail "--json: rc $rc got '$got' want '$want' $(cat "$tmp/err")"
case "$got" in "[[465, 291, 3734, 980], [], ["*) pass "--json shape" ;; *) fail "--json shape: $got" ;; esac

# JSON escapes, NUL and a surrogate pair included (ids from tokenizers 0.23.3 on the demo tokenizer.json)
got=$(printf '["a\\u0000b", "\\ud83d\\ude00 \\"q\\" \\\\ \\/ \\t"]' | "$LMTERM" tokenize "$DEMO" --json 2>&1)
want='[[263, 5, 3751], [3730, 245, 164, 157, 133, 403, 3780, 3764, 3730, 97, 3730, 6453, 3730, 14]]'
[ "$got" = "$want" ] && pass "--json escapes" || fail "--json escapes: got '$got'"

# bad inputs
expect_fail "missing model dir" "/nonexistent/model" "$LMTERM" tokenize /nonexistent/model "hi"
mkdir -p "$tmp/empty"
expect_fail "dir without tokenizer" "$tmp/empty" "$LMTERM" tokenize "$tmp/empty" "hi"
printf '{"model": {"type": "BPE", "vocab": ' > "$tmp/tokenizer.json"
expect_fail "malformed tokenizer.json" "$tmp/tokenizer.json" "$LMTERM" tokenize "$tmp/tokenizer.json" "hi"
# an empty one (a download that failed) says so (it was "malformed JSON near byte 0"), in a model directory too
mkdir -p "$tmp/emptytok" && : >"$tmp/emptytok/tokenizer.json"
expect_fail "empty tokenizer.json" "$tmp/emptytok/tokenizer.json: the file is empty" "$LMTERM" tokenize "$tmp/emptytok" "hi"
cp "$DEMO/config.json" "$tmp/emptytok/"
expect_fail "empty tokenizer.json: generate" "$tmp/emptytok/tokenizer.json: the file is empty" \
	"$LMTERM" generate "$tmp/emptytok" -p hi -n 1
: >"$tmp/emptytok/config.json"
expect_fail "empty config.json" "$tmp/emptytok/config.json: the file is empty" "$LMTERM" generate "$tmp/emptytok" -p hi -n 1
head -c 5000 "$DEMO/tokenizer.model" > "$tmp/cut.model"
expect_fail "truncated tokenizer.model" "$tmp/cut.model" "$LMTERM" tokenize "$tmp/cut.model" "hi"
expect_fail "bad JSON on stdin" "JSON" sh -c 'echo "[1, 2" | "$0" tokenize "$1" --json' "$LMTERM" "$DEMO"
expect_fail "stdin a directory" "cannot read standard input: Is a directory" sh -c '"$0" tokenize "$1" <"$2"' \
	"$LMTERM" "$DEMO" "$tmp"
expect_fail "non-string in JSON" "not a string" sh -c 'echo "[\"a\", 2]" | "$0" tokenize "$1" --json' "$LMTERM" "$DEMO"
expect_fail "lone surrogate in JSON" "JSON" sh -c 'echo "[\"\\ud800\"]" | "$0" tokenize "$1" --json' "$LMTERM" "$DEMO"
expect_fail "JSON not an array" "JSON" sh -c 'echo "{}" | "$0" tokenize "$1" --json' "$LMTERM" "$DEMO"
expect_fail "unknown option" "--frob" "$LMTERM" tokenize "$DEMO" --frob
# a normalizer whose Replace steps grow the text geometrically: an error, not hours and all of memory
r='{"type": "Replace", "pattern": {"String": "a"}, "content": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}'
sed "s/\"normalizer\": null/\"normalizer\": {\"type\": \"Sequence\", \"normalizers\": [$r, $r, $r, $r, $r, $r, $r, $r]}/" \
	"$DEMO/tokenizer.json" > "$tmp/grow.json"
expect_fail "normalizer that grows the text" "64 times" timeout 60 "$LMTERM" tokenize "$tmp/grow.json" "banana"
# --json where a later text fails to encode: the message and nothing on stdout (it left "[[...]" behind)
got=$(printf '["hi", "banana"]' | timeout 60 "$LMTERM" tokenize "$tmp/grow.json" --json 2>/dev/null); rc=$?
[ $rc -eq 1 ] && [ -z "$got" ] && pass "--json: a failed text leaves stdout empty" || fail "--json, a failed text: rc $rc, stdout '$got'"
# a FIFO is refused at once (it waited for a writer)
mkfifo "$tmp/fifo" && expect_fail "a FIFO as the tokenizer" "not a regular file" timeout 30 "$LMTERM" tokenize "$tmp/fifo" "hi"
out=$("$LMTERM" tokenize --help 2>/dev/null); rc=$?
[ $rc -eq 0 ] && case "$out" in *Usage*|*usage*) true ;; *) false ;; esac && pass "--help on stdout" || fail "--help: rc $rc, stdout '$out'"
finish
