#!/bin/sh
# test_dist: every file git tracks goes into the release tarball (EXTRA_DIST, a _SOURCES list, an included .mk),
# but for the few that only serve a checkout; a file left out breaks a tarball's build, tests or scripts.
# tests/distfiles.list is automake's DISTFILES, written by make check. Skipped outside a git checkout.
. "${top_srcdir:-.}/tests/lib.sh"
list=$(cd "${top_builddir:-.}" && pwd)/tests/distfiles.list
cd "$top_srcdir" || exit 1
command -v git >/dev/null 2>&1 || skip "git is not installed"
# the top of a checkout, not a tarball unpacked inside one (make distcheck)
[ "$(git rev-parse --show-toplevel 2>/dev/null)" = "$(pwd -P)" ] || skip "$(pwd) is not a git checkout"
[ -s "$list" ] || { fail "$list is missing or empty"; finish; }
n=0
while read -r f; do
	case "$f" in .gitignore|.ci/*|m4/.keep) continue ;; esac
	n=$((n + 1))
	# listed itself, or a directory above it is
	p=$f
	until grep -qxF "$p" "$list"; do
		case "$p" in */*) p=${p%/*} ;; *) fail "$f is tracked but not distributed (EXTRA_DIST)"; break ;; esac
	done
done <<LIST
$(git ls-files)
LIST
[ $fails -eq 0 ] && pass "the $n tracked files are all distributed"
finish
