#!/usr/bin/env bash
# Install the OpenGL/EGL libraries that MiniWorld needs to render headless on a CPU-only Debian host.
#
# pyglet (MiniWorld's GL binding) in headless mode opens an EGL pbuffer context: libEGL (glvnd, libegl1)
# dispatches to Mesa's EGL (libegl-mesa0), which renders with llvmpipe from libgl1-mesa-dri; MiniWorld
# also calls GLU (libglu1-mesa) and legacy GL (libgl1). When bookworm-backports is in the apt sources
# (scripts/install-vulkan-driver.sh adds it for ManiSkill's Mesa 25), the Mesa packages come from there too,
# so both drivers share one Mesa. Idempotent; uses sudo when not root.
# GPU hosts: the NVIDIA driver's EGL library serves the same calls; this script is not needed there.
set -euo pipefail
PKGS=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglu1-mesa)
say() { echo "install-gl-driver: $*"; }

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" = 0 ]; then
  say "already installed: ${PKGS[*]}"
  exit 0
fi

. "$(dirname "$0")/apt-install-no-services.sh"
if grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  apt_install_no_services install-gl-driver -t bookworm-backports "${PKGS[@]}"
else
  apt_install_no_services install-gl-driver "${PKGS[@]}"
fi
say "installed: ${PKGS[*]}"
