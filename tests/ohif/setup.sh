#!/usr/bin/env bash
# Install what tests/ohif needs into tests/ohif/node_modules (git-ignored):
#   - puppeteer-core (drives Debian's /usr/bin/chromium; never downloads a browser),
#   - the built OHIF viewer: the dist/ of the npm package @ohif/app, unpacked from its
#     tarball (`npm pack`) without installing its source dependencies.
# Best effort: exits 0 with a message when node/npm are missing; the tests then skip.
set -euo pipefail
cd "$(dirname "$0")"
OHIF_VERSION="${OHIF_VERSION:-3.13.2}"
export PUPPETEER_SKIP_DOWNLOAD=1 PUPPETEER_SKIP_CHROMIUM_DOWNLOAD=1

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "tests/ohif/setup.sh: node/npm not found; the OHIF browser test will skip" >&2
  exit 0
fi
if [ ! -d node_modules/puppeteer-core ]; then
  npm install --no-audit --no-fund --ignore-scripts --no-package-lock --loglevel=error
fi
dist="node_modules/@ohif/app/dist"
if [ ! -f "$dist/index.html" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "@ohif/app@${OHIF_VERSION}" >/dev/null)
  mkdir -p node_modules/@ohif/app
  tar -xzf "$tmp"/ohif-app-*.tgz -C node_modules/@ohif/app --strip-components=1 package/dist package/package.json
fi
echo "tests/ohif/setup.sh: puppeteer-core $(node -p 'require("puppeteer-core/package.json").version'), @ohif/app $(node -p 'require("./node_modules/@ohif/app/package.json").version')"
