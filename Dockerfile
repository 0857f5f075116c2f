# Multi-stage image of the dataplane: built with Debian's libdpdk-dev, run with only the DPDK
# libraries the binary links and the PMD plugins it loads.
#   podman build -t dataplane .
#   podman run --privileged -v /dev/hugepages:/dev/hugepages -v /tmp/dataplane:/tmp/dataplane dataplane run
FROM docker.io/library/debian:bookworm-slim AS build
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      libdpdk-dev clang libclang-dev pkg-config cargo-web rustc-web ca-certificates >/dev/null
WORKDIR /src
COPY . .
# cargo-web/rustc-web: Debian 12's current Rust (the plain cargo package is too old).
RUN cargo build --release -p dataplane --bin dataplane

FROM docker.io/library/debian:bookworm-slim
# Debian's dpdk package only recommends its libraries: name the ones the binary links
# (ldd) and the plugins it loads (mempool ring, bus vdev/pci, vhost, virtio, iavf/ice/mlx5 VFs, ring, memif, pcap, tap, af_packet).
RUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-ring23 librte-acl23 \
      librte-mempool-ring23 librte-bus-vdev23 librte-bus-pci23 librte-net-vhost23 librte-vhost23 \
      librte-net-virtio23 librte-net-iavf23 librte-net-ice23 librte-net-i40e23 librte-net-ring23 \
      librte-net-memif23 librte-net-pcap23 librte-net-tap23 librte-net-af-packet23 librte-pdump23 \
      iproute2 util-linux >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/dataplane /usr/local/bin/dataplane
COPY config/ /etc/dataplane/
ENTRYPOINT ["/usr/local/bin/dataplane"]
CMD ["run", "--stats-period", "5"]
