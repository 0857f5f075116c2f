//! `vm-bench`: the same dataplane binary and pipeline (`config/vm-guest.toml`) in a QEMU
//! guest on vhost-user virtio-net PCI ports (ports found from a nova config drive) and on
//! the host on virtio-user ports, with dpgen on the host as vhost-user server on both, runs
//! interleaved (vm host vm host ...). The accelerator is detected: under KVM with pinned
//! vCPUs the results carry `vm_vs_host`; under TCG the run is functional and has no ratio.
//!
//! ```text
//! vm-bench --mode vm   --rounds 3 --seconds 5 --json perf/results/vm.json
//! vm-bench --mode host --rounds 3 --seconds 5 --json perf/results/host.json
//! ```

use std::path::PathBuf;

use clap::Parser;
use perf::procs::{ensure_hugepages, Scratch};
use perf::vm::{
    build_image, detect_accel, missing_tools, run_host, run_vm, summarize, summary_line, Accel,
    GenOpts, GuestOpts, Run,
};
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "The dataplane in a QEMU guest vs on the host, same pipeline, interleaved")]
struct Args {
    /// `vm`: interleaved VM and host runs; `host`: host runs only.
    #[arg(long, default_value = "vm")]
    mode: String,
    /// Interleaved rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds of traffic per run, after both links are up.
    #[arg(long, default_value_t = 6.0)]
    seconds: f64,
    /// Seconds at the start of each run left out of the rate.
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Generator rate per port in Mpps (0: as fast as the ports take).
    #[arg(long, default_value_t = 0.0)]
    rate_mpps: f64,
    /// Flows per port.
    #[arg(long, default_value_t = 1024)]
    flows: u32,
    /// Accelerator: auto (KVM only if a guest boots under it), kvm or tcg.
    #[arg(long, default_value = "auto")]
    accel: String,
    /// Do not pin the vCPUs (vCPU 0 -> CPU 0, vCPU 1 -> CPU 1, like the host run's lcores).
    #[arg(long)]
    no_pin: bool,
    /// Name of this set of results, recorded in the JSON.
    #[arg(long, default_value = "vm")]
    set: String,
    /// Write the results here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a Markdown table here.
    #[arg(long)]
    md: Option<PathBuf>,
}

fn fail(msg: String) -> ! {
    eprintln!("vm-bench: {msg}");
    std::process::exit(1);
}

