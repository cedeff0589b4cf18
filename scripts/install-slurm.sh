#!/usr/bin/env bash
# Install Slurm (Debian's `slurm-wlm`: slurmctld, slurmd, sbatch/srun/squeue/sacct/scontrol) and MUNGE for the
# one-node Slurm test (tests/multihost/test_slurm.py). The test writes its own slurm.conf and munge key and
# starts munged, slurmctld and slurmd itself, each with its state under a temporary directory.
#
# The packaged services are never started: while apt installs, a temporary policy-rc.d (the Debian mechanism
# maintainer scripts ask before starting a service) answers "no" unless one is already there.
# Idempotent: exits at once when everything is present. Uses sudo when not root.
set -euo pipefail

say() { echo "install-slurm: $*"; }
have() { [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] && [ -x /usr/sbin/munged ] && command -v sbatch >/dev/null 2>&1; }
if have; then
  say "already installed: $(/usr/sbin/slurmctld -V 2>&1 | head -1), $(/usr/sbin/munged -V 2>&1 | head -1)"
  exit 0
fi
. "$(dirname "$0")/apt-install-no-services.sh"
apt_install_no_services install-slurm slurmctld slurmd slurm-client munge
have || { say "slurm-wlm installed but slurmctld/slurmd/munged/sbatch is missing" >&2; exit 1; }
say "installed: $(/usr/sbin/slurmctld -V 2>&1 | head -1), $(/usr/sbin/munged -V 2>&1 | head -1) (services not started; the test starts its own)"
