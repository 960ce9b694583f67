#!/bin/sh
# test_xz: configure found xz (make check needs it to unpack tests/data), and without it the unpacking fails
# with a message that says what to install, not midway with "xz: not found".
. "${top_srcdir:-.}/tests/lib.sh"
mk=${top_builddir:-.}/Makefile
xz=$(sed -n 's/^XZ = //p' "$mk")
if [ -z "$xz" ]; then fail "configure did not set XZ in $mk (no AC_PATH_PROG for xz)"
elif "$xz" --version >/dev/null 2>&1; then pass "configure found xz: $xz"
else fail "XZ=$xz from configure does not run"; fi
grep -q "XZ='\$(XZ)'" "$top_srcdir/tests/local.mk" || fail "tests/local.mk does not pass configure's XZ to unpack-data.sh"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/data" && echo data > "$tmp/data/a.txt" && "${xz:-xz}" "$tmp/data/a.txt" 2>/dev/null
out=$(XZ= sh "$top_srcdir/tests/unpack-data.sh" "$tmp/data" "$tmp/out" 2>&1); rc=$?
if [ $rc -eq 0 ]; then fail "unpack-data.sh with no xz: exit 0"
else case "$out" in *xz-utils*) pass "no xz: '$out'" ;; *) fail "no xz: message '$out' lacks xz-utils" ;; esac; fi
[ -e "$tmp/out" ] && fail "unpack-data.sh with no xz left $tmp/out"
if [ -n "$xz" ]; then
	XZ=$xz sh "$top_srcdir/tests/unpack-data.sh" "$tmp/data" "$tmp/out" && [ "$(cat "$tmp/out/a.txt")" = data ] &&
		pass "XZ=$xz unpacks" || fail "XZ=$xz sh unpack-data.sh did not unpack a.txt.xz"
fi
finish
