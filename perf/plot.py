#!/usr/bin/env python3
"""Plots and a Markdown table from a `scripts/bench` result (perf/results/<set>.json).

    python3 perf/plot.py perf/results/quick.json --md perf/results/quick.md --png-prefix perf/results/quick

PNGs (only for data present in the JSON; nothing is drawn that was not measured):
  <prefix>-mpps.png        forwarded Mpps by frame size per DUT (median, min-max bars)
  <prefix>-ratios.png      headline ratios (acl/full vs testpmd, full vs OVS, ...) against their targets
  <prefix>-dut-cycles.png  cycles per packet in the DUTs: testpmd io's I/O, the pipelines' nodes (bench)
  <prefix>-cycles.png      cycles per packet per pipeline node (pipeline-bench)
  <prefix>-acl.png         ACL cycles/packet by rule count (acl-bench), when present
  <prefix>-lb.png          load-balancer cycles/packet by flow count (lb-bench), when present
  <prefix>-ovn.png         NB commit to enforcement beside real OVN (ovn-bench) and forwarding under NB
                           churn (ovn-churn), when present
"""
import argparse
import json
import os
import sys


def size_key(s):
    return (1, 0) if str(s).lower() == "imix" else (0, int(s))


def fmt(v, nd=3):
    return "-" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def markdown(doc):
    out = []
    m = doc.get("machine", {})
    meth = doc.get("method", {})
    out.append(f"# Benchmark results: `{doc.get('set', '?')}` ({doc.get('when', '?')})\n")
    out.append(f"Machine: {m.get('cpu', '?')}, {m.get('cpus', '?')} CPUs, kernel {m.get('kernel', '?')}; "
               f"{m.get('dpdk', '?')}; {m.get('ovs', 'OVS ?')}; {m.get('rustc', '')}; commit {m.get('dataplane_git', '?')}.\n")
    out.append(f"Topology: {doc.get('topology', '')}\n")
    out.append(f"Method: {meth.get('rounds')} interleaved rounds x {meth.get('seconds')} s (+{meth.get('warmup')} s warm-up) per DUT; "
               f"median (min-max) of forwarded Mpps, both directions. {meth.get('note', '')}. "
               f"Limit: {meth.get('limit', '')}. Full speed: {meth.get('full_speed', '-')}.\n")
    out.append("## Headline\n")
    out.append("| figure | value | target | limited by (DUT or generator) / source |\n|---|---|---|---|")
    det = doc.get("headline_detail", {})
    cyc = doc.get("cycles_detail", {})
    for k, v in doc.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("elapsed_s",):
            out.append(f"| `{k}` | {headline_value(k, float(v), det)} | {headline_target(k, float(v), det, cyc)} | {headline_limit(k, det, cyc)} |")
    out.append("")
    if det:
        out.append("### Ratios behind the headline (first size and flow count)\n")
        out.append("| ratio | DUT / DUT | median (min-max) | full-speed rounds: median (n) | fastest rounds | ceiling: io / (io + node cycles) | target | generator capacity Mpps (traffic) | limit |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        for k, v in det.items():
            tgt = v.get("target")

            def verdict(x):
                """` (met)` / ` (not met)` for estimate `x` against the target, or nothing."""
                return "" if x is None or tgt is None else (" (met)" if x >= tgt else " (not met)")

            ok = verdict(v["median"])
            fs = v.get("full_speed_median")
            fast = "-" if fs is None else f"{fs:.3f} ({len(v.get('full_speed_per_round', []))})"
            fast += verdict(fs)
            best = v.get("fastest_rounds_ratio")
            best = ("-" if best is None else f"{best:.3f}") + verdict(best)
            c = v.get("ceiling") or {}
            ceil = "-" if not c else f"{c['value']:.3f} = {c['io_cycles_per_packet']:.1f} / ({c['io_cycles_per_packet']:.1f} + {c['node_cycles_per_packet']:.1f}) ({c.get('io_source', '?')})"
            out.append(f"| `{k}` | {v.get('numerator', '?')} / {v.get('denominator', '?')} | {v['median']:.3f} ({v['min']:.3f}-{v['max']:.3f}) | {fast} | {best} | {ceil} | "
                       f"{'-' if tgt is None else '>= ' + str(tgt)}{ok} | {fmt(v.get('generator_capacity_mpps'))} ({v.get('traffic_profile', 'plain')}) | "
                       f"{v.get('numerator', '?')}: {v.get('numerator_limit', '?')}, {v.get('denominator', '?')}: {v.get('denominator_limit', '?')} |")
        out.append("")
    cycles = {k: v for k, v in cyc.items() if is_cycles(k)}
    others = {k: v for k, v in cyc.items() if not is_cycles(k)}
    if cycles:
        out.append("### Cycles per packet in the DUTs (median of the interleaved rounds)\n")
        out.append("| figure | value | by node | target | source | limited by |\n|---|---|---|---|---|---|")
        for k, v in cycles.items():
            nodes = ", ".join(f"{n} {c:.1f}" for n, c in ordered_nodes(v.get("by_node") or {}))
            out.append(f"| `{k}` | {fmt(v.get('value'), 1)} | {nodes or '-'} | {headline_target(k, v.get('value'), det, cyc)} | {v.get('source', '-')} | {v.get('limit', '-')} |")
        out.append("")
    if others:
        out.append("### Policy, membership and NB churn targets\n")
        out.append("| figure | value | target | source | limited by |\n|---|---|---|---|---|")
        for k, v in others.items():
            out.append(f"| `{k}` | {fmt(v.get('value'), 3)} | {headline_target(k, v.get('value'), det, cyc)} | {v.get('source', '-')} | {v.get('limit', '-')} |")
        out.append("")
    lat = ovn_latency(doc)
    if lat:
        out.append("### NB commit to enforcement, beside real OVN (ovn-bench, ms, p50 / p99)\n")
        out.append("| change | background ACLs | dataplane | OVN (northd + controller + OVS-DPDK) | OVN p99 / ours | OVN `--wait=hv` controller p50 |")
        out.append("|---|---|---|---|---|---|")
        for r in lat:
            out.append(f"| {r['change']} | {r['size']} | {fmt(r['ours'][0], 2)} / {fmt(r['ours'][1], 2)} | "
                       f"{fmt(r['ovn'][0], 2)} / {fmt(r['ovn'][1], 2)} | {fmt(r['ratio'], 1)} | {fmt(r['wait_hv'], 1)} |")
        out.append("")
    out.append("## Throughput\n")
    out.append("| size | flows | DUT | traffic | generator | forwarded Mpps (min-max) | Gbit/s | lost by generator | DUT in = out + drops | limit |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(doc.get("results", []), key=lambda r: (size_key(r["size"]), r["flows"], r["dut"])):
        bal = "yes" if r.get("dut_unaccounted", 0) == 0 else f"no ({r['dut_unaccounted']} unaccounted)"
        if r.get("dut_unaccounted_is_ct_commit_packets"):
            bal = f"no ({r['dut_unaccounted']} unaccounted = the packets of the ct(commit) rule, uncounted by OVS)"
        out.append(f"| {r['size']} | {r.get('dut_flows', r['flows'])} | {r['dut']} | {r.get('traffic_profile', 'plain')} | {r['generator']} | "
                   f"{r['forwarded_mpps_median']:.3f} ({r['forwarded_mpps_min']:.3f}-{r['forwarded_mpps_max']:.3f}) | "
                   f"{r['forwarded_gbps_median']:.2f} | {r['generator_lost']} of {r['generator_sent']} ({100 * r['loss_fraction']:.2f}%) | {bal} | {r['limit']} |")
    out.append("")
    ratios = doc.get("ratios", {})
    if ratios:
        out.append("## Ratios (median of per-round ratios, min-max)\n")
        out.append("| size/flows | ratio | median | min-max |\n|---|---|---|---|")
        for sz, rs in ratios.items():
            for k, v in rs.items():
                out.append(f"| {sz} | `{k}` | {v['median']:.3f} | {v['min']:.3f}-{v['max']:.3f} |")
        out.append("")
    zl = doc.get("zero_loss", [])
    if zl:
        out.append("## Zero-loss rate (RFC 2544-style binary search, dpgen, 64-byte) and latency at 50% of it\n")
        out.append("| DUT | zero-loss Mpps per port | trials | latency min / mean / p99 (us), per receiving port |")
        out.append("|---|---|---|---|")
        for z in zl:
            lat = z.get("latency_at_half_rate", {}).get("per_receiving_port", [])
            ls = "; ".join(f"{l['min_ns'] / 1e3:.1f} / {l['mean_ns'] / 1e3:.1f} / {l['p99_ns'] / 1e3:.1f} ({l['probes']} probes)"
                           for l in lat if l and l.get("probes"))
            tr = ", ".join(f"{t['offered_mpps_per_port']:.3f}:{'pass' if t['pass'] else ('short' if not t['generator_reached_rate'] else 'loss ' + str(t['lost']))}"
                           for t in z.get("trials", []))
            basis = z.get("latency_at_half_rate", {})
            if ls:
                ls = f"{ls} at {basis.get('rate_mpps_per_port', 0):.3f} Mpps/port ({basis.get('basis', '')}; lost {basis.get('lost', '?')})"
            out.append(f"| {z['dut']} | {z['zero_loss_mpps_per_port']:.3f} | {tr} | {ls or 'not measured'} |")
        out.append("")
    pb = doc.get("pipeline_bench")
    if pb:
        out.append("## Cycles per packet per node (pipeline-bench, no I/O, best of rounds)\n")
        out.append("| pipeline | flows | node cycles/packet | graph cycles/packet |\n|---|---|---|---|")
        for r in pb.get("results", []):
            nodes = ", ".join(f"{n} {c:.1f}" for n, c in r["node_cycles_per_packet"].items())
            out.append(f"| {r['pipeline']} | {r['flows']} | {nodes} | {r['graph_cycles_per_packet']:.1f} |")
        out.append("")
    return "\n".join(out) + "\n"


NODE_ORDER = ["parse", "acl", "lb", "forward"]


def is_cycles(k):
    """A `cycles_detail` entry that is a cycles-per-packet figure (the others are latencies,
    counts and ratios of the policy work)."""
    return "cycles" in k


def ovn_latency(doc):
    """ovn-bench's headline keys as rows: change, size, ours (p50, p99), OVN's, ratio, --wait=hv."""
    rows = []
    for size in ("1k", "10k"):
        for change in ("member_add", "lb_backend_add", "acl_add"):
            g = lambda who, s: doc.get(f"ovn_{who}{change}_{s}_{size}")
            if g("", "p50_ms") is None and g("peer_", "p50_ms") is None:
                continue
            rows.append({"change": change, "size": size, "ours": (g("", "p50_ms"), g("", "p99_ms")),
                         "ovn": (g("peer_", "p50_ms"), g("peer_", "p99_ms")), "ratio": g("", "p99_ratio"),
                         "wait_hv": g("peer_", "wait_hv_p50_ms")})
    return rows


def ordered_nodes(by_node):
    """(node, cycles) in pipeline order: parse, acl, lb, forward, then any other."""
    return sorted(by_node.items(), key=lambda kv: (NODE_ORDER.index(kv[0]) if kv[0] in NODE_ORDER else len(NODE_ORDER), kv[0]))


def ratio_of(k, det):
    """The ratio entry a headline key belongs to (`x`, `x_full_speed`, ...) and the suffix."""
    if k in det:
        return k, ""
    for suffix in ("_full_speed", "_fastest_rounds", "_ceiling"):
        if k.endswith(suffix) and k[: -len(suffix)] in det:
            return k[: -len(suffix)], suffix
    return None, None


def headline_value(k, v, det):
    """A headline figure, a ratio against testpmd labelled with its ceiling."""
    base, suffix = ratio_of(k, det)
    c = (det.get(base) or {}).get("ceiling") if base and suffix == "" else None
    return fmt(v) + (f" (ceiling {c['value']:.3f})" if c else "")


def headline_target(k, v, det, cyc):
    """`>= t (met)` / `<= t (not met)` for a figure with a target, else `-`."""
    base, suffix = ratio_of(k, det)
    if base and suffix != "_ceiling":
        t = det[base].get("target")
        if t is None:
            return "- (its ceiling says what the I/O leaves)" if det[base].get("ceiling") else "-"
        return f">= {t} ({'met' if v >= t else 'not met'})"
    c = cyc.get(k) or {}
    t = c.get("target")
    if t is None or v is None:
        return "-"
    op = c.get("target_op", "<=")
    met = v <= t if op == "<=" else v >= t
    return f"{op} {t:g} ({'met' if met else 'not met'})"


def headline_limit(k, det, cyc):
    """Which side limited a figure's runs (DUT or generator), or where a figure comes from."""
    base, suffix = ratio_of(k, det)
    if base:
        d = det[base]
        lim = f"{d.get('numerator', '?')}: {d.get('numerator_limit', '?')}, {d.get('denominator', '?')}: {d.get('denominator_limit', '?')}"
        if suffix == "_ceiling":
            c = d.get("ceiling") or {}
            return f"io {c.get('io_cycles_per_packet', 0):.1f} ({c.get('io_source', '?')}) / (io + {d.get('numerator', '?')} nodes {c.get('node_cycles_per_packet', 0):.1f}); {lim}"
        return lim
    c = cyc.get(k)
    if c:
        return f"{c.get('limit', '-')}; {c.get('source', '-')}"
    return "-"


def save(fig, path):
    """Lays out, writes and closes `fig`; returns `path`."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(doc, prefix):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot.py: python3-matplotlib not installed; no PNGs (scripts/setup --bench installs it)", file=sys.stderr)
        return []
    made = []
    res = doc.get("results", [])
    flows = sorted({r["flows"] for r in res})
    if res:
        f0 = flows[0]
        sizes = sorted({r["size"] for r in res if r["flows"] == f0}, key=size_key)
        duts = sorted({r["dut"] for r in res if r["flows"] == f0})
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(sizes) + 3), 4.5))
        w = 0.8 / max(1, len(duts))
        for i, d in enumerate(duts):
            xs, ys, lo, hi = [], [], [], []
            for j, s in enumerate(sizes):
                r = next((r for r in res if r["dut"] == d and r["size"] == s and r["flows"] == f0), None)
                if r:
                    xs.append(j + i * w - 0.4 + w / 2)
                    ys.append(r["forwarded_mpps_median"])
                    lo.append(r["forwarded_mpps_median"] - r["forwarded_mpps_min"])
                    hi.append(r["forwarded_mpps_max"] - r["forwarded_mpps_median"])
            ax.bar(xs, ys, w, yerr=[lo, hi], capsize=2, label=d)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels([f"{s}" + ("" if str(s).lower() == "imix" else " B") for s in sizes])
        ax.set_ylabel("forwarded Mpps (both directions)")
        ax.set_title(f"vhost-user, 1 DUT core, {f0} flows: median, min-max ({doc.get('set')})")
        ax.legend(fontsize=8)
        made.append(save(fig, f"{prefix}-mpps.png"))
    det = doc.get("headline_detail", {})
    if det:
        keys = list(det.keys())
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(keys) + 2), 4.5))
        med = [det[k]["median"] for k in keys]
        lo = [det[k]["median"] - det[k]["min"] for k in keys]
        hi = [det[k]["max"] - det[k]["median"] for k in keys]
        ax.bar(range(len(keys)), med, 0.6, yerr=[lo, hi], capsize=3, color="C0", label="median (min-max), per-round ratios")
        for i, k in enumerate(keys):
            t = det[k].get("target")
            if t is not None:
                ax.hlines(t, i - 0.35, i + 0.35, colors="C3", linestyles="dashed", label="target" if i == 0 or "target" not in [h.get_label() for h in ax.collections] else None)
        for i, k in enumerate(keys):
            c = det[k].get("ceiling")
            if c:
                ax.hlines(c["value"], i - 0.35, i + 0.35, colors="C2", linestyles="dotted",
                          label="ceiling io / (io + node cycles)" if "ceiling io / (io + node cycles)" not in [h.get_label() for h in ax.collections] else None)
        ax.set_xticks(range(len(keys)))
        ax.set_xticklabels(keys, rotation=20, fontsize=8)
        ax.set_ylabel("ratio of forwarded Mpps")
        ax.set_title(f"headline ratios, 64 B ({doc.get('set')}); dashed: targets, dotted: ceilings")
        ax.legend(fontsize=8)
        made.append(save(fig, f"{prefix}-ratios.png"))
    cyc = doc.get("cycles_detail", {})
    bars = [(k, v) for k, v in cyc.items() if isinstance(v.get("value"), (int, float)) and is_cycles(k)]
    if bars:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        colors = {}
        for i, (k, v) in enumerate(bars):
            parts = ordered_nodes(v.get("by_node") or {}) or [("I/O (whole DUT)" if k.startswith(("io_", "xconnect_")) else k, v["value"])]
            left = 0.0
            for n, c in parts:
                colors.setdefault(n, f"C{len(colors)}")
                ax.barh(i, c, left=left, color=colors[n])
                left += c
            if v.get("target") is not None:
                ax.vlines(v["target"], i - 0.4, i + 0.4, colors="C3", linestyles="dashed")
        ax.legend([plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()], list(colors.keys()), fontsize=8)
        ax.set_yticks(range(len(bars)))
        ax.set_yticklabels([k for k, _ in bars], fontsize=7)
        ax.set_xlabel("cycles per packet (median of interleaved rounds; dashed: target)")
        ax.set_title(f"cycles per packet in the DUTs: I/O and pipeline nodes ({doc.get('set')})")
        made.append(save(fig, f"{prefix}-dut-cycles.png"))
    pb = doc.get("pipeline_bench")
    if pb and pb.get("results"):
        rs = [r for r in pb["results"]]
        fig, ax = plt.subplots(figsize=(8, 4.5))
        labels, bottoms = [], []
        colors = {}
        for k, r in enumerate(rs):
            labels.append(f"{r['pipeline']}\n{r['flows']} flow(s)")
            b = 0.0
            for n, c in r["node_cycles_per_packet"].items():
                if n not in colors:
                    colors[n] = f"C{len(colors)}"
                ax.barh(k, c, left=b, color=colors[n], label=n if n not in [h.get_label() for h in ax.patches[:-1]] else None)
                b += c
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
        ax.legend(handles, list(colors.keys()), fontsize=8)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("cycles per packet (stacked by node, best of rounds)")
        ax.set_title("pipeline-bench: cycles per packet per node")
        made.append(save(fig, f"{prefix}-cycles.png"))
    lat = ovn_latency(doc)
    if lat:
        fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [3, 1]})
        labels = [f"{r['change']}\n{r['size']} ACLs" for r in lat]
        for j, (who, key, color) in enumerate((("dataplane", "ours", "C0"), ("OVN", "ovn", "C1"))):
            xs = [i + (j - 0.5) * 0.38 for i in range(len(lat))]
            p50 = [r[key][0] or 0 for r in lat]
            p99 = [r[key][1] or 0 for r in lat]
            ax.bar(xs, p99, 0.36, color=color, alpha=0.35)
            ax.bar(xs, p50, 0.36, color=color, label=f"{who} p50 (light: p99)")
        ax.set_yscale("log")
        ax.set_xticks(range(len(lat)))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_ylabel("NB commit to the probe's new verdict, ms (log)")
        ax.set_title("ovn-bench: the same NB change, ours vs real OVN")
        ax.legend(fontsize=8)
        churn = [(k.replace("ovn_churn_forwarding_ratio_", ""), doc[k]) for k in
                 ("ovn_churn_forwarding_ratio_100", "ovn_churn_forwarding_ratio_1000",
                  "ovn_churn_forwarding_ratio_100_max", "ovn_churn_forwarding_ratio_1000_max")
                 if isinstance(doc.get(k), (int, float))]
        if churn:
            bx.bar(range(len(churn)), [v for _, v in churn], 0.6, color="C2")
            bx.hlines(0.95, -0.4, len(churn) - 0.6, colors="C3", linestyles="dashed")
            bx.set_xticks(range(len(churn)))
            bx.set_xticklabels([k.replace("_max", " txn/s\nfull speed") if k.endswith("_max") else f"{k} txn/s\nfixed rate"
                                for k, _ in churn], fontsize=7)
            bx.set_ylim(0, 1.1)
            bx.set_title("ovn-churn: forwarded / no churn", fontsize=9)
        else:
            bx.axis("off")
        made.append(save(fig, f"{prefix}-ovn.png"))
    for key, xlabel, name in (("acl_bench", "rules", "acl"), ("lb_bench", "flows", "lb")):
        d = doc.get(key)
        pts = series(d)
        if pts:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o")
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("cycles per packet")
            ax.set_title(f"{key.replace('_', '-')}: cycles per packet by {xlabel}")
            made.append(save(fig, f"{prefix}-{name}.png"))
    return made


def series(d):
    """(x, cycles/packet) points from an acl-bench / lb-bench JSON: keys `<name>_cycles_per_packet_<N>`
    with N like 1k, 10k, 1m, or a `results` list of objects with a count and `cycles_per_packet`."""
    if not isinstance(d, dict):
        return []
    pts = {}
    mult = {"": 1, "k": 1_000, "m": 1_000_000}
    for k, v in d.items():
        if "cycles_per_packet_" in k and isinstance(v, (int, float)):
            tail = k.rsplit("_", 1)[-1].lower()
            num = tail.rstrip("km")
            if num.isdigit():
                pts[int(num) * mult[tail[len(num):]]] = float(v)
    for r in d.get("results", []) if isinstance(d.get("results"), list) else []:
        if isinstance(r, dict) and isinstance(r.get("cycles_per_packet"), (int, float)):
            n = next((r[c] for c in ("rules", "flows", "count", "n") if isinstance(r.get(c), int)), None)
            if n:
                pts.setdefault(n, float(r["cycles_per_packet"]))
    return sorted(pts.items())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json")
    ap.add_argument("--md")
    ap.add_argument("--png-prefix")
    a = ap.parse_args()
    doc = json.load(open(a.json))
    if a.md:
        open(a.md, "w").write(markdown(doc))
        print("plot.py: wrote", a.md)
    if a.png_prefix:
        for p in plots(doc, a.png_prefix):
            print("plot.py: wrote", p)


if __name__ == "__main__":
    main()
