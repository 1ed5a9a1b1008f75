#!/usr/bin/env bash
# Makes sure `prometheus` and `promtool` are on the PATH for the observability tests (tests/observability/), which run
# their own Prometheus on a free port with a temporary storage folder. Installs Debian's `prometheus` package when
# they are missing and we may (root with apt-get), without leaving a system Prometheus running: the package's service
# would listen on 9090 (compose's Prometheus port) and keep a TSDB in /var/lib/prometheus for nothing.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "prometheus/promtool are not installed: install Debian's package (apt-get install --no-install-recommends prometheus)" >&2
  exit 1
fi

# Deny service starts while the package installs (invoke-rc.d and deb-systemd-invoke both honour policy-rc.d), unless
# the machine already has a policy (a container image usually does; then it is left as it is).
policy=/usr/sbin/policy-rc.d
made_policy=false
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\n# written by spotter scripts/ensure-prometheus.sh for the length of one install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=true
fi
cleanup() { if $made_policy; then rm -f "$policy"; fi; }
trap cleanup EXIT

# --no-install-recommends: the recommended prometheus-node-exporter would listen on 9100, the worker's metrics port.
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends prometheus >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# Under systemd the unit is still enabled for the next boot: disable it (the tests never use the system service).
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
echo "installed $(prometheus --version 2>&1 | head -n 1)"
