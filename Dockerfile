# Multi-stage image of the dataplane: built with Debian's libdpdk-dev, run with only the DPDK
# libraries the binary links and the PMD plugins it loads.
#
# Build it with scripts/build-image, not `podman build .`: it stages the context (sources, the
# crates vendored so the build needs no crates.io), makes the debian:bookworm-slim base with
# debootstrap when no registry is reachable, and passes the podman flags this host needs.
# Run it (vhost-user sockets in /tmp/dataplane):
#   podman --runtime runc --cgroup-manager=cgroupfs run --rm --privileged \
#     --ulimit nofile=10000:10000 --ulimit nproc=1000:1000 \
#     -v /dev/hugepages:/dev/hugepages -v /tmp/dataplane:/tmp/dataplane localhost/dataplane
# In Kubernetes: config/kubernetes/ (DATAPLANE_CONFIG names the config, discovery does the rest).

FROM docker.io/library/debian:bookworm-slim AS build
# Debian 12's plain `rustc` (1.63) and `cargo` are too old for this workspace (Cargo.lock v4);
# `cargo-web`/`rustc-web` (bookworm-security) carry a current Rust and install the usual
# /usr/bin/cargo and /usr/bin/rustc.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libdpdk-dev clang libclang-dev pkg-config cargo-web rustc-web gcc libc6-dev ca-certificates >/dev/null \
 && cargo --version && rustc --version
WORKDIR /src
# The context scripts/build-image stages: the workspace sources, the crates vendored in
# vendor/ and .cargo/config.toml pointing cargo at them (offline build). Only what the build
# reads is copied, so edits to scripts or manifests do not recompile.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY vendor vendor
COPY ffi ffi
COPY pipeline pipeline
COPY dataplane dataplane
COPY perf perf
COPY config config
RUN cargo build --release --locked --offline -p dataplane --bin dataplane \
 && strip --strip-debug target/release/dataplane

FROM docker.io/library/debian:bookworm-slim
# Debian's dpdk package only recommends its libraries: name the ones the binary links
# (readelf -d: eal, ethdev, mbuf, mempool, pdump; acl for the ACL stage) and the plugins EAL
# loads from pmds-23.0: mempool ring, buses vdev/pci, vhost-user and virtio-user (vhost,
# virtio), Intel VFs (iavf, ice, i40e), ring, memif, pcap, tap, af_packet.
# Not included: mlx5 (pulls rdma-core); add librte-net-mlx5-23 for ConnectX VFs.
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-ring23 librte-acl23 librte-pdump23 \
      librte-mempool-ring23 librte-bus-vdev23 librte-bus-pci23 librte-net-vhost23 librte-vhost23 \
      librte-net-virtio23 librte-net-iavf23 librte-net-ice23 librte-net-i40e23 librte-net-ring23 \
      librte-net-memif23 librte-net-pcap23 librte-net-tap23 librte-net-af-packet23 >/dev/null \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY --from=build /src/target/release/dataplane /usr/local/bin/dataplane
COPY config/ /etc/dataplane/
COPY scripts/entrypoint.sh /usr/local/bin/entrypoint.sh
ENV DATAPLANE_CONFIG=/etc/dataplane/default.toml
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["run", "--stats-period", "5"]
