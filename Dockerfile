# syntax=docker/dockerfile:1
#
# The cluster programs in one image: rpcnet-node (a bare member, the seed
# in deploy/kubernetes/), rpcnet-worker and the rpcnet tool.
#
#   docker build -t rpcnet:0.2.0 .
#
# No certificate or key is in the image: mount them (a Kubernetes Secret,
# see docs/DEPLOY.md) and point RPCNET_CERT, RPCNET_KEY and RPCNET_CA at
# them. Every flag of rpcnet-node and rpcnet-worker has an RPCNET_*
# variable (`rpcnet-worker --help`).

# The toolchain the crate requires (rust-version in Cargo.toml), on the
# same Debian release as the runtime stage, so the binaries find the glibc
# they were linked against.
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# The release profile keeps debug information for profiling (Cargo.toml);
# the image has no use for it: about 10 MB a program instead of 60.
ENV CARGO_PROFILE_RELEASE_DEBUG=0
COPY . .
# Features: `admin` (the /ready and /alive probes, /metrics) and `cli`
# (the programs' flags and variables); not `bincode`, which none of these
# programs uses. The cache mounts keep the registry and the build between
# builds; the binaries are copied out of the cached target in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p rpcnet --no-default-features --features admin,cli \
        --bin rpcnet-node --bin rpcnet-worker --bin rpcnet \
    && mkdir -p /out \
    && cp target/release/rpcnet-node target/release/rpcnet-worker target/release/rpcnet /out/

FROM debian:bookworm-slim
# A user of its own, numeric in USER so that Kubernetes' runAsNonRoot can
# check it.
RUN groupadd --system --gid 10001 rpcnet \
    && useradd --system --uid 10001 --gid rpcnet --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin rpcnet
COPY --from=builder /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /tmp
# 7000/udp: RPC and membership gossip (QUIC); 9090/tcp: the admin endpoint
# (probes, metrics), when RPCNET_ADMIN_ADDR asks for it.
EXPOSE 7000/udp 9090/tcp
# The programs leave the cluster on SIGTERM (rpcnet-worker drains first).
STOPSIGNAL SIGTERM
CMD ["rpcnet-node"]
