#!/bin/sh
# Installs the packages `make check` needs on Debian when they are missing:
# cmocka (tests), pkg-config (finds it) and OpenBSD netcat (`nc -N`, used by
# the half-close tests exactly as the README shows it).
set -eu
need=""
for p in libcmocka-dev pkg-config netcat-openbsd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need="$need $p"
done
[ -z "$need" ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing:$need"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need
