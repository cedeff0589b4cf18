#!/usr/bin/env bash
# Install a software Vulkan driver that SAPIEN (ManiSkill 3) accepts on a CPU-only host.
#
# Debian 12's stock lavapipe (Mesa 22.3) is rejected by SAPIEN ("Failed to find a
# supported physical device": no descriptorBindingPartiallyBound). Mesa >= 23 from
# bookworm-backports works. This script:
#   1. adds bookworm-backports to the Debian entry of the apt sources (deb822 or
#      classic sources.list), once;
#   2. installs mesa-vulkan-drivers from backports plus libvulkan1;
#   3. prints the lavapipe ICD file (export VK_ICD_FILENAMES=<it> if the loader does
#      not pick it up on its own).
# Idempotent: each step is skipped when already done. Uses sudo when not root.
# GPU hosts do not need this: SAPIEN renders with the NVIDIA Vulkan driver.
set -euo pipefail

MIN_MESA_MAJOR=23
say() { echo "install-vulkan-driver: $*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { say "not root and no sudo; run as root" >&2; exit 1; }
  SUDO="sudo"
fi

mesa_major() {  # major version of the installed mesa-vulkan-drivers, or 0
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  case "$v" in "install ok installed "*) v=${v##* }; v=${v#*:}; echo "${v%%.*}" ;; *) echo 0 ;; esac
}

lvp_icd() {  # lavapipe's ICD manifest: lvp_icd.json (Mesa 25) or lvp_icd.<arch>.json (older)
  local f
  for f in /usr/share/vulkan/icd.d/lvp_icd.json /usr/share/vulkan/icd.d/lvp_icd.*.json; do
    [ -f "$f" ] && { echo "$f"; return 0; }
  done
  return 0
}

if [ "$(mesa_major)" -ge "$MIN_MESA_MAJOR" ] && [ -n "$(lvp_icd)" ] && dpkg-query -W libvulkan1 >/dev/null 2>&1; then
  say "already installed: mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers), $(lvp_icd)"
  exit 0
fi

[ -r /etc/os-release ] && . /etc/os-release
CODENAME=${VERSION_CODENAME:-unknown}
APT_TARGET=()
if [ "${ID:-}" = debian ] && [ "$CODENAME" = bookworm ]; then
  BACKPORTS="bookworm-backports"
  DEB822=/etc/apt/sources.list.d/debian.sources
  if grep -rqs "$BACKPORTS" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    say "apt sources already list $BACKPORTS"
  elif [ -f "$DEB822" ] && grep -Eq '^Suites:.*\bbookworm\b' "$DEB822"; then
    # Append the suite to the main Debian entry's Suites: line (not the security entry).
    $SUDO sed -i -E "/^Suites:.*\bbookworm-security\b/! s/^(Suites:.*\bbookworm\b.*)$/\1 $BACKPORTS/" "$DEB822"
    say "added $BACKPORTS to the Suites: line of $DEB822"
  else
    echo "deb http://deb.debian.org/debian $BACKPORTS main" | $SUDO tee /etc/apt/sources.list.d/backports.list >/dev/null
    say "wrote /etc/apt/sources.list.d/backports.list"
  fi
  APT_TARGET=(-t "$BACKPORTS")
else
  say "not Debian 12 (${PRETTY_NAME:-unknown}); installing the distribution's mesa-vulkan-drivers (needs Mesa >= $MIN_MESA_MAJOR)"
fi

say "apt-get update"
$SUDO apt-get update -qq
say "apt-get install ${APT_TARGET[*]} mesa-vulkan-drivers libvulkan1"
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_TARGET[@]}" \
  mesa-vulkan-drivers libvulkan1 >/dev/null

major=$(mesa_major)
icd=$(lvp_icd)
if [ "$major" -lt "$MIN_MESA_MAJOR" ] || [ -z "$icd" ]; then
  say "installed mesa-vulkan-drivers major version $major, lavapipe ICD '${icd:-missing}': SAPIEN needs Mesa >= $MIN_MESA_MAJOR" >&2
  exit 1
fi
say "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers); lavapipe ICD: $icd"
say "if SAPIEN still finds no device: export VK_ICD_FILENAMES=$icd"
