#!/usr/bin/env bash
# Install the Node tools the tests use into project-local folders under .tools/, when
# missing or at another version. Run by `make setup`; needs node and npm (Debian's nodejs
# and npm, which tools/setup-system.sh installs).
#   axe-core  Deque's accessibility engine, injected into every page by
#             tests/web/test_accessibility.py
#   azurite   Microsoft's Azure Storage emulator, the Blob server of tests/storage
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

# install NAME VERSION [DIR]: npm package NAME@VERSION into .tools/DIR (default: NAME).
install() {
  local name=$1 version=$2 dir=${3:-$1}
  local dest="$here/.tools/$dir"
  if [ -f "$dest/node_modules/$name/package.json" ] &&
    grep -q "\"version\": \"$version\"" "$dest/node_modules/$name/package.json"; then
    return 0
  fi
  echo "setup: installing $name $version into .tools/$dir"
  mkdir -p "$dest"
  npm install --prefix "$dest" --no-audit --no-fund --loglevel=error "$name@$version"
}

install axe-core 4.10.3 axe
install azurite 3.37.0
