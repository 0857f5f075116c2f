//! Generates raw bindings to the system DPDK with bindgen, and compiles C wrappers for its
//! `static inline` functions (bindgen's `wrap_static_fns`) with the same cflags pkg-config gives.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=build.rs");

    let dpdk = match pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) => {
            eprintln!("{e}");
            panic!("DPDK >= 22.11 not found by pkg-config: install it with `apt-get install -y dpdk dpdk-dev libdpdk-dev clang libclang-dev pkg-config`");
        }
    };
    // The exact compile flags pkg-config gives (includes `-include rte_config.h -march=corei7`).
    let cflags_out = std::process::Command::new("pkg-config")
        .args(["--cflags", "libdpdk"])
        .output()
        .expect("running pkg-config --cflags libdpdk");
    let cflags: Vec<String> = String::from_utf8_lossy(&cflags_out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();

    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wrap_path = out.join("static_fns");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function("rte_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        .allowlist_var("rte_.*")
        .allowlist_var("per_lcore__.*")
        // Structs both packed and aligned: bindgen cannot lay them out.
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_.*")
        .opaque_type("rte_avp_.*")
        .blocklist_function("rte_.*_vlog")
        .blocklist_function("rte_vlog")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .prepend_enum_name(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(&wrap_path)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("bindgen failed on the DPDK headers");
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");

    let mut build = cc::Build::new();
    build
        .file(wrap_path.with_extension("c"))
        .include(env::current_dir().unwrap())
        .opt_level(3)
        .warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("dpdk_static_fns");

    for l in &dpdk.libs {
        println!("cargo:rustc-link-lib={l}");
    }
    // The ring PMD is a plugin, but `rte_eth_from_rings` (in-process ring ports for tests and
    // labs) is its public API: link it by name (`--as-needed` drops it where unused). The same
    // for the vhost PMD's `rte_eth_vhost_get_vid_from_port_id` (the direct vhost data path).
    println!("cargo:rustc-link-lib=rte_net_ring");
    println!("cargo:rustc-link-lib=rte_net_vhost");
    for p in &dpdk.link_paths {
        println!("cargo:rustc-link-search=native={}", p.display());
    }
}
