//! `reload`: re-reads the config file and applies it as SIGHUP does, answering with the
//! outcome.

use serde_json::json;

use crate::control::registry::{no_args, Command, Reply};
use crate::control::Ctx;
use crate::reload::Outcome;

/// This area's commands.
pub fn commands<'a>() -> Vec<Command<Ctx<'a>>> {
    vec![Command {
        path: "reload",
        usage: "",
        help: "re-read the config file and apply what can change live (as SIGHUP does)",
        run: reload,
    }]
}

fn reload(cx: &mut Ctx<'_>, args: &[String]) -> Result<Reply, String> {
    no_args(args)?;
    match cx.reloader.reload() {
        Outcome::Applied(lines) => Ok(Reply::new(
            format!("reload: applied\n{}\n", lines.join("\n")),
            json!({ "outcome": "applied", "changes": lines }),
        )),
        Outcome::Unchanged => Ok(Reply::new(
            "reload: unchanged\n",
            json!({ "outcome": "unchanged" }),
        )),
        Outcome::Refused(lines) => Err(format!("refused: {}", lines.join("; "))),
        Outcome::Partial { applied, error } => Err(format!(
            "partially applied ({}), then failed: {error}",
            applied.join("; ")
        )),
    }
}
