# Sourced by the scripts/install-*.sh that put Debian packages on a test machine (Prometheus, sshd, Slurm):
#
#     . "$(dirname "$0")/apt-install-no-services.sh"
#     apt_install_no_services <tag> <package>...
#
# Installs the packages as root (sudo when not root) without starting their services: while apt runs, a
# temporary policy-rc.d (the Debian mechanism maintainer scripts ask before starting a service) answers "no",
# unless one is already there. The tests start the binaries themselves.
apt_install_no_services() {
  local tag="$1"
  shift
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "$tag: not root and no sudo; run as root" >&2; exit 1; }
    sudo="sudo"
  fi
  local policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# %s: no service starts during this install\nexit 101\n' "$tag" | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    # shellcheck disable=SC2064  # expand now: the trap runs after this function's locals are gone
    trap "$sudo rm -f '$policy'" EXIT
  fi
  echo "$tag: apt-get update"
  $sudo apt-get update -qq
  echo "$tag: apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
