#!/usr/bin/env bash
# Install the Debian packages RepSys runs and tests against, when they are missing.
# Run by `make setup` (and so by `make run` and `make test`). As root it uses apt-get;
# with sudo it asks sudo; otherwise it prints exactly what to install and fails.
set -euo pipefail

# command-to-check:debian-package
needs=(
  "redis-server:redis-server"
  "mosquitto:mosquitto"
  "/usr/lib/postgresql/*/bin/initdb:postgresql"
  "odbcinst:unixodbc"
  "/usr/include/sql.h:unixodbc-dev"
  "/usr/lib/*/odbc/psqlodbcw.so:odbc-postgresql"
  "/usr/lib/*/odbc/libsqlite3odbc.so:libsqliteodbc"
  "chromium:chromium"
  "chromedriver:chromium-driver"
  "python3:python3-venv"
  "promtool:prometheus"
  "amtool:prometheus-alertmanager"
  "node:nodejs"
  "npm:npm"
  "mariadbd:mariadb-server"
  "/usr/lib/*/odbc/libtdsodbc.so:tdsodbc"
)

missing=()
for item in "${needs[@]}"; do
  what=${item%%:*}; pkg=${item##*:}
  if [[ $what == /* ]]; then
    # shellcheck disable=SC2086 # the glob is meant to expand
    compgen -G "$what" >/dev/null || missing+=("$pkg")
  elif ! command -v "$what" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$what" ]; then
    missing+=("$pkg")
  fi
done
# python3 -m venv needs ensurepip, which Debian splits out.
python3 -c 'import ensurepip' 2>/dev/null || missing+=("python3-venv")

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "setup: installing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  apt=(apt-get)
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  apt=(sudo apt-get)
else
  echo "setup: cannot install as $(id -un). Run:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${apt[@]}" update -qq
"${apt[@]}" install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts the packaged servers; RepSys runs private ones on its own ports instead
# (the tests start their own Prometheus and Alertmanager on free loopback ports too).
for svc in redis-server mosquitto postgresql mariadb prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
# Nor should Prometheus and Alertmanager come back at boot with their packaged defaults.
for svc in prometheus prometheus-alertmanager; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled --quiet "$svc" 2>/dev/null; then
    systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
