#!/usr/bin/env bash
# Generates the Python stubs for protos/ into services/gen/. protoc writes absolute imports that follow the .proto
# paths (`from tfs import tensor_pb2`); they are rewritten to live under services.gen so that the stubs never shadow
# TensorFlow's or tensorflow-serving-api's own packages.
set -euo pipefail
python=${1:-python3}
cd "$(dirname "$0")/.."
out=services/gen
tmp=$(mktemp -d services/.gen.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mapfile -t files < <(find protos -name '*.proto' | sort)
"$python" -m grpc_tools.protoc -Iprotos --python_out="$tmp" --pyi_out="$tmp" --grpc_python_out="$tmp" "${files[@]}"
find "$tmp" -type d -exec touch {}/__init__.py \;
find "$tmp" -name '*.py' -o -name '*.pyi' | xargs sed -i -E 's/^from (tfs|spotter\.v1|odapi) import /from services.gen.\1 import /'
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
