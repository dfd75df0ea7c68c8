#!/usr/bin/env bash
# `make demo`: the demo API on 127.0.0.1:3000, gardien-backend on 127.0.0.1:8081 (SQLite in
# target/demo/), and gardien with policies/dev.yaml on 127.0.0.1:8080 (admin
# 127.0.0.1:9090), in the foreground. Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=target/debug
export DEMO_ADMINS="${DEMO_ADMINS:-admin@example.com}"
# Keys X-Gardien-Identity, which the demo API echoes on /api/me. A demo value: production
# reads a real secret (see docs/IDENTITY.md).
export GARDIEN_INTERNAL_SECRET="${GARDIEN_INTERNAL_SECRET:-demo-only-internal-secret-0123456789abcdef}"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # url, name, pid
  for _ in $(seq 1 100); do
    if curl -fs -o /dev/null "$1" 2>/dev/null; then return 0; fi
    if ! kill -0 "$3" 2>/dev/null; then echo "error: $2 exited; see the lines above" >&2; exit 1; fi
    sleep 0.1
  done
  echo "error: $2 did not answer at $1 within 10s" >&2
  exit 1
}

"$bin/examples/demo_api" &
pids+=($!)
wait_for http://127.0.0.1:3000/api/health "the demo API" "${pids[-1]}"

mkdir -p target/demo
GARDIEN_ENVIRONMENT="${GARDIEN_ENVIRONMENT:-dev}" \
  DATABASE_URL="${DATABASE_URL:-sqlite://target/demo/backend.db?mode=rwc}" "$bin/gardien-backend" &
pids+=($!)
wait_for http://127.0.0.1:8081/healthz "gardien-backend" "${pids[-1]}"

"$bin/gardien" check --policy policies/dev.yaml
GARDIEN_LOG="${GARDIEN_LOG:-info}" "$bin/gardien" run --policy policies/dev.yaml &
pids+=($!)
wait_for http://127.0.0.1:9090/healthz "gardien" "${pids[-1]}"

cat <<'TXT'

gardien is running: proxy http://127.0.0.1:8080, admin http://127.0.0.1:9090,
in front of the demo API on http://127.0.0.1:3000 and gardien-backend on
http://127.0.0.1:8081. Try, from another terminal:

  # A CORS preflight from the frontend's origin, answered by gardien itself (204)
  curl -si -X OPTIONS http://127.0.0.1:8080/api/auth/register \
    -H 'Origin: http://localhost:5173' \
    -H 'Access-Control-Request-Method: POST' \
    -H 'Access-Control-Request-Headers: content-type'

  # The same preflight from an origin the policy does not list (403, JSON error)
  curl -si -X OPTIONS http://127.0.0.1:8080/api/auth/register \
    -H 'Origin: https://evil.example' \
    -H 'Access-Control-Request-Method: POST'

  # Sign up, then log in (the token comes back as JSON)
  curl -si http://127.0.0.1:8080/api/auth/register \
    -H 'Origin: http://localhost:5173' -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery"}'
  curl -s http://127.0.0.1:8080/api/auth/login \
    -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery"}'

  # A protected route: without a token 401; with it, the API sees the identity gardien
  # took from the verified token (X-User-Id, X-User-Email, X-User-Roles, signed)
  curl -si http://127.0.0.1:8080/api/me
  TOKEN=$(curl -s http://127.0.0.1:8080/api/auth/login \
    -H 'Content-Type: application/json' \
    -d '{"email":"ada@example.com","password":"correct horse battery"}' \
    | sed -E 's/.*"token":"([^"]+)".*/\1/')
  curl -s http://127.0.0.1:8080/api/me -H "Authorization: Bearer $TOKEN"

  # A client cannot claim an identity: the spoofed header never reaches the API
  curl -s http://127.0.0.1:8080/api/me -H "Authorization: Bearer $TOKEN" -H 'X-User-Id: admin'

  # gardien-backend, through gardien: notification preferences and reports
  curl -si http://127.0.0.1:8080/api/notifications/preferences -H "Authorization: Bearer $TOKEN"
  curl -s -X PATCH http://127.0.0.1:8080/api/notifications/preferences \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{"digest":"daily"}'
  curl -s http://127.0.0.1:8080/api/reports -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"title":"Q1","type":"summary","payload":{"rows":3}}'
  curl -s http://127.0.0.1:8080/api/reports -H "Authorization: Bearer $TOKEN"
  # Straight to the backend, bypassing gardien: refused (401), whatever X-User-Id says
  curl -si http://127.0.0.1:8081/api/reports -H 'X-User-Id: admin'

  # A path no route takes: the gateway's JSON error with its request id (404)
  curl -si http://127.0.0.1:8080/nowhere

  # Health, readiness (every upstream reachable, the JWKS loaded) and metrics
  curl -s http://127.0.0.1:9090/healthz
  curl -s http://127.0.0.1:9090/readyz
  curl -s http://127.0.0.1:9090/metrics | grep '^gardien_requests_total'

Ctrl-C stops the demo.
TXT
wait -n "${pids[@]}"
