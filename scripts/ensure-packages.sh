#!/usr/bin/env bash
# Installs the Debian packages the tests and benchmarks need, when they are missing.
# Usage: scripts/ensure-packages.sh <package>...
set -euo pipefail

missing=()
for package in "$@"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "error: packages missing (${missing[*]}) and no root or sudo to install them" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || { echo "error: apt-get update failed" >&2; exit 1; }
# Installing postgresql must not start the distribution's own cluster service; the tests run their own server.
if [ ! -e /usr/sbin/policy-rc.d ] && [ -z "$sudo" ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
