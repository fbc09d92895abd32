#!/usr/bin/env bash
# Debian's chromium for the browser tests, and the pinned onnxruntime-web for web packages.
# Failures here are not fatal: the tests that need these skip with a reason when they are absent.
set -u
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "warning: could not install chromium; browser tests will be skipped" >&2
fi
web=src/dlforge/deploy/web_app
if [ -f "$web/package-lock.json" ] && [ ! -d "$web/node_modules" ] && command -v npm >/dev/null 2>&1; then
  (cd "$web" && npm ci --no-audit --no-fund --loglevel=error) \
    || echo "warning: npm ci failed; web package tests will be skipped" >&2
fi
exit 0
