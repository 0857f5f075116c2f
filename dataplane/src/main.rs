//! `dataplane`: a DPDK poll-mode CNF. `run` forwards; `check` validates and prints the plan.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The heap allocator of the control threads (the workers never allocate per packet; packet
/// memory is DPDK's huge pages). mimalloc instead of glibc's malloc: after a whole NB
/// translation and classifier rebuild at 10k ACLs freed millions of small blocks, glibc's
/// first larger allocation on the follower thread sorted them for 5-15 ms of CPU, which the
/// next membership update paid (resolving one 200-entry address set took 4-12 ms instead of
/// microseconds); with another allocator (jemalloc preloaded, measured with `ovn-bench
/// --sizes 10000 --no-peer`) it took too little to measure, and the rebuilds were 10-20%
/// faster.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option that returns freed memory to the OS after this many milliseconds.
const PURGE_DELAY: &str = "MIMALLOC_PURGE_DELAY";

/// Runs the process again with `MIMALLOC_PURGE_DELAY=-1` unless the environment sets it
/// (mimalloc reads its options when the process starts, before `main`); called for
/// `dataplane run` only. By default mimalloc
/// returns freed pages to the OS 10 ms after a free, and the thread that next allocates or
/// frees does it: after a whole rebuild at 10k ACLs that was the follower, unmapping pages
/// for the next NB change (`perf record` of the follower thread). Measured with `ovn-bench
/// --no-peer --sizes 10000 --reps 10 --rounds 1`, interleaved A B A B: an ACL added 229 and
/// 234 ms at p50 with purging, 207 and 197 ms without; the first backend change after the
/// ACL changes 7.3 and 7.0 ms, then 2.0 and 1.9 ms. The cost: the control threads' heap
/// keeps its peak (a whole rebuild's worth) instead of shrinking. Returns only when the
/// environment already sets the option or the exec failed (then said once).
fn keep_freed_memory() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os(PURGE_DELAY).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    let err = cmd.args(args).env(PURGE_DELAY, "-1").exec();
    eprintln!("dataplane: could not run again with {PURGE_DELAY}=-1 ({err}): freed memory is returned to the OS as mimalloc's default");
}

use dataplane::config;
use dataplane::runtime::{self, RunOptions};

#[derive(Parser)]
#[command(
    name = "dataplane",
    version,
    about = "DPDK poll-mode packet-processing dataplane"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring up the ports and forward until stopped (SIGINT/SIGTERM) or --duration expires.
    Run {
        /// Configuration file (TOML); without it, the embedded default (two vhost-user ports).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
        /// Print a stats line per port every this many seconds.
        #[arg(long, default_value_t = 0.0)]
        stats_period: f64,
        /// Write final per-port and per-worker counters to this JSON file.
        #[arg(long)]
        stats_json: Option<PathBuf>,
        /// Trace the first N packets' path through the pipeline (printed at stop).
        #[arg(long, default_value_t = 0)]
        trace: u32,
        /// Serve Prometheus metrics here (overrides the config; "off" disables).
        #[arg(long)]
        prometheus: Option<String>,
        /// Serve `dataplane ctl` on this unix socket (overrides the config; "off" disables).
        #[arg(long)]
        control_socket: Option<String>,
        /// Do not reserve or mount huge pages (they are set up already).
        #[arg(long)]
        no_hugepage_setup: bool,
        /// Extra EAL arguments, after `--`.
        #[arg(last = true)]
        eal_args: Vec<String>,
    },
    /// Ask a running dataplane (its control socket): `show runtime`, `trace add 10`, `help`, ...
    Ctl {
        /// The control socket; without it, the only live one in /var/run/dataplane.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Print the answer as JSON.
        #[arg(long)]
        json: bool,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Validate the configuration and print the resolved plan without starting DPDK.
    Check {
        /// Configuration file (TOML); without it, the embedded default.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Only `run` lives long enough to rebuild policy; `check` and `ctl` start plainly.
    if matches!(cli.cmd, Cmd::Run { .. }) {
        keep_freed_memory();
    }
    match cli.cmd {
        Cmd::Ctl {
            socket,
            json,
            command,
        } => ctl(socket, json, &command),
        Cmd::Check { config, json } => match config::load_plan(config.as_deref()) {
            Ok(plan) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&plan).expect("plan serialises")
                    );
                } else {
                    print!("{plan}");
                }
                if let Some(ovn) = &plan.ovn {
                    match dataplane::ovn::check::check(ovn) {
                        Ok(report) if json => eprint!("{report}"),
                        Ok(report) => print!("{report}"),
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Cmd::Run {
            config,
            duration,
            stats_period,
            stats_json,
            trace,
            prometheus,
            control_socket,
            no_hugepage_setup,
            eal_args,
        } => {
            let plan = match config::load_plan(config.as_deref()) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let prometheus = match prometheus.as_deref() {
                None => plan.prometheus,
                Some("off") => None,
                Some(a) => match a.parse() {
                    Ok(a) => Some(a),
                    Err(_) => {
                        eprintln!("error: --prometheus {a:?}: not an address like 127.0.0.1:9464");
                        return ExitCode::from(2);
                    }
                },
            };
            let control_socket = match control_socket.as_deref() {
                None => None,
                Some("off") => Some(None),
                Some(p) if p.starts_with('/') => Some(Some(PathBuf::from(p))),
                Some(p) => {
                    eprintln!("error: --control-socket {p:?}: not an absolute path (or \"off\")");
                    return ExitCode::from(2);
                }
            };
            let opts = RunOptions {
                control_socket,
                duration,
                stats_period,
                stats_json,
                extra_eal_args: eal_args,
                no_hugepage_setup,
                stop: None,
                trace,
                prometheus,
            };
            match runtime::run(&plan, &opts) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// `dataplane ctl`: exit 0 with the answer, 2 when the dataplane refused the command, 1 when
/// it could not be asked.
fn ctl(socket: Option<PathBuf>, json: bool, command: &[String]) -> ExitCode {
    use dataplane::control::client;
    let socket = match socket.map_or_else(client::find_socket, Ok) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match client::request(&socket, command) {
        Ok(r) if r.ok => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r.data).expect("JSON prints")
                );
            } else {
                print!("{}", r.text);
            }
            ExitCode::SUCCESS
        }
        Ok(r) => {
            eprintln!("error: {}", r.error);
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
