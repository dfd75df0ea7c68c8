#!/usr/bin/env bash
# Installs the system packages gardien's build and tests need, when they are missing:
#   cmake            C dependencies of the TLS and compression crates
#   chromium         the real browser of the CORS test (tests/browser.rs)
#   chromium-driver  WebDriver for it
#   python3, python3-venv, curl
#                    the backend's contract test (scripts/contract-test.sh: schemathesis
#                    from PyPI in a virtualenv, the backend polled with curl)
#   prometheus       promtool, which checks and unit-tests deploy/prometheus/alerts.yaml,
#                    and the server tests/prometheus.rs runs them in
#   nodejs, npm      clients/node's tests (`make test-node`: `npm test`, Node's own runner)
#   podman, runc, debootstrap, openssl, postgresql-client
#                    the container image (`make image`, tests/image.rs): Podman builds it
#                    on a local Debian base made with debootstrap, runc runs it where crun
#                    cannot (hybrid cgroups), openssl makes the check's CA, psql its schema
# As root it installs them with apt-get; otherwise it says exactly what to run.
#   wrk              the closed-loop load generator of the load harnesses (benches/load.rs,
#                    benches/compare/)
#   haproxy          the anchor gardien is compared with (benches/compare/, benches/anchors/)
#   nginx-light      the comparison's upstream
#   valgrind         callgrind and massif, the profiles of docs/BENCHMARKS.md
#   oha              its open-loop (fixed-rate) load generator, from crates.io with cargo,
#                    into target/tools/oha (not a Debian package)
# Usage: scripts/install-deps.sh [build|test|bench|image]
#   postgresql-client  psql, with which the benchmarks make and drop their schemas
#   build: cmake; test: cmake, chromium, chromium-driver, python3, python3-venv, curl,
#   prometheus, nodejs, npm;
#   bench: cmake, wrk, haproxy, nginx-light, valgrind, postgresql-client, oha
#   image: cmake, podman, runc, debootstrap, openssl, python3, curl, postgresql-client
#   (test installs these too)
set -euo pipefail

want=(cmake)
case "${1:-test}" in
  test) want+=(chromium chromium-driver python3 python3-venv curl prometheus nodejs npm
    podman runc debootstrap openssl postgresql-client) ;;
  image) want+=(podman runc debootstrap openssl python3 curl postgresql-client) ;;
  bench) want+=(wrk haproxy nginx-light valgrind postgresql-client) ;;
esac

# Whether a package's part the project uses is already there (from any source: a
# python3 of pyenv will do as well as Debian's).
present() {
  case "$1" in
    chromium-driver) command -v /usr/bin/chromedriver ;;
    chromium) command -v /usr/bin/chromium ;;
    haproxy) command -v /usr/sbin/haproxy ;;
    nginx-light) command -v /usr/sbin/nginx ;;
    python3-venv) python3 -c 'import ensurepip, venv' ;;
    postgresql-client) command -v psql ;;
    prometheus) command -v promtool && test -x /usr/bin/prometheus ;;
    nodejs) command -v node ;;
    *) command -v "$1" ;;
  esac
}

install_oha() {
  local root=target/tools/oha
  [ -x "$root/bin/oha" ] && return 0
  command -v oha >/dev/null 2>&1 && return 0
  echo "installing oha (crates.io) into $root with cargo; a few minutes" >&2
  cargo install oha --version 1.16.0 --locked --root "$root" --quiet
}

missing=()
for package in "${want[@]}"; do
  if ! present "$package" >/dev/null 2>&1; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  [ "${1:-test}" = bench ] && install_oha
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system packages: ${missing[*]}" >&2
  echo "       install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing ${missing[*]} and no apt-get to install them; install them by hand" >&2
  exit 1
fi
echo "installing ${missing[*]} with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
[ "${1:-test}" = bench ] && install_oha
exit 0
