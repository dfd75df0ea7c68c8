# shellcheck shell=bash
# Sourced by scripts/image.sh and scripts/image/check.sh: the flags `podman run` and
# `podman build` need on this host, each for a reason found here, so the same commands
# work on an operator's machine (where they add nothing) and in a restricted sandbox.
#
# podman_flags        for `podman run` / `podman create`
# podman_build_flags  for `podman build`

podman_flags=()
podman_build_flags=()

# The OCI runtime. crun (Podman's default) refuses a host whose cgroups are in hybrid mode
# with a controller still enabled on the cgroup v2 hierarchy ("cgroups in hybrid mode not
# supported, drop all controllers from cgroupv2"); runc runs there, and everywhere else.
# PODMAN_RUNTIME overrides the choice.
if [ -n "${PODMAN_RUNTIME:-}" ]; then
  podman_flags+=(--runtime "$PODMAN_RUNTIME")
  podman_build_flags+=(--runtime "$PODMAN_RUNTIME")
elif [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  command -v runc >/dev/null || {
    echo "error: cgroups are in hybrid mode here and crun refuses that: install runc (scripts/install-deps.sh test does)" >&2
    exit 1
  }
  podman_flags+=(--runtime runc)
  podman_build_flags+=(--runtime runc)
fi

# Resource limits. As root, Podman gives a container nofile and nproc limits of 1048576
# (or more), above the host's; raising a limit takes CAP_SYS_RESOURCE, and where the
# bounding set lacks it (a sandbox, some CI runners) every container fails to start
# ("setrlimit RLIMIT_NOFILE: Operation not permitted"). There, ask for what the host has.
cap_bounding=$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)
if [ -n "$cap_bounding" ] && (( ((16#$cap_bounding) >> 24 & 1) == 0 )); then
  # nproc counts the threads of uid 65532 on the whole host: ample for two containers.
  podman_flags+=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
fi
unset cap_bounding
