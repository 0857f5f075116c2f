//! `dataplane check` with `[ovn]`: connect to the NB (bounded wait), read it once, print
//! each port's LSP and what the translation took and refused. Nothing is published.

use std::time::Duration;

use super::client::OvnClient;
use super::settings::{OvnPlan, PlannedSelector};
use super::translate::translate;

/// The account `check` prints, or why the NB was not read.
pub fn check(plan: &OvnPlan) -> Result<String, String> {
    let wait = Duration::from_secs_f64(plan.check_wait_s);
    let client = OvnClient::start(plan.client_config())?;
    if client.updates().recv_timeout(wait).is_err() {
        let st = client.state();
        return Err(format!(
            "ovn: no NB read within {:.1} s from {} (last error: {})",
            plan.check_wait_s,
            plan.remotes.join(","),
            st.last_error.unwrap_or_else(|| "none".into())
        ));
    }
    let st = client.state();
    let tables = client.tables();
    // A port's own MAC is only known once DPDK has started it.
    let t = translate(&tables, &plan.local_ports(|_| None), plan.options());
    let mut out = format!(
        "ovn: read {} (last txn {}): {} rows\n",
        st.remote.unwrap_or_default(),
        st.last_txn_id.unwrap_or_else(|| "-".into()),
        st.rows.values().sum::<usize>()
    );
    for (b, (_, sel)) in t.bindings.iter().zip(&plan.ports) {
        if *sel == PlannedSelector::PortMac {
            out.push_str(&format!(
                "  port {} -> by its own MAC, read when the port starts\n",
                b.port
            ));
        } else {
            out.push_str(&format!("  port {}\n", b.describe()));
        }
    }
    let report = t.report();
    for line in report.lines().filter(|l| !l.starts_with("  port ")) {
        out.push_str(line);
        out.push('\n');
    }
    Ok(out)
}
