#!/usr/bin/env bash
# The image's smoke check (`scripts/image.sh --check`, `make image`, tests/image.rs): the
# image as built, run the way production runs it, on real processes on loopback.
#
#   - the image: entrypoint pinned to policies/production.yaml, user 65532:65532, the ports,
#     the three binaries, the three policies, a CA bundle, and no /bin/sh;
#   - gardien-backend from the image: `migrate up` and `migrate status` on a PostgreSQL
#     schema of its own, then serving (production, PostgreSQL) as the gateway's `backend`;
#   - gardien from the image, its entrypoint unchanged (production policy): a static `api`
#     upstream, the JWKS over HTTPS (a CA made here, trusted through SSL_CERT_FILE), Redis,
#     the identity secret in /run/secrets; /healthz, /readyz, rate limits in Redis, a
#     proxied request (status and security headers), a protected route refused without a
#     token, both processes as uid 65532;
#   - gardien-staging-check from the image against that gateway: its flows run (the
#     refused origin is refused) up to the sign-up, which the static API cannot serve.
#
# One line per check; exits non-zero at the first failure, with the containers' logs.
# Usage: scripts/image/check.sh IMAGE
#   REDIS_URL                 Redis for the gateway (default redis://127.0.0.1:6379)
#   IMAGE_CHECK_POSTGRES_URL  PostgreSQL for the backend, a schema of its own is made and
#                             dropped (default postgres://postgres@127.0.0.1:5432/test)
#
# Containers use the host's network (`--network host`): the upstreams, Redis and PostgreSQL
# are on the host's loopback, and both processes bind port 0 and write the address they
# bound to a ready file, so no port is guessed or published.
set -euo pipefail
cd "$(dirname "$0")/../.."

image="${1:?usage: scripts/image/check.sh IMAGE}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
postgres_url="${IMAGE_CHECK_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
source scripts/image/podman-flags.sh

entrypoint='["/usr/local/bin/gardien","run","--policy","/etc/gardien/policies/production.yaml"]'
hsts='max-age=63072000; includeSubDomains'
origin=https://app.example.com

mkdir -p target/image
run=$(mktemp -d "$PWD/target/image/check.XXXXXX")
tag=$(basename "$run" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-')
schema="gimg_$(basename "$run" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '_')"
gateway="gardien-$tag"
backend="gardien-backend-$tag"
pids=()
containers=()
schema_made=false
image_mounted=false

cleanup() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    for container in "${containers[@]}"; do
      echo "--- podman logs $container (last 40 lines)" >&2
      podman logs --tail 40 "$container" >&2 2>&1 || true
    done
  fi
  for container in "${containers[@]}"; do podman rm -f -t 2 "$container" >/dev/null 2>&1 || true; done
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if $image_mounted; then podman image umount "$image" >/dev/null 2>&1 || true; fi
  if $schema_made; then psql -q "$postgres_url" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true; fi
  rm -rf "$run"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { printf 'ok: %s\n' "$1"; }
fail() { printf 'FAIL: %s\n' "$1" >&2; exit 1; }

# The content of `file` once it exists, within `seconds`; fails early if `container` (a
# name) or `pid` stopped.
wait_file() { # file, seconds, what, container-or-pid
  local deadline=$((SECONDS + $2))
  while [ ! -s "$1" ]; do
    if [ "$SECONDS" -ge "$deadline" ]; then fail "$3: nothing in $1 within $2s"; fi
    case "$4" in
      '' ) ;;
      *[!0-9]*) [ "$(podman inspect --format '{{.State.Running}}' "$4" 2>/dev/null)" = true ] || fail "$3: the container stopped" ;;
      *) kill -0 "$4" 2>/dev/null || fail "$3: the process exited" ;;
    esac
    sleep 0.1
  done
  cat "$1"
}

# --- the image as built ------------------------------------------------------------------
podman image exists "$image" || fail "no image $image: build it with scripts/image.sh"
[ "$(podman image inspect --format '{{json .Config.Entrypoint}}' "$image")" = "$entrypoint" ] \
  || fail "entrypoint is $(podman image inspect --format '{{json .Config.Entrypoint}}' "$image"), not $entrypoint"
