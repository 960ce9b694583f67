#!/bin/sh
# runs tests/test_chat_pty.py (python3's pty module) where python3 is available
. "${top_srcdir:-.}/tests/lib.sh"
command -v python3 >/dev/null 2>&1 || skip "python3 not found"
export LMTERM
python3 "$top_srcdir/tests/test_chat_pty.py"
