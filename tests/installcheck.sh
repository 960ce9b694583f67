#!/bin/sh
# make installcheck: the installed lmterm runs from what make install put in place (DESTDIR honoured):
# its version, a chat on the installed demo model, and, where NLS is on and a zh_CN locale exists, its
# translations from the installed locale directory.
# usage: installcheck.sh BINDIR PKGDATADIR LOCALEDIR USE_NLS
set -u
bin=$1/lmterm model=$2/models/tiny-en-zh localedir=$3 nls=$4
unset LANGUAGE LMTERM_DEMO_MODEL LMTERM_LOCALEDIR
LMTERM_HISTFILE= && export LMTERM_HISTFILE
fails=0
fail() { echo "installcheck: $*" >&2; fails=$((fails + 1)); }
"$bin" --version | grep -q '^lmterm ' || fail "$bin --version"
out=$(LC_ALL=C "$bin" chat "$model" --no-tui </dev/null 2>&1) || fail "$bin chat $model: $out"
case "$out" in tiny-en-zh:*) ;; *) fail "$bin chat $model printed: $out" ;; esac
if [ "$nls" = yes ] && locale -a 2>/dev/null | grep -qix 'zh_CN\.utf-*8'; then
	en=$(LC_ALL=C "$bin" --help 2>&1 | head -n 1)
	zh=$(LC_ALL=zh_CN.UTF-8 LMTERM_LOCALEDIR=$localedir "$bin" --help 2>&1 | head -n 1)
	[ "$zh" != "$en" ] || fail "no translation from $localedir/zh_CN/LC_MESSAGES/lmterm.mo: '$zh'"
fi
[ $fails -eq 0 ] && echo "installcheck: $bin runs (version, demo model, translations)"
exit $fails