ok "entrypoint pins the production policy: $entrypoint"
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[ "$user" = 65532:65532 ] || fail "the image's user is \`$user\`, not 65532:65532"
ok "user 65532:65532"
ports=$(podman image inspect --format '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}' "$image")
for port in 8080/tcp 9090/tcp 8081/tcp; do
  case " $ports" in *" $port "*) ;; *) fail "port $port is not exposed (exposed: $ports)" ;; esac
done
ok "exposes $ports"

root=$(podman image mount "$image")
image_mounted=true
for file in usr/local/bin/gardien usr/local/bin/gardien-backend usr/local/bin/gardien-staging-check; do
  [ -x "$root/$file" ] || fail "/$file is missing"
done
for policy in dev staging production; do
  cmp -s "$root/etc/gardien/policies/$policy.yaml" "policies/$policy.yaml" \
    || fail "/etc/gardien/policies/$policy.yaml is not policies/$policy.yaml"
done
[ -s "$root/etc/ssl/certs/ca-certificates.crt" ] || fail "no CA bundle at /etc/ssl/certs/ca-certificates.crt"
for shell in bin/sh bin/bash bin/dash usr/bin/sh; do
  if [ -e "$root/$shell" ] || [ -L "$root/$shell" ]; then fail "the image holds /$shell"; fi
done
podman image umount "$image" >/dev/null
image_mounted=false
ok "the three binaries, the three policies, a CA bundle; no shell in the file system"

if shell_out=$(podman run --rm "${podman_flags[@]}" --entrypoint /bin/sh "$image" -c true 2>&1); then
  fail "podman run --entrypoint /bin/sh succeeded"
fi
# runc: `stat /bin/sh: no such file or directory`; crun: `/bin/sh … No such file or directory`.
case "${shell_out,,}" in
  *"/bin/sh"*"no such file"*) ok "podman run --entrypoint /bin/sh fails: no such file" ;;
  *) fail "podman run --entrypoint /bin/sh failed, but not for want of a shell: $shell_out" ;;
esac

# --- the world around it: a CA, the JWKS over HTTPS, a static API, secrets ---------------
mkdir -p "$run/tls" "$run/jwks/.well-known" "$run/api/api" "$run/secrets" "$run/ready"
(
  cd "$run/tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=gardien-image-check-ca -keyout ca.key -out ca.pem 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /CN=127.0.0.1 -keyout server.key -out server.csr 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >server.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
    -extfile server.ext -out server.pem 2>/dev/null
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out signing.key 2>/dev/null
)
modulus=$(openssl rsa -in "$run/tls/signing.key" -noout -modulus 2>/dev/null | cut -d= -f2)
n=$(python3 -c 'import base64, sys; print(base64.urlsafe_b64encode(bytes.fromhex(sys.argv[1])).decode().rstrip("="))' "$modulus")
printf '{"keys":[{"kty":"RSA","kid":"image-check","use":"sig","alg":"RS256","n":"%s","e":"AQAB"}]}\n' "$n" \
  >"$run/jwks/.well-known/jwks.json"
