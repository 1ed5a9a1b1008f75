#!/usr/bin/env bash
# `make test`: the two pytest processes side by side, each with its output in its own log.
#
#   scripts/run-tests.sh PYTEST [PYTEST_ARGS...]
#
# One Python process can't hold TensorFlow's protobuf messages and the gateway's stubs, so the tests run as two
# processes: everything outside tests/tf/ (TensorFlow-free), and tests/tf/. Each keeps about one core busy, so they run
# at the same time. Their output goes to .run/tests/tf-free.log and .run/tests/tf.log (each ends with its 15 slowest
# tests); a line a minute says how far each has come, and each log is printed whole when its process ends. The exit
# status is non-zero when either process fails. Ctrl-C stops both.
set -uo pipefail
# Job control: each pytest in its own process group, with SIGINT at its default (so Ctrl-C, forwarded, lets pytest
# stop the servers its fixtures started).
set -m
pytest=$1
shift
logs=.run/tests
mkdir -p "$logs"

declare -A commands=(
  [tf-free]="tests --ignore=tests/tf"
  [tf]="tests/tf"
)
# Each process its own Redis database: tests flush theirs before and after, and a flush of the other's would delete
# the jobs its workers are waiting for.
declare -A redis_dbs=(
  [tf-free]="${SPOTTER_TEST_REDIS_DB:-13}"
  [tf]="${SPOTTER_TEST_REDIS_DB_TF:-14}"
)
declare -A pids=()
for name in tf-free tf; do
  # shellcheck disable=SC2086 # the test paths are words
  SPOTTER_TEST_REDIS_DB="${redis_dbs[$name]}" "$pytest" ${commands[$name]} --durations=15 "$@" >"$logs/$name.log" 2>&1 &
  pids[$name]=$!
  echo "pytest ${commands[$name]}: output in $logs/$name.log (pid ${pids[$name]})"
done
stop() {
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null; done
  wait
  exit 130
}
trap stop INT TERM

progress() { grep -o '\[ *[0-9]*%\]' "$logs/$1.log" 2>/dev/null | tail -n 1; }

status=0
started=$SECONDS
declare -A done=()
while ((${#done[@]} < ${#pids[@]})); do
  for name in tf-free tf; do
    [[ -n ${done[$name]:-} ]] && continue
    if ! kill -0 "${pids[$name]}" 2>/dev/null; then
      wait "${pids[$name]}"
      code=$?
      done[$name]=$code
      echo "===== pytest ${commands[$name]} (exit $code, $(((SECONDS - started) / 60)) min) ====="
      cat "$logs/$name.log"
      ((code != 0)) && status=1
    fi
  done
  if ((${#done[@]} < ${#pids[@]})); then
    sleep 5
    if (((SECONDS - started) % 60 < 5)); then
      line="$(((SECONDS - started) / 60)) min:"
      for name in tf-free tf; do [[ -z ${done[$name]:-} ]] && line+=" $name $(progress "$name")"; done
      echo "$line"
    fi
  fi
done
for name in tf-free tf; do echo "pytest ${commands[$name]}: exit ${done[$name]} (log $logs/$name.log)"; done
exit $status
