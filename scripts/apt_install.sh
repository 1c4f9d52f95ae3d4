#!/usr/bin/env bash
# scripts/apt_install.sh WHO PACKAGE...: install missing Debian packages, for scripts/deps.sh and
# scripts/deps_python.sh. As root with apt-get it installs them; otherwise it prints the exact command to
# run and fails (exit 1). WHO prefixes every line ("deps", "deps_python").
set -euo pipefail
who=$1
shift
echo "$who: missing $*"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "$who: installing with apt-get (as root)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
else
  echo "$who: run this, then try again:" >&2
  echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
  exit 1
fi
