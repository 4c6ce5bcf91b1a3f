#!/bin/sh
# A pre-fork Python worker pool, with and without gc.freeze() in the parent,
# under cowtrace run --by mapping: each worker's own figure (how much its
# Private_Dirty memory grew during gc.collect()) next to cowtrace's copies.
#
#   sudo examples/python-pool/run.sh [--objects N] [--workers N]
#
# COWTRACE names the binary (default: cowtrace in $PATH, else bin/cowtrace).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ct=${COWTRACE:-$(command -v cowtrace || echo "$here/../../bin/cowtrace")}
# The interpreter itself: a wrapper (pyenv's shim) would add its own processes.
py=$(python3 -c 'import sys; print(sys.executable)')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

for mode in plain freeze; do
	flag=
	[ "$mode" = freeze ] && flag=--freeze
	echo "== pool.py $flag $*"
	"$ct" run --by mapping --format json -o "$out/$mode.json" --plot "$out/$mode.svg" -- "$py" "$here/pool.py" $flag "$@"
	python3 "$here/../summary.py" "$out/$mode.json"
	cp "$out/$mode.svg" "./python-pool-$mode.svg" && echo "  plot: ./python-pool-$mode.svg"
done
