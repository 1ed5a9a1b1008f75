#!/usr/bin/env bash
# Makes sure a Redis answers on SPOTTER_REDIS_URL's host and port (127.0.0.1:6379 by default): uses the one that is
# running, or starts redis-server (installing Debian's package first when it is missing and we may).
set -euo pipefail
url=${SPOTTER_REDIS_URL:-redis://127.0.0.1:6379/0}
hostport=${url#redis://}; hostport=${hostport#*@}; hostport=${hostport%%/*}
host=${hostport%:*}; port=${hostport##*:}
answers() { (exec 3<>"/dev/tcp/$host/$port" && printf 'PING\r\n' >&3 && read -r -t 2 reply <&3 && [[ $reply == +PONG* ]]) 2>/dev/null; }
answers && exit 0
if [[ $host != 127.0.0.1 && $host != localhost ]]; then
  echo "Redis at $host:$port does not answer; start it or set SPOTTER_REDIS_URL" >&2; exit 1
fi
if ! command -v redis-server >/dev/null; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    apt-get install -y -qq redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server >/dev/null; }
  else
    echo "redis-server is not installed: install it (e.g. apt-get install redis-server) or set SPOTTER_REDIS_URL" >&2; exit 1
  fi
fi
mkdir -p .run
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
  --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --pidfile "$PWD/.run/redis.pid"
for _ in $(seq 50); do answers && { echo "started redis-server on $host:$port"; exit 0; }; sleep 0.1; done
echo "redis-server did not answer on $host:$port; see .run/redis.log" >&2; exit 1