fn main() {
    let a = Args::parse();
    if a.mode != "vm" && a.mode != "host" {
        eprintln!("vm-bench: --mode must be vm or host");
        std::process::exit(2);
    }
    ensure_hugepages(1024);
    let with_vm = a.mode == "vm";
    let g = GenOpts {
        rate_mpps: a.rate_mpps,
        seconds: a.seconds + a.warmup as f64,
        flows: a.flows,
        link_timeout: 180.0,
        linger: 60.0,
    };
    let mut accel_doc = json!(null);
    let (mut img, mut accel) = (None, Accel::Tcg);
    if with_vm {
        let missing = missing_tools();
        if !missing.is_empty() {
            fail(format!("missing {missing:?}: run scripts/setup"));
        }
        let i = build_image().unwrap_or_else(|e| fail(e));
        let choice = match a.accel.as_str() {
            "auto" => detect_accel(&i, &Scratch::new("accel")),
            "kvm" => perf::vm::AccelChoice {
                accel: Accel::Kvm,
                reason: "forced with --accel kvm".into(),
            },
            "tcg" => perf::vm::AccelChoice {
                accel: Accel::Tcg,
                reason: "forced with --accel tcg".into(),
            },
            o => fail(format!("--accel {o}: auto, kvm or tcg")),
        };
        eprintln!(
            "vm-bench: accelerator {} ({})",
            choice.accel.name(),
            choice.reason
        );
        accel = choice.accel;
        accel_doc = json!({"accel": accel.name(), "reason": choice.reason, "image": i.dir});
        img = Some(i);
    }
    let o = GuestOpts {
        accel,
        pin: (!a.no_pin).then(|| vec![0, 1]),
        timeout_s: (g.link_timeout + g.seconds + 120.0) as u32,
        ..GuestOpts::default()
    };
    let (mut vm_runs, mut host_runs): (Vec<Run>, Vec<Run>) = (Vec::new(), Vec::new());
    let mut pinned_all = with_vm && !a.no_pin;
    let mut boots = Vec::new();
    let show = |r: &Run, round: usize| {
        eprintln!(
            "round {round} {:<4} fwd {:7.3} + {:7.3} Mpps (sent {:7.3} + {:7.3}); generator sent {:?} got {:?}; DUT rx {:?} tx {:?}; links up after {:.1} s",
            r.kind, r.rx_mpps[0], r.rx_mpps[1], r.tx_mpps[0], r.tx_mpps[1], r.gen_tx, r.gen_rx, r.dut_rx, r.dut_tx, r.links_up_s
        );
    };
    for round in 1..=a.rounds {
        if let Some(img) = &img {
            let out = run_vm(img, &g, &o, a.warmup).unwrap_or_else(|e| fail(e));
            if out.qemu_exit != Some(0) {
                fail(format!(
                    "guest did not power off cleanly (QEMU exit {:?})",
                    out.qemu_exit
                ));
            }
            if out.pinned.len() < 2 {
                pinned_all = false;
            }
            boots.push(
                json!({"round": round, "links_up_s": out.run.links_up_s, "pinned": out.pinned}),
            );
            show(&out.run, round);
            vm_runs.push(out.run);
        }
        let h = run_host(&g, a.warmup).unwrap_or_else(|e| fail(e));
        show(&h, round);
        host_runs.push(h);
    }
    let mut doc = summarize(accel, pinned_all, &vm_runs, &host_runs);
    println!("{}", summary_line(&doc));
    let obj = doc.as_object_mut().expect("object");
    obj.insert("set".into(), json!(a.set));
    obj.insert("accelerator".into(), accel_doc);
    obj.insert("method".into(), json!({
        "rounds": a.rounds, "seconds": a.seconds, "warmup_s": a.warmup, "interleaved": with_vm,
        "rate_mpps_per_port": a.rate_mpps, "flows": a.flows, "frame_bytes": 64,
        "pipeline": "config/vm-guest.toml (parse -> forward, cross-connect fronthaul0 <-> midhaul0)",
        "generator": "dpgen on CPU 0, two net_vhost ports as vhost-user servers",
        "vm": "QEMU virtio-net-pci (vhost-user client, mrg_rxbuf=off) on 512 MiB shared huge-page memory; 2 vCPUs (0 control, 1 worker); ports discovered from a config-2 ISO (FRONTHAUL 00:04.0, MIDHAUL 00:05.0), bound to uio_pci_generic",
        "host": "the same config with the discovered ports replaced by virtio-user ports of the same names; worker on CPU 1",
        "forwarded": "Mpps the generator received back, both directions, mean of 1-s samples after warm-up",
    }));
    obj.insert("guest_boots".into(), json!(boots));
    obj.insert(
        "runs".into(),
        Value::Array(vm_runs.iter().chain(&host_runs).map(Run::json).collect()),
    );
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&doc).expect("json") + "\n")
            .unwrap_or_else(|e| fail(format!("{}: {e}", p.display())));
        eprintln!("vm-bench: wrote {}", p.display());
    }
    if let Some(p) = &a.md {
        let mut md = format!("# {} — dataplane in a QEMU guest vs on the host\n\n", a.set);
        md.push_str(&format!(
            "Accelerator: **{}** ({}). Label: **{}**.\n\n",
            accel.name(),
            doc["accelerator"]["reason"]
                .as_str()
                .unwrap_or("host-only run"),
            doc["label"].as_str().unwrap_or("")
        ));
        md.push_str("| round | where | forwarded Mpps (both) | sent Mpps | generator sent | generator received | DUT rx | DUT tx |\n|---|---|---|---|---|---|---|---|\n");
        for (i, r) in doc["runs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let n = if with_vm { i % a.rounds + 1 } else { i + 1 };
            md.push_str(&format!(
                "| {n} | {} | {:.3} | {:.3} | {} | {} | {} | {} |\n",
                r["kind"].as_str().unwrap_or(""),
                r["forwarded_mpps_total"].as_f64().unwrap_or(0.0),
                r["sent_mpps"]
                    .as_array()
                    .map(|v| v.iter().filter_map(Value::as_f64).sum::<f64>())
                    .unwrap_or(0.0),
                r["generator_sent"],
                r["generator_received"],
                r["dut_rx"],
                r["dut_tx"]
            ));
        }
        md.push_str(&format!("\n{}\n", summary_line(&doc)));
        std::fs::write(p, md).unwrap_or_else(|e| fail(format!("{}: {e}", p.display())));
    }
}
