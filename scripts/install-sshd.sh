#!/usr/bin/env bash
# Install OpenSSH's server (Debian package `openssh-server`) for the multi-host deploy tests
# (tests/multihost): they start one `sshd -D -f <config>` per network namespace themselves.
#
# The packaged service is never started: while apt installs, a temporary policy-rc.d (the Debian
# mechanism maintainer scripts ask before starting a service) answers "no" unless one is already
# there. Idempotent: exits at once when sshd is present. Uses sudo when not root.
set -euo pipefail

say() { echo "install-sshd: $*"; }
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; then
  say "already installed: $(/usr/sbin/sshd -V 2>&1 | head -1)"
  exit 0
fi
. "$(dirname "$0")/apt-install-no-services.sh"
apt_install_no_services install-sshd openssh-server openssh-client iproute2
[ -x /usr/sbin/sshd ] || { say "openssh-server installed but /usr/sbin/sshd is missing" >&2; exit 1; }
say "installed: $(/usr/sbin/sshd -V 2>&1 | head -1) (service not started; tests run sshd per namespace)"
