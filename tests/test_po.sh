#!/bin/sh
# test_po: every translation passes `msgfmt --check`; every source file that marks strings for translation is
# listed in po/POTFILES.in (and every listed file exists); po/zh_CN.po translates every string that
# xgettext finds in those files.
. "${top_srcdir:-.}/tests/lib.sh"
command -v msgfmt >/dev/null 2>&1 || skip "msgfmt is not installed"
cd "$top_srcdir" || exit 1
for po in po/*.po; do
	if out=$(msgfmt --check -o /dev/null "$po" 2>&1); then pass "msgfmt --check $po"; else fail "msgfmt --check $po: $out"; fi
done
# files with _( N_( C_( or P_( calls, against POTFILES.in
marked=$(grep -lE '(^|[^A-Za-z0-9_])(_|N_|C_|P_)\(' src/*.c ui/*.c cuda/*.cu 2>/dev/null | sort)
listed=$(grep -v '^[[:space:]]*#' po/POTFILES.in | sed '/^[[:space:]]*$/d' | sort)
for f in $marked; do
	echo "$listed" | grep -qx "$f" || fail "$f marks strings for translation but is not in po/POTFILES.in"
done
for f in $listed; do
	[ -f "$f" ] || fail "po/POTFILES.in lists $f, which does not exist"
done
[ $fails -eq 0 ] && pass "po/POTFILES.in lists the $(echo "$marked" | wc -l) files that mark strings"
# every string is translated in zh_CN.po (the first users read Chinese)
if command -v xgettext >/dev/null 2>&1 && command -v msgmerge >/dev/null 2>&1; then
	tmp=${TMPDIR:-/tmp}/lmterm-po.$$
	mkdir -p "$tmp"
	xgettext --keyword=_ --keyword=N_ --keyword=C_ --keyword=P_:1,2 --from-code=UTF-8 --language=C -o "$tmp/lmterm.pot" -f po/POTFILES.in
	msgmerge -q --no-fuzzy-matching -o "$tmp/zh_CN.po" po/zh_CN.po "$tmp/lmterm.pot"
	untrans=$(msgattrib --untranslated --no-obsolete "$tmp/zh_CN.po" | grep -c '^msgid ' || true)
	total=$(grep -c '^msgid ' "$tmp/lmterm.pot")
	# the header counts as one untranslated entry in msgattrib's output when others are missing
	if [ "$untrans" -le 0 ]; then
		pass "zh_CN.po translates all $((total - 1)) strings"
	else
		msgattrib --untranslated --no-obsolete "$tmp/zh_CN.po" | grep -A1 '^msgid ' | head -20
		fail "zh_CN.po leaves strings untranslated"
	fi
	rm -rf "$tmp"
fi
finish
