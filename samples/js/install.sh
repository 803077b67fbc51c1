#!/bin/sh
# Install the JavaScript samples' packages (dicomweb-client, and xhr2 that gives Node the
# XMLHttpRequest the library uses) into samples/js/node_modules. Needs node and npm.
set -e
cd "$(dirname "$0")"
if ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: npm is not installed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
npm install --no-audit --no-fund --loglevel=error
echo "install.sh: packages installed in $(pwd)/node_modules"
