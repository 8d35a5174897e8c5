#!/usr/bin/env bash
# Installs the real clients and peers the tests use, from Debian packages, when missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have fetchmail || need+=(fetchmail)
have mpop || need+=(mpop)
have getmail || need+=(getmail6)
have doveadm || need+=(dovecot-core)
[ -x /usr/sbin/dovecot ] && [ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
have openssl || need+=(openssl)
have promtool || need+=(prometheus)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
