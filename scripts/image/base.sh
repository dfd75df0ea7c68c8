#!/usr/bin/env bash
# Makes the local stand-in for gcr.io/distroless/cc-debian12:nonroot, for hosts that cannot
# pull it (scripts/image.sh imports the result as localhost/gardien-base:bookworm):
# Debian 12 from `debootstrap --variant=minbase`, then only what distroless holds and the
# binaries need — the files of libc6, libgcc-s1 (Rust's unwinder), base-files and tzdata,
# the CA bundle of ca-certificates (JWKS, Secret Manager and SendGrid are https), the
# nonroot user 65532 — and nothing that runs: no shell, no coreutils, no package manager.
#
# Usage: scripts/image/base.sh DIR [MIRROR]
#   DIR     work directory: DIR/rootfs (debootstrap, removed once used), DIR/tree (the base)
#   MIRROR  the Debian mirror; default: the host's apt source for bookworm, else
#           http://deb.debian.org/debian
set -euo pipefail

dir="$1"
mirror="${2:-}"
packages=(libc6 libgcc-s1 base-files tzdata)

if [ -f "$dir/tree.done" ]; then
  exit 0
fi

# The mirror apt already reaches (a deb822 .sources file or a sources.list line), so
# debootstrap works wherever apt does.
host_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [ -f "$file" ] || continue
    awk 'BEGIN { RS = ""; FS = "\n" }
      /Suites:[^\n]*bookworm( |\n|$)/ && !/Types:[^\n]*deb-src/ {
        for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, f, " "); print f[2]; exit }
      }' "$file"
  done | head -n 1
  for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$file" ] || continue
    awk '$1 == "deb" && $3 == "bookworm" { print ($2 ~ /^\[/ ? $3 : $2); exit }' "$file"
  done | head -n 1
}
if [ -z "$mirror" ]; then
  mirror=$(host_mirror | head -n 1)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs="$dir/rootfs"
tree="$dir/tree"
rm -rf "$tree"
mkdir -p "$dir"
# A root debootstrap finished is kept until the base is made from it.
if [ ! -f "$dir/rootfs.done" ]; then
  rm -rf "$rootfs"
  echo "debootstrap --variant=minbase bookworm from $mirror (once; about a minute)" >&2
  debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" >"$dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$dir/debootstrap.log" >&2
    echo "error: debootstrap failed (whole log: $dir/debootstrap.log)" >&2
    exit 1
  }
  touch "$dir/rootfs.done"
fi

# Each package's files, with the directories' symlinks resolved (bookworm's /lib is a
# symlink to usr/lib: a file listed as /lib/x86_64-linux-gnu/libc.so.6 is stored once, at
# usr/lib/…, and /lib stays the symlink).
rootfs_abs=$(realpath "$rootfs")
list="$dir/files"
{
  printf '%s\n' bin lib lib64 sbin usr/lib64 usr/lib64/ld-linux-x86-64.so.2
  for package in "${packages[@]}"; do
    info=
    for candidate in "$rootfs/var/lib/dpkg/info/$package.list" "$rootfs/var/lib/dpkg/info/$package":*.list; do
      if [ -f "$candidate" ]; then info="$candidate"; break; fi
    done
    [ -n "$info" ] || { echo "error: $package is not in the debootstrap root" >&2; exit 1; }
    while IFS= read -r path; do
      [ "$path" = /. ] && continue
      parent=$(realpath "$rootfs$(dirname "$path")")
      parent="${parent#"$rootfs_abs"}"
      printf '%s\n' "${parent#/}${parent:+/}$(basename "$path")"
    done <"$info"
  done
  printf '%s\n' etc/ssl etc/ssl/certs etc/ssl/certs/ca-certificates.crt etc/nsswitch.conf
} | sed 's|^/||' | grep -v -E '^(etc/update-motd.d|etc/profile.d|usr/share/(doc|lintian|man|info))(/|$)' \
  | sort -u >"$list"
mkdir -p "$tree"
tar -C "$rootfs" --no-recursion -cf - -T "$list" | tar -C "$tree" -xf -

# The users of distroless: root, nobody, nonroot (65532), none with a login shell.
cat >"$tree/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
cat >"$tree/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
mkdir -p "$tree"/{dev,proc,sys,run,root,tmp,home/nonroot,usr/bin,usr/sbin,usr/local/bin}
chmod 1777 "$tree/tmp"
chmod 700 "$tree/root" "$tree/home/nonroot"
chown 65532:65532 "$tree/home/nonroot"

if [ -e "$tree/bin/sh" ] || [ -e "$tree/usr/bin/sh" ]; then
  echo "error: the base holds a shell; it must not" >&2
  exit 1
fi
touch "$dir/tree.done"
rm -rf "$rootfs" "$dir/rootfs.done"
echo "base: $(du -sh "$tree" | cut -f1) in $tree" >&2
