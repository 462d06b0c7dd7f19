#!/bin/sh
# The Debian packages the tests and benchmarks need, checked before the first test:
#   espeak-ng    real speech for the voice tests
#   chromium     the browser end-to-end and layout tests (/usr/bin/chromium)
#   iproute2, util-linux   the browser's loopback-only network namespace (ip, unshare)
#   nginx-light  the scale-out test (deploy/nginx in front of two instances)
# As root with apt-get: installs what is missing. Otherwise: one line naming the
# packages and the command that installs them, and exit 1 (make stops there).
set -eu

missing=""
sbin="${SYSTEM_SBIN:-/usr/sbin}"  # nginx lives here, often outside a user's PATH
need() {  # need PACKAGE PROGRAM: PACKAGE is missing when PROGRAM is not found
  if ! command -v "$2" >/dev/null 2>&1 && [ ! -x "$sbin/$2" ]; then
    missing="$missing $1"
  fi
}
need espeak-ng espeak-ng
need chromium chromium
need iproute2 ip
need util-linux unshare
need nginx-light nginx

[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing the Debian packages the tests need:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086  # one word per package
  apt-get install -y -qq $missing >/dev/null
  exit 0
fi
echo "the tests need the Debian packages$missing; install them with: sudo apt-get install -y$missing" >&2
exit 1
