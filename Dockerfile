# syntax=docker/dockerfile:1
# kamaji-rs: a static (musl) `kamaji` binary on a distroless static base,
# running as the non-root user 65532, read-only root filesystem friendly (it
# writes nothing to disk).
#
#   docker build -t kamaji-rs:0.1.0 .
#   helm install kamaji-rs deploy/helm/kamaji-rs -n kamaji-system --create-namespace \
#     --set image.repository=<registry>/kamaji-rs --set image.tag=0.1.0
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 (each
# platform is built in its own, possibly emulated, build stage).

# The toolchain the project is developed with; pin the images by digest for
# reproducible builds (docker buildx imagetools inspect <image>).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# aws-lc-sys (TLS and key generation) compiles C: a C toolchain, cmake, perl.
RUN apk add --no-cache build-base cmake perl
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo reads every target of the manifest, so the bench must exist; the
# tests, fuzz targets and the local cluster are not part of the image.
COPY benches ./benches
# Alpine's Rust targets *-linux-musl and links statically by default.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin kamaji \
    && cp target/release/kamaji /kamaji \
    && strip /kamaji \
    && if readelf -l /kamaji | grep -q 'program interpreter'; then echo "kamaji is not static" >&2; exit 1; fi

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="kamaji-rs" \
      org.opencontainers.image.description="Certificate-lifecycle operator for Kamaji-compatible TenantControlPlanes" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /kamaji /usr/local/bin/kamaji
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/kamaji"]
CMD ["manager"]
