#!/usr/bin/env bash
# Install what the browser tests need: puppeteer-core (never a browser) into
# tests/browser/node_modules (git-ignored). The tests drive Debian's /usr/bin/chromium.
# Without node/npm this prints why and exits 0: the browser tests then skip with a reason.
set -euo pipefail
cd "$(dirname "$0")"
export PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1
if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "tests/browser/install.sh: node/npm not found; browser tests will be skipped" >&2
  exit 0
fi
if [ -f node_modules/puppeteer-core/package.json ]; then
  echo "puppeteer-core $(node -p 'require("./node_modules/puppeteer-core/package.json").version') already installed"
  exit 0
fi
npm install --no-audit --no-fund --no-save --ignore-scripts --loglevel=error \
  --prefix . "puppeteer-core@^24"
echo "puppeteer-core $(node -p 'require("./node_modules/puppeteer-core/package.json").version') installed"
