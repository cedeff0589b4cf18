#!/usr/bin/env bash
# Install the Prometheus server and promtool (Debian package `prometheus`) for the tests that
# run a real Prometheus against a live run (tests/deploy/test_prometheus_live.py).
#
# The tests start the binary themselves on a free port with their own data dir; this script
# never starts the packaged service: while apt installs, a temporary policy-rc.d (the Debian
# mechanism that maintainer scripts ask before starting a service) answers "no" unless one
# is already there. Idempotent: exits at once when both binaries are present. Uses sudo when
# not root.
set -euo pipefail

say() { echo "install-prometheus: $*"; }
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  say "already installed: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi
. "$(dirname "$0")/apt-install-no-services.sh"
apt_install_no_services install-prometheus prometheus
command -v promtool >/dev/null 2>&1 || { say "prometheus installed but promtool is missing" >&2; exit 1; }
say "installed: $(prometheus --version 2>&1 | head -1) (service not started; tests run the binary)"
