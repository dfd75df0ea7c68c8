#!/usr/bin/env bash
# `make image`: builds the container image of Dockerfile with Podman on a host that cannot
# pull from a registry, and with --check proves it serves (docs/IMAGE.md).
#
#   1. the release binaries (`cargo build --release`; skipped with --no-build);
#   2. a local base, once: Debian 12 from `debootstrap --variant=minbase`, cut down to what
#      gcr.io/distroless/cc-debian12:nonroot holds (glibc, libgcc_s, CA certificates, the
#      nonroot user; no shell, no package manager) and imported as localhost/gardien-base;
#   3. the image: the Dockerfile's `prebuilt` stage on that base (no Rust image to pull);
#   4. with --check, scripts/image/check.sh: the gateway from the image with the production
#      policy, in front of real loopback upstreams, Redis and the backend from the same image.
#
# Usage: scripts/image.sh [--check] [--no-build] [--tag IMAGE]
#   IMAGE            the tag to build (default localhost/gardien:local)
#   CARGO_TARGET_DIR where the release binaries are (default target/)
#   DEBIAN_MIRROR    where debootstrap downloads from (default: the host's apt source)
# The check reads REDIS_URL and IMAGE_CHECK_POSTGRES_URL (see scripts/image/check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
build=true
image="${IMAGE:-localhost/gardien:local}"
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=true ;;
    --no-build) build=false ;;
    --tag) image="$2"; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument \`$1\` (see --help)" >&2; exit 2 ;;
  esac
  shift
done

base_image=localhost/gardien-base:bookworm
work=target/image
target_dir="${CARGO_TARGET_DIR:-target}"
started=$SECONDS

step() { printf '%s (%ss)\n' "$1" "$((SECONDS - started))"; }
fail() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || fail "run as root: the local base is made with debootstrap and the check runs Podman as root"
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || fail "$tool is missing: scripts/install-deps.sh test installs it"
done
source scripts/image/podman-flags.sh

# 1. The binaries, built on this Debian 12 host: the same glibc as the distroless base.
if $build; then
  cargo build --release --locked -p gardien -p gardien-backend -p gardien-staging-check \
    --bin gardien --bin gardien-backend --bin gardien-staging-check
fi
mkdir -p "$work/bin"
for binary in gardien gardien-backend gardien-staging-check; do
  [ -x "$target_dir/release/$binary" ] || fail "$target_dir/release/$binary is missing: run without --no-build (or cargo build --release --workspace --bins)"
  # A hard link when the target directory is on the same file system, else a copy.
  ln -f "$target_dir/release/$binary" "$work/bin/$binary" 2>/dev/null || cp -f "$target_dir/release/$binary" "$work/bin/$binary"
done
step "binaries: $target_dir/release/{gardien,gardien-backend,gardien-staging-check}"

# 2. The local base, made once and cached as a Podman image (and its tree under target/).
if ! podman image exists "$base_image"; then
  scripts/image/base.sh "$work/base" "${DEBIAN_MIRROR:-}"
  tar -C "$work/base/tree" --numeric-owner -cf - . | podman import --quiet - "$base_image" >/dev/null
  step "base: $base_image imported from $work/base/tree"
else
  step "base: $base_image (cached; podman rmi it to make it again)"
fi

# Every library the binaries load is in the base (it is cut down by hand, and a new
# dependency can bring a new library): looked up in the base image itself.
base_root=$(podman image mount "$base_image")
trap 'podman image umount "$base_image" >/dev/null 2>&1 || true' EXIT
for binary in gardien gardien-backend gardien-staging-check; do
  for lib in $(ldd "$work/bin/$binary" | awk '$2 == "=>" { print $1 } $1 ~ /^\// { print $1 }'); do
    if [ -z "$(find "$base_root/usr/lib" "$base_root/usr/lib64" -name "$(basename "$lib")" -print -quit 2>/dev/null)" ]; then
      fail "$binary needs $lib, which $base_image does not hold: add its package to scripts/image/base.sh, then podman rmi $base_image"
    fi
  done
done
podman image umount "$base_image" >/dev/null
trap - EXIT

# 3. The image: the Dockerfile's runtime stage on the local base, binaries from the host.
# Each build has new binaries: the stages it leaves (untagged) and the image it replaces
# under the same tag are removed, so old binaries do not pile up in Podman's storage.
# (Not --layers=false: Buildah then cannot resolve `FROM ${BINARIES}`, a stage.)
previous=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
untagged_before=$(podman images --all --quiet --no-trunc --filter dangling=true | sort)
podman build --quiet "${podman_build_flags[@]}" \
  --build-arg BINARIES=prebuilt \
  --build-arg RUNTIME_IMAGE="$base_image" \
  --tag "$image" . >/dev/null
left=$(comm -13 <(echo "$untagged_before") <(podman images --all --quiet --no-trunc --filter dangling=true | sort))
if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "$image")" ]; then
  left="$left $previous"
fi
for id in $left; do podman rmi "$id" >/dev/null 2>&1 || true; done
step "image: $image ($(podman image inspect --format '{{.Size}}' "$image" | awk '{ printf "%.0f MB", $1 / 1e6 }'))"

# 4. The smoke check.
if $check; then
  scripts/image/check.sh "$image"
  step "check: passed"
fi
