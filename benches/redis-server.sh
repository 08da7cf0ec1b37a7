# Sourced by the benchmarks that need Redis (benches/scale-out.sh,
# benches/collect-memory.sh): a scratch directory `work`, a redis-server of their own on
# a free loopback `port` (its pid in `redis_pid`), `cli` to talk to it, and a cleanup on
# exit that also stops the collector whose pid the caller puts in `collect_pid`.
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no --daemonize no \
  >"$work/redis.log" 2>&1 &
redis_pid=$!
collect_pid=""
cleanup() {
  [ -n "$collect_pid" ] && kill "$collect_pid" 2>/dev/null || true
  kill "$redis_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
cli() { redis-cli -p "$port" "$@"; }
until [ "$(cli PING 2>/dev/null)" = PONG ]; do sleep 0.1; done
