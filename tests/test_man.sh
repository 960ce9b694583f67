#!/bin/sh
# test_man: the manual documents every subcommand, every long option the commands parse, every environment
# variable the program reads, and the keys of the chat screen's help; and man renders it without warnings.
. "${top_srcdir:-.}/tests/lib.sh"
cd "$top_srcdir" || exit 1
page=man/lmterm.1.in
[ -f "$page" ] || { fail "$page is missing"; finish; }
# roff escapes hyphens: look for "\-\-name"
documented() { grep -qF -- "$(printf '%s' "$1" | sed 's/-/\\-/g')" "$page"; }
for c in chat generate tokenize ppl bench "lite auto_awq" list; do
	documented "$c" && pass "command $c" || fail "command '$c' is not in the manual"
done
opts=$( (grep -ohE 'strcmp\((n|name), "[a-z][a-z0-9-]*"\)' src/cmd_*.c; grep -ohE '"--[a-z][a-z0-9-]+' src/cmd_*.c) |
	sed -E 's/.*"(--)?([a-z][a-z0-9-]*)"?\)?$/\2/' | grep -vx -e h -e help | sort -u)
n=0
for o in $opts; do
	n=$((n + 1))
	documented "--$o" || fail "option --$o is parsed in src/cmd_*.c but not in the manual"
done
pass "$n long options checked"
for v in $(grep -ohE 'getenv\("[A-Z_]+"\)' src/*.c ui/*.c cuda/*.cu 2>/dev/null | sed -E 's/getenv\("([A-Z_]+)"\)/\1/' | grep -vx -e HOME | sort -u); do
	documented "$v" && pass "environment variable $v" || fail "environment variable $v is read but not in the manual"
done
# each environment variable has one entry (TERM had two)
dup=$(awk '/^\.SH/ { env = ($0 ~ /ENVIRONMENT/) } env && prev == ".TP" && /^\.B / { print $2 } { prev = $0 }' "$page" | sort | uniq -d)
[ -z "$dup" ] && pass "ENVIRONMENT: one entry per variable" || fail "ENVIRONMENT lists more than once: $dup"
for k in F1 F2 F3 F5 F10 Ctrl\\-Q Ctrl\\-C Ctrl\\-L Ctrl\\-J Alt\\-Enter PgUp; do
	grep -qF -- "$k" "$page" && pass "key $k" || fail "key $k is not in the manual"
done
for s in NAME SYNOPSIS DESCRIPTION COMMANDS OPTIONS "INTERACTIVE COMMANDS" FILES ENVIRONMENT EXAMPLES; do
	grep -q "^\.SH \"\?$s\"\?$" "$page" && pass "section $s" || fail "section $s is missing"
done
# the defaults that lite's --help states are the manual's (it said --search-clip true and --search-tokens
# 4096 while the program used false and all tokens up to 16384)
if [ -x "$LMTERM" ]; then
	n=0
	"$LMTERM" lite --help | sed -n 's/^ *--\([a-z-]*\) .*(default:\{0,1\} \([^;,)]*\).*/\1 \2/p' > "${TMPDIR:-/tmp}/lmterm-man-defaults.$$"
	while read -r o d; do
		n=$((n + 1))
		# the option's paragraph: from its tag (after a .TP) to the next .TP, without roff's escapes
		para=$(awk -v tag="$(printf '%s' "--$o" | sed 's/-/\\\\-/g')" \
			'prev == ".TP" && index($0, tag) { on = 1; next } on && /^\.TP/ { exit } on { print } { prev = $0 }' "$page" |
			sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g')
		printf '%s\n' "$para" | grep -qiF "default $d" || printf '%s\n' "$para" | grep -qiF "default: $d" ||
			fail "lite --help says --$o defaults to '$d'; the manual: '$para'"
	done < "${TMPDIR:-/tmp}/lmterm-man-defaults.$$"
	rm -f "${TMPDIR:-/tmp}/lmterm-man-defaults.$$"
	[ $n -ge 8 ] && pass "lite: $n defaults in --help agree with the manual" || fail "lite --help: only $n defaults found"
fi
if command -v groff >/dev/null 2>&1; then
	w=$(sed -e 's/@VERSION@/0/' -e 's|@pkgdatadir@|/usr/share/lmterm|' -e 's|@localedir@|/usr/share/locale|' "$page" | groff -man -Tutf8 -ww -z 2>&1)
	[ -z "$w" ] && pass "groff renders it without warnings" || fail "groff warnings: $w"
fi
# the page make builds has every @NAME@ replaced
built=${top_builddir:-.}/man/lmterm.1
if [ -f "$built" ]; then
	left=$(grep -o '@[A-Za-z_]*@' "$built" | sort -u | tr '\n' ' ')
	[ -z "$left" ] && pass "$built: all substituted" || fail "$built leaves $left"
fi
finish
