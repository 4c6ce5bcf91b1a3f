#!/bin/sh
# Redis (Debian's redis-server) under cowtrace watch: two BGSAVEs and a
# BGREWRITEAOF under writes, each one episode, a line as each ends; then
# Redis's own figure for each (rdb_last_cow_size, aof_last_cow_size, the
# save child's Private_Dirty at its end) next to the episode's bytes.
#
#   sudo examples/redis-snapshot/watch.sh [KEYS [WRITES]]
#
# COWTRACE names the binary (default: cowtrace in $PATH, else bin/cowtrace).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
ct=${COWTRACE:-$(command -v cowtrace || echo "$here/../../bin/cowtrace")}
keys=${1:-40000}
writes=${2:-4000}
dir=$(mktemp -d)
redis-server --port 0 --unixsocket "$dir/redis.sock" --dir "$dir" --save '' \
	--appendonly yes --auto-aof-rewrite-percentage 0 --enable-debug-command local \
	--daemonize no --logfile "$dir/redis.log" &
rpid=$!
ctpid=
cleanup() {
	[ -z "$ctpid" ] || kill "$ctpid" 2>/dev/null || true
	kill "$rpid" 2>/dev/null || true
	wait || true
	rm -rf "$dir"
}
trap cleanup EXIT
cli() { redis-cli -s "$dir/redis.sock" "$@"; }
i=0
until cli ping >/dev/null 2>&1; do
	i=$((i + 1)); [ $i -lt 200 ] || { echo "redis-server did not start" >&2; exit 1; }
	sleep 0.05
done
cli DEBUG POPULATE "$keys" key 1000 >/dev/null
# 20 us per key: the saves last long enough for the writes to land in them.
cli CONFIG SET rdb-key-save-delay 20 >/dev/null

load() {
	awk -v n="$writes" -v keys="$keys" -v seed="$1" 'BEGIN {
		srand(seed); v = sprintf("%1000s", ""); gsub(/ /, "w", v)
		for (i = 0; i < n; i++) printf "SET key:%d %s\n", int(rand() * keys), v
	}' | cli >/dev/null
}
idle() {
	while cli INFO persistence | grep -Eq '^(rdb_bgsave|aof_rewrite)_in_progress:1'; do sleep 0.05; done
}

# The table on stdout as each save ends; the same as JSON lines in a file.
mkfifo "$dir/ready"
"$ct" watch -p "$rpid" --ready-fd 3 3>"$dir/ready" &
ctpid=$!
read -r _ <"$dir/ready"
figures=
for save in BGSAVE BGSAVE BGREWRITEAOF; do
	cli $save >/dev/null
	load $$
	idle
	field=rdb_last_cow_size
	[ $save = BGREWRITEAOF ] && field=aof_last_cow_size
	figures="$figures$save: $field $(cli INFO persistence | sed -n "s/^$field:\([0-9]*\).*/\1/p") bytes
"
	sleep 0.5 # the episode's line, once the server has run again
done
kill -INT $ctpid
wait $ctpid || true
ctpid=
printf 'redis, its own figures:\n%s' "$figures"
