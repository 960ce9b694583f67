#!/bin/sh
# test_installed_paths: an lmterm outside the build tree (as make install puts it) opens the demo model from the
# installed data directory only, never the source tree's; the one in the build tree still opens the source tree's.
. "${top_srcdir:-.}/tests/lib.sh"
unset LMTERM_DEMO_MODEL
: "${pkgdatadir:?pkgdatadir is not set (tests/local.mk sets it)}"
out=$("$LMTERM" chat --no-tui </dev/null 2>&1)
case "$out" in tiny-en-zh:*) pass "the build tree's lmterm opens the source tree's demo model" ;;
	*) fail "$LMTERM chat with no MODEL printed: $out" ;; esac
[ -f "$pkgdatadir/models/tiny-en-zh/config.json" ] && skip "lmterm is installed in $pkgdatadir: cannot tell its copy from the source tree's"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
cp "$LMTERM" "$tmp/lmterm" || exit 1
out=$("$tmp/lmterm" chat --no-tui </dev/null 2>&1); rc=$?
if [ $rc -eq 0 ]; then fail "a copy outside the build tree opened a demo model not installed in $pkgdatadir: $out"
else case "$out" in
	*"$pkgdatadir/models/tiny-en-zh is missing"*) pass "a copy outside the build tree looks in $pkgdatadir only" ;;
	*) fail "a copy outside the build tree printed: $out" ;;
esac; fi
finish
