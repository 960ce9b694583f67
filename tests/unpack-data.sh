#!/bin/sh
# Copy tests/data into the build tree, decompressing *.xz, so tests read plain files from $TESTDATA.
# XZ: the xz that configure found; empty when it found none.
set -e
src=$1 dst=$2 xz=${XZ-xz}
# fail before copying anything, naming what is missing, rather than with a bare "xz: not found" midway
if [ -z "$xz" ] || ! command -v "$xz" >/dev/null 2>&1; then
	echo "unpack-data.sh: xz was not found (configure's XZ='$xz'), and the test data in $src is xz-compressed:" \
		"install xz (Debian: xz-utils) and run configure again" >&2
	exit 1
fi
rm -rf "$dst.tmp" && mkdir -p "$dst.tmp"
(cd "$src" && find . -type f) | while read -r f; do
	mkdir -p "$dst.tmp/$(dirname "$f")"
	case "$f" in
	*.xz) "$xz" -dc "$src/$f" > "$dst.tmp/${f%.xz}" ;;
	*) cp "$src/$f" "$dst.tmp/$f" ;;
	esac
done
rm -rf "$dst" && mv "$dst.tmp" "$dst" && touch "$dst/.stamp"
