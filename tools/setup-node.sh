#!/usr/bin/env bash
# Install the Node tools the tests use into a project-local folder, when missing:
# Azurite (Microsoft's Azure Storage emulator, from the npm registry) in .tools/azurite,
# the Blob server of tests/storage. Run by `make setup`; needs node and npm (Debian's
# nodejs and npm, which tools/setup-system.sh installs).
set -euo pipefail
AZURITE_VERSION=3.37.0
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/.tools/azurite"
bin="$dest/node_modules/.bin/azurite-blob"
if [ -x "$bin" ] && grep -q "\"version\": \"$AZURITE_VERSION\"" "$dest/node_modules/azurite/package.json"; then
  exit 0
fi
echo "setup: installing azurite $AZURITE_VERSION into .tools/azurite"
mkdir -p "$dest"
npm install --prefix "$dest" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
