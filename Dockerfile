# The storehook image: `docker build -t storehook .` (see docs/deploy.md).
# Two stages: the release binary is built with the locked dependencies, and only it, the
# shipped configuration and the mappings go into a distroless runtime image (glibc, libgcc,
# root certificates; no shell, no package manager).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole workspace (bench/loadgen is a member, and the manifest names tests and benches),
# less what .dockerignore leaves out.
COPY . .
# A smaller binary, the same code: symbols stripped (panics still name their location),
# and optimised across crates as one unit (a longer build; about a fifth smaller).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=fat \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
RUN cargo build --release --locked --bin storehook
# The directory the SQLite store lives in, made here: the runtime image has no shell.
RUN mkdir -p /rootfs/data

# Debian 12's C runtime and CA certificates, and the user `nonroot` (uid and gid 65532).
FROM gcr.io/distroless/cc-debian12:nonroot
# /data belongs to the user storehook runs as: mount a volume there (a fresh named Docker
# volume, and Fly.io's volume, are owned by it).
COPY --from=build --chown=65532:65532 /rootfs/ /
WORKDIR /app
COPY --from=build /src/target/release/storehook /usr/local/bin/storehook
# The shipped configuration (the binary also carries a copy) and mapping files, read from
# the working directory; mount your own over them to change them without a rebuild.
COPY storehook.toml ./
COPY mappings ./mappings
ENV STOREHOOK_STORE_URL=sqlite:///data/storehook.db \
    STOREHOOK_LOG_FORMAT=json \
    PORT=8080
USER 65532
EXPOSE 8080
# storehook is PID 1: it stops on SIGTERM, after answering the requests in progress and
# letting attempts in flight finish for delivery.shutdown_grace.
CMD ["storehook", "serve"]
