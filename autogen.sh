#!/bin/sh
# Generate configure and Makefile.in. Needs autoconf, automake, autopoint (gettext), pkg-config.
set -e
cd "$(dirname "$0")"
autoreconf --install --force >/dev/null
echo "autogen.sh: now run ./configure && make"
