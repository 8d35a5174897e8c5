#!/usr/bin/env bash
# Installs the real clients and peers the tests use, from Debian packages, when missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have curl || need+=(curl)
have script || need+=(bsdutils)
have fetchmail || need+=(fetchmail)
have mpop || need+=(mpop)
have getmail || need+=(getmail6)
have doveadm || need+=(dovecot-core)
[ -x /usr/sbin/dovecot ] && [ -e /usr/lib/dovecot/pop3 ] || need+=(dovecot-pop3d)
have openssl || need+=(openssl)
have promtool || need+=(prometheus)
have pamtester || need+=(pamtester)
[ -x /usr/sbin/haproxy ] || need+=(haproxy)
[ -x /usr/sbin/postfix ] || need+=(postfix)
have swaks || need+=(swaks)
# swaks --tls needs Net::SSLeay (the STARTTLS test of the SMTP intake).
perl -MNet::SSLeay -e1 2>/dev/null || need+=(libnet-ssleay-perl)
have redis-server || need+=(redis-server)
have redis-sentinel || need+=(redis-sentinel)
have redis-cli || need+=(redis-tools)
[ -x /usr/sbin/slapd ] || need+=(slapd)
have ldapmodify || need+=(ldap-utils)
[ -x /usr/sbin/samba ] || need+=(samba)
have samba-tool || need+=(samba-common-bin)
[ -d /usr/share/samba/setup ] || need+=(samba-ad-provision)
/usr/bin/python3 -c 'import samba' 2>/dev/null || need+=(python3-samba)
# The AD provision sets sysvol ACLs through the acl_xattr VFS module.
compgen -G '/usr/lib/*/samba/vfs/acl_xattr.so' >/dev/null || need+=(samba-vfs-modules)
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Packages must not start their services (slapd, samba, postfix, redis would take ports the
  # tests use): without a policy-rc.d, add one refusing every start for the install only.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod 755 /usr/sbin/policy-rc.d
    trap "$SUDO rm -f /usr/sbin/policy-rc.d" EXIT
  fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# versitygw (S3 server, Apache-2.0) is built from source with Go; libs/testkit finds it on PATH,
# $GOBIN, $GOPATH/bin, ~/go/bin or /usr/local/bin.
vgw_dirs=("${GOBIN:-}" "${GOPATH:+$GOPATH/bin}" "$HOME/go/bin" /usr/local/bin)
vgw_found() {
  have versitygw && return 0
  local d
  for d in "${vgw_dirs[@]}"; do [ -n "$d" ] && [ -x "$d/versitygw" ] && return 0; done
  return 1
}
if ! vgw_found; then
  have go || { echo "versitygw is missing and Go is not installed (needed: go install github.com/versity/versitygw/cmd/versitygw@v1.7.0)" >&2; exit 1; }
  if [ -n "${GOBIN:-}" ]; then gobin="$GOBIN"; elif [ "$(id -u)" -eq 0 ]; then gobin=/usr/local/bin; else gobin="$HOME/go/bin"; fi
  echo "installing: versitygw v1.7.0 into $gobin"
  GOBIN="$gobin" go install github.com/versity/versitygw/cmd/versitygw@v1.7.0
fi
# helm (Apache-2.0; services/server/test/helm.test.ts lints and renders the chart) is not a Debian
# package: built from source with Go like versitygw, looked for in the same places.
helm_at=""
for d in "${vgw_dirs[@]}"; do [ -n "$d" ] && [ -x "$d/helm" ] && helm_at="$d/helm"; done
if ! have helm && [ -z "$helm_at" ]; then
  have go || { echo "helm is missing and Go is not installed (needed: go install helm.sh/helm/v3/cmd/helm@v3.19.0)" >&2; exit 1; }
  gobin="${GOBIN:-$([ "$(id -u)" -eq 0 ] && echo /usr/local/bin || echo "$HOME/go/bin")}"
  echo "installing: helm v3.19.0 into $gobin"
  GOBIN="$gobin" go install helm.sh/helm/v3/cmd/helm@v3.19.0
fi
