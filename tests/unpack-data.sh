#!/bin/sh
# Copy tests/data into the build tree, decompressing *.xz, so tests read plain files from $TESTDATA.
set -e
src=$1 dst=$2
rm -rf "$dst.tmp" && mkdir -p "$dst.tmp"
(cd "$src" && find . -type f) | while read -r f; do
	mkdir -p "$dst.tmp/$(dirname "$f")"
	case "$f" in
	*.xz) xz -dc "$src/$f" > "$dst.tmp/${f%.xz}" ;;
	*) cp "$src/$f" "$dst.tmp/$f" ;;
	esac
done
rm -rf "$dst" && mv "$dst.tmp" "$dst" && touch "$dst/.stamp"
