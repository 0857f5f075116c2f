//! `show ovn`: the NB follower's remotes, connection state, last transaction id, rows,
//! counters, port bindings and the rows taken and refused.

use std::sync::atomic::Ordering::Relaxed;

use serde_json::json;

use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![Command {
        path: "show ovn",
        usage: "",
        help: "the OVN NB follower: remotes, state, last txn id, rows taken and refused",
        run: show_ovn,
    }]
}

fn show_ovn(_cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    let status = crate::ovn::follow::current().ok_or("ovn: not configured (no [ovn] table)")?;
    let text = status.render();
    let last = status
        .last
        .lock()
        .map_err(|_| "ovn: status lock poisoned")?
        .clone();
    Ok(Reply::new(
        text,
        json!({
            "remotes": last.client.remotes,
            "connected": last.client.connected,
            "remote": last.client.remote,
            "counters": last.counters,
            "last_txn_id": last.client.last_txn_id,
            "rows": last.client.rows,
            "acls_taken": last.taken.acls,
            "refused": last.refused,
            "updates": status.updates.load(Relaxed),
            "translations": status.translations.load(Relaxed),
            "unchanged": status.unchanged.load(Relaxed),
            "publishes": status.publishes.load(Relaxed),
            "publish_failures": status.publish_failures.load(Relaxed),
            "member_handlings": status.member_handlings.load(Relaxed),
            "confirmations": status.confirmations.load(Relaxed),
            "confirm_mismatches": status.confirm_mismatches.load(Relaxed),
            "translation_ms": status.translation_ms.load(Relaxed),
            "paced": status.paced.load(Relaxed),
            "paced_wait_max_ms": status.paced_wait_max_ms.load(Relaxed),
            "pacing_holds": status.pacing_holds.load(Relaxed),
        }),
    ))
}
