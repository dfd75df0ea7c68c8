# syntax=docker/dockerfile:1
# The image of the binaries: `gardien` (the gateway, the default entrypoint, serving
# policies/production.yaml), `gardien-backend` (run it with
# `command: ["/usr/local/bin/gardien-backend"]`) and `gardien-staging-check` (the last step
# of a deployment, run as a job with `--entrypoint /usr/local/bin/gardien-staging-check`).
# docs/IMAGE.md says how it is built, run and checked.
#
#   docker build -t gardien .                       # Cloud Build: builds in the `builder` stage
#   scripts/image.sh                                 # here: binaries built on the host, a local base
#
# Build arguments (each has the production value as its default):
#   RUST_IMAGE     the builder: the Rust toolchain the project is tested with, on Debian 12
#   RUNTIME_IMAGE  the base: glibc, CA certificates, the nonroot user, no shell
#   GARDIEN_GIT_COMMIT  the commit the binaries report (cloudbuild.yaml passes it)
#   BINARIES       `built` compiles in the builder stage; `prebuilt` copies
#                  target/image/bin/{gardien,gardien-backend,gardien-staging-check} from the context instead (built
#                  on a Debian 12 host, the same glibc as the base), for hosts that cannot
#                  pull a Rust image
ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG BINARIES=built

# The release build of the binaries. cmake: C dependencies of the TLS and compression crates.
FROM ${RUST_IMAGE} AS builder
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The commit the binaries report (`/status`, `gardien_build_info`): the context has no .git.
ARG GARDIEN_GIT_COMMIT=
RUN cargo build --release --locked -p gardien -p gardien-backend \
        -p gardien-staging-check --bin gardien --bin gardien-backend --bin gardien-staging-check \
    && mkdir -p /out \
    && cp target/release/gardien target/release/gardien-backend target/release/gardien-staging-check /out/

FROM scratch AS built
COPY --from=builder /out/ /

# The legacy builder (no BuildKit) builds every stage, this one too, where the context has
# no prebuilt binaries (Cloud Build uploads no target/): the wildcard matches nothing there,
# and Cargo.toml, always present, keeps the COPY valid. BuildKit and Buildah skip the stage.
FROM scratch AS prebuilt
COPY Cargo.toml target/image/bin/gardien* /

# Whichever of the two BINARIES names: the stage the runtime copies from.
FROM ${BINARIES} AS binaries

# The runtime: nothing but the binaries and the shipped policies on a shell-less base.
FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=binaries /gardien /gardien-backend /gardien-staging-check /usr/local/bin/
COPY policies/dev.yaml policies/staging.yaml policies/production.yaml /etc/gardien/policies/
# nonroot in distroless (and in scripts/image.sh's local base): never root at run time.
USER 65532:65532
# The backend listens on every interface in a container (its default is loopback, for a
# host); the gateway's listeners come from the policy (0.0.0.0:8080 and 0.0.0.0:9090).
ENV BACKEND_LISTEN=0.0.0.0:8081
# 8080 the proxy, 9090 the gateway's admin listener, 8081 the backend.
EXPOSE 8080 9090 8081
# The policy is pinned: an image never serves the dev default. Staging runs the same image
# with its own command (`gardien run --policy /etc/gardien/policies/staging.yaml`), as
# docs/IMAGE.md shows; extra arguments (`--ready-file PATH`) are appended to this one.
ENTRYPOINT ["/usr/local/bin/gardien", "run", "--policy", "/etc/gardien/policies/production.yaml"]
