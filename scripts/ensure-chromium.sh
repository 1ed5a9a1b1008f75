#!/usr/bin/env bash
# Makes sure Debian's `chromium` and `chromium-driver` are installed for the browser test of the gateway's page
# (tests/gateway/test_ui.py), which drives /usr/bin/chromium headless. Installs the packages when they are missing and
# we may (root with apt-get); nothing is downloaded at test time, no browser build of a test tool's own.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
  echo "chromium/chromedriver are not installed: install Debian's packages (apt-get install chromium chromium-driver)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null ||
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; }
command -v chromium >/dev/null && command -v chromedriver >/dev/null
echo "installed $(chromium --version 2>/dev/null | head -n 1)"
