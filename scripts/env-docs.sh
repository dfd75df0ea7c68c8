#!/bin/sh
# Regenerates the generated blocks of docs/ENVIRONMENT.md from both binaries' `env-docs
# --format markdown` (`make env-docs`); the prose around them is left as it is.
# tests/env_docs.rs and backend/tests/env_docs.rs fail when the file drifts.
set -eu
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
doc=docs/ENVIRONMENT.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$cargo run -q --bin gardien -- env-docs --format markdown >"$tmp/gardien.md"
$cargo run -q -p gardien-backend --bin gardien-backend -- env-docs --format markdown >"$tmp/backend.md"

# Replaces the lines from the block's first line (its begin marker) to its last (its end
# marker) in $doc with the block.
splice() {
	begin=$(head -n 1 "$1")
	end=$(tail -n 1 "$1")
	if ! grep -qxF "$begin" "$doc" || ! grep -qxF "$end" "$doc"; then
		echo "$doc: the markers $begin / $end are missing" >&2
		exit 1
	fi
	awk -v begin="$begin" -v end="$end" -v block="$1" '
		$0 == begin { while ((getline line < block) > 0) print line; skip = 1; next }
		skip && $0 == end { skip = 0; next }
		!skip { print }
	' "$doc" >"$tmp/doc"
	cat "$tmp/doc" >"$doc"
}
splice "$tmp/gardien.md"
splice "$tmp/backend.md"
echo "$doc: regenerated"
