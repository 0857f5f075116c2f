//! The command registry: each command is a path of words (`show runtime`), a usage line, a
//! help line and a handler. Areas register their own commands ([`super::commands`]); the
//! server only asks the registry to run a request.

use std::fmt::Write;

use super::protocol::Response;

/// What a command answers: a human text and the same data for machines.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The human-readable answer (a table, a line).
    pub text: String,
    /// The machine-readable answer.
    pub data: serde_json::Value,
}

impl Reply {
    /// A reply with `text` and `data`.
    pub fn new(text: impl Into<String>, data: serde_json::Value) -> Reply {
        Reply {
            text: text.into(),
            data,
        }
    }
}

/// A command's handler: the context it runs in and the arguments after its path.
pub type Handler<C> = fn(&mut C, &[String]) -> Result<Reply, String>;

/// One command.
pub struct Command<C> {
    /// Its words, space-separated (`"show runtime"`).
    pub path: &'static str,
    /// Its arguments, as shown in `help` (`"N [port NAME] ..."`, or `""`).
    pub usage: &'static str,
    /// One line on what it does.
    pub help: &'static str,
    /// The handler.
    pub run: Handler<C>,
}

impl<C> Clone for Command<C> {
    fn clone(&self) -> Self {
        Command {
            path: self.path,
            usage: self.usage,
            help: self.help,
            run: self.run,
        }
    }
}

/// Commands by path.
pub struct Registry<C> {
    commands: Vec<Command<C>>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Registry {
            commands: Vec::new(),
        }
    }
}

impl<C> Registry<C> {
    /// An empty registry (`help` is always answered).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds commands. Panics on a path registered twice (a programming error).
    pub fn add(&mut self, commands: &[Command<C>]) {
        for c in commands {
            assert!(
                self.commands.iter().all(|o| o.path != c.path) && c.path != "help",
                "control command `{}` registered twice",
                c.path
            );
            self.commands.push(c.clone());
        }
    }

    /// The command whose path is the longest prefix of `argv`, and the arguments after it.
    pub fn find<'a>(&self, argv: &'a [String]) -> Option<(&Command<C>, &'a [String])> {
        self.commands
            .iter()
            .filter_map(|c| {
                let words: Vec<&str> = c.path.split(' ').collect();
                let matches = argv.len() >= words.len()
                    && words.iter().zip(argv).all(|(w, a)| *w == a.as_str());
                matches.then_some((c, words.len()))
            })
            .max_by_key(|(_, n)| *n)
            .map(|(c, n)| (c, &argv[n..]))
    }

    /// Every command, one per line: path, usage and help.
    pub fn help_text(&self) -> String {
        let mut rows: Vec<(String, &str)> = self
            .commands
            .iter()
            .map(|c| {
                let head = if c.usage.is_empty() {
                    c.path.to_string()
                } else {
                    format!("{} {}", c.path, c.usage)
                };
                (head, c.help)
            })
            .collect();
        rows.push(("help".into(), "this list"));
        rows.sort();
        // Help in a column after the usual heads; a long head gets its help on the next line.
        const WIDTH: usize = 48;
        let mut out = String::new();
        for (head, help) in rows {
            if head.len() <= WIDTH {
                let _ = writeln!(out, "{head:<WIDTH$}  {help}");
            } else {
                let _ = writeln!(out, "{head}\n{:<WIDTH$}  {help}", "");
            }
        }
        out
    }

    /// Runs a request's words: the matching command's reply, or an error naming what was
    /// wrong (unknown command, bad arguments).
    pub fn run(&self, ctx: &mut C, argv: &[String]) -> Response {
        if argv.first().map(String::as_str) == Some("help") {
            let paths: Vec<&str> = self.commands.iter().map(|c| c.path).collect();
            return Response {
                ok: true,
                text: self.help_text(),
                data: serde_json::json!({ "commands": paths }),
                error: String::new(),
            };
        }
        let Some((cmd, args)) = self.find(argv) else {
            return Response::error(format!("unknown command `{}` (try `help`)", argv.join(" ")));
        };
        match (cmd.run)(ctx, args) {
            Ok(r) => Response {
                ok: true,
                text: r.text,
                data: r.data,
                error: String::new(),
            },
            Err(reason) => Response::error(if cmd.usage.is_empty() {
                format!("{}: {reason}", cmd.path)
            } else {
                format!("{}: {reason} (usage: {} {})", cmd.path, cmd.path, cmd.usage)
            }),
        }
    }
}

/// Refuses arguments a command does not take.
pub fn no_args(args: &[String]) -> Result<(), String> {
    match args.first() {
        None => Ok(()),
        Some(a) => Err(format!("unexpected argument `{a}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn count(n: &mut u32, args: &[String]) -> Result<Reply, String> {
        no_args(args)?;
        *n += 1;
        Ok(Reply::new(format!("{n}"), serde_json::json!(*n)))
    }

    fn echo(_: &mut u32, args: &[String]) -> Result<Reply, String> {
        Ok(Reply::new(args.join(","), serde_json::Value::Null))
    }

    fn registry() -> Registry<u32> {
        let mut r = Registry::new();
        r.add(&[
            Command {
                path: "show",
                usage: "WHAT",
                help: "echo",
                run: echo,
            },
            Command {
                path: "show runtime",
                usage: "",
                help: "count",
                run: count,
            },
        ]);
        r
    }

    #[test]
    fn the_longest_path_wins_and_arguments_follow_it() {
        let r = registry();
        let mut n = 0;
        let a = r.run(&mut n, &words("show runtime"));
        assert!(a.ok);
        assert_eq!((a.text.as_str(), n), ("1", 1));
        let b = r.run(&mut n, &words("show errors now"));
        assert_eq!(b.text, "errors,now");
        assert_eq!(n, 1);
    }

    #[test]
    fn unknown_commands_and_bad_arguments_get_one_line_reasons() {
        let r = registry();
        let mut n = 0;
        let a = r.run(&mut n, &words("frobnicate"));
        assert!(!a.ok);
        assert!(
            a.error.contains("unknown command `frobnicate`"),
            "{}",
            a.error
        );
        let b = r.run(&mut n, &words("show runtime extra"));
        assert!(!b.ok);
        assert_eq!(b.error, "show runtime: unexpected argument `extra`");
        assert_eq!(n, 0, "a refused command did not run");
    }

    #[test]
    fn help_lists_every_command() {
        let r = registry();
        let h = r.run(&mut 0, &words("help"));
        assert!(h.ok);
        for p in ["show WHAT", "show runtime", "help"] {
            assert!(h.text.contains(p), "{}", h.text);
        }
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_path_registered_twice_is_a_bug() {
        let mut r = registry();
        r.add(&[Command {
            path: "show runtime",
            usage: "",
            help: "",
            run: count,
        }]);
    }
}