echo ok >"$run/api/api/health"
internal_secret=$(openssl rand -hex 32)
printf '%s' "$internal_secret" >"$run/secrets/GARDIEN_INTERNAL_SECRET"
printf '%s' "$postgres_url?options=-c%20search_path%3D$schema" >"$run/secrets/DATABASE_URL"
# Read by uid 65532 in the containers; the ready files are written by it.
chmod 755 "$run" "$run/tls" "$run/secrets"
chmod 644 "$run/tls/ca.pem" "$run/secrets"/*
chmod 777 "$run/ready"

python3 scripts/image/serve.py --root "$run/jwks" --ready-file "$run/jwks.port" \
  --cert "$run/tls/server.pem" --key "$run/tls/server.key" 2>"$run/jwks.log" &
pids+=($!)
jwks_port=$(wait_file "$run/jwks.port" 10 "the JWKS server" "${pids[-1]}")
python3 scripts/image/serve.py --root "$run/api" --ready-file "$run/api.port" 2>"$run/api.log" &
pids+=($!)
api_port=$(wait_file "$run/api.port" 10 "the API upstream" "${pids[-1]}")
curl -fsS --cacert "$run/tls/ca.pem" -o /dev/null "https://127.0.0.1:$jwks_port/.well-known/jwks.json" \
  || fail "the JWKS server does not answer over HTTPS"
ok "upstreams: api http://127.0.0.1:$api_port, JWKS https://127.0.0.1:$jwks_port (CA of this run)"

psql -q "$postgres_url" -c "CREATE SCHEMA $schema" >/dev/null || fail "cannot make schema $schema at $postgres_url"
schema_made=true

common=("${podman_flags[@]}" --network host -v "$run/secrets:/run/secrets:ro" -e GARDIEN_ENVIRONMENT=production)
# No email or sms provider here: production refuses a backend with none unless told.
backend_env=(-e NOTIFY_EMAIL_PROVIDERS=none -e NOTIFY_SMS_PROVIDERS=none)

# --- gardien-backend from the image --------------------------------------------------------
podman run --rm "${common[@]}" "${backend_env[@]}" --entrypoint /usr/local/bin/gardien-backend "$image" migrate up >"$run/migrate.log" 2>&1 \
  || { cat "$run/migrate.log" >&2; fail "gardien-backend migrate up"; }
status_out=$(podman run --rm "${common[@]}" "${backend_env[@]}" --entrypoint /usr/local/bin/gardien-backend "$image" migrate status 2>&1) \
  || { echo "$status_out" >&2; fail "gardien-backend migrate status"; }
case "$status_out" in
  *" embedded, 0 pending"*) ;;
  *) echo "$status_out" >&2; fail "migrate status after migrate up does not say \`0 pending\`" ;;
esac
ok "gardien-backend migrate up, then migrate status: nothing pending (schema $schema)"

containers+=("$backend")
podman run -d --name "$backend" "${common[@]}" -v "$run/ready:/run/check" \
  -e BACKEND_LISTEN=127.0.0.1:0 -e BACKEND_READY_FILE=/run/check/backend "${backend_env[@]}" \
  --entrypoint /usr/local/bin/gardien-backend "$image" >/dev/null
backend_addr=$(wait_file "$run/ready/backend" 30 "gardien-backend" "$backend")
curl -fsS -o /dev/null "http://$backend_addr/readyz" || fail "gardien-backend /readyz at $backend_addr"
ok "gardien-backend serves on $backend_addr (production, PostgreSQL), /readyz 200"

# --- gardien from the image, its entrypoint unchanged ------------------------------------
containers+=("$gateway")
podman run -d --name "$gateway" "${common[@]}" -v "$run/ready:/run/check" \
  -v "$run/tls/ca.pem:/etc/gardien/check-ca.pem:ro" -e SSL_CERT_FILE=/etc/gardien/check-ca.pem \
  -e GARDIEN_LISTEN=127.0.0.1:0 -e GARDIEN_ADMIN_LISTEN=127.0.0.1:0 \
  -e GARDIEN_READY_FILE=/run/check/gateway -e GARDIEN_CLIENT_IP=direct \
  -e API_UPSTREAM_URL="http://127.0.0.1:$api_port" -e BACKEND_UPSTREAM_URL="http://$backend_addr" \
  -e FRONTEND_URL="$origin" -e FRONTEND_URL_PROD=https://www.example.com \
  -e JWT_ISSUER=https://id.example.com/ -e JWT_AUDIENCE=api.example.com \
  -e JWKS_URL="https://127.0.0.1:$jwks_port/.well-known/jwks.json" \
  -e REDIS_URL="$redis_url" \
  "$image" >/dev/null
ready=$(wait_file "$run/ready/gateway" 30 "gardien" "$gateway")
listen=$(printf '%s\n' "$ready" | sed -n 's/^listen=//p')
admin=$(printf '%s\n' "$ready" | sed -n 's/^admin_listen=//p')
if [ -z "$listen" ] || [ -z "$admin" ]; then fail "the ready file holds \`$ready\`"; fi
ok "gardien serves production.yaml: proxy $listen, admin $admin"

code=$(curl -sS -o "$run/healthz" -w '%{http_code}' "http://$admin/healthz")
[ "$code" = 200 ] || fail "/healthz answered $code: $(cat "$run/healthz")"
ok "/healthz 200"

# Ready once both upstreams' health checks passed, the JWKS is loaded and Redis answers.
deadline=$((SECONDS + 30))
until code=$(curl -sS -o "$run/readyz" -w '%{http_code}' "http://$admin/readyz") && [ "$code" = 200 ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "/readyz still $code after 30s: $(cat "$run/readyz")"
  sleep 0.2
done
json_field() { python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2].split("."): value = value[key]
print(value)' "$@"; }
[ "$(json_field "$run/readyz" status)" = ready ] || fail "/readyz is not \`ready\`: $(cat "$run/readyz")"
ok "/readyz 200 ready (api and backend healthy, the JWKS loaded over HTTPS)"

# Rate limits decided in Redis, not the local fallback: REDIS_URL reached from the container.
deadline=$((SECONDS + 10))
until curl -fsS -o "$run/status.json" "http://$admin/status.json" \
  && [ "$(json_field "$run/status.json" rate_limits.state)" = redis ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "rate limits are not decided in Redis ($redis_url) after 10s: $(cat "$run/status.json")"
  sleep 0.2
done
ok "rate limits decided in Redis ($redis_url)"
served="$(json_field "$run/status.json" environment) $(json_field "$run/status.json" policy.file)"
[ "$served" = "production /etc/gardien/policies/production.yaml" ] || fail "/status.json says it serves \`$served\`"
ok "/status.json: environment production, policy /etc/gardien/policies/production.yaml"

curl -sS -D "$run/headers" -o "$run/body" -H "Origin: $origin" "http://$listen/api/health" >/dev/null
header() { tr -d '\r' <"$run/headers" | sed -n "s/^$1: //Ip" | head -n 1; }
status=$(head -n 1 "$run/headers" | awk '{ print $2 }')
[ "$status" = 200 ] || fail "GET /api/health through the proxy answered $status"
[ "$(cat "$run/body")" = ok ] || fail "GET /api/health through the proxy: body \`$(cat "$run/body")\`, not the upstream's"
[ "$(header Strict-Transport-Security)" = "$hsts" ] \
  || fail "Strict-Transport-Security is \`$(header Strict-Transport-Security)\`, not production's \`$hsts\`"
[ "$(header X-Frame-Options)" = DENY ] || fail "X-Frame-Options is \`$(header X-Frame-Options)\`"
[ "$(header Access-Control-Allow-Origin)" = "$origin" ] || fail "no Access-Control-Allow-Origin: $origin"
[ -n "$(header X-Request-Id)" ] || fail "no X-Request-Id"
ok "GET /api/health through the proxy: 200 from the api upstream, HSTS \`$hsts\`, CORS, X-Request-Id"

code=$(curl -sS -o "$run/me" -w '%{http_code}' "http://$listen/api/me")
if [ "$code" != 401 ] || ! grep -q '"token_missing"' "$run/me"; then
  fail "GET /api/me without a token answered $code: $(cat "$run/me")"
fi
ok "GET /api/me without a token: 401 token_missing"

# The staging check from the image (how docs/DEPLOYMENT.md's last step runs it): it reaches
# the gateway and its first flow passes; sign-up needs the real API, which this static one
# is not, so the run as a whole fails and says so.
podman run --rm "${podman_flags[@]}" --network host --entrypoint /usr/local/bin/gardien-staging-check "$image" \
  --base-url "http://$listen" --origin "$origin" >"$run/staging-check.out" 2>&1 || true
grep -q '^ok   refused_origin ' "$run/staging-check.out" \
  || fail "gardien-staging-check from the image: no \`ok refused_origin\` line: $(cat "$run/staging-check.out")"
grep -q '^FAIL signup_login ' "$run/staging-check.out" \
  || fail "gardien-staging-check from the image: sign-up against a static API did not fail: $(cat "$run/staging-check.out")"
ok "gardien-staging-check from the image: refused_origin ok against the gateway, signup_login FAIL (a static API)"

for container in "$gateway" "$backend"; do
  pid=$(podman inspect --format '{{.State.Pid}}' "$container")
  uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$pid/status")
  [ "$uids" = "65532 65532 65532 65532" ] || fail "$container runs as uid $uids"
done
ok "both processes run as uid 65532 (real, effective, saved, fs)"
