//! `chat-bench` binary: command line, runtime, printing; the benchmark is the library.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use chat_bench::cluster::ClusterOptions;
use chat_bench::report::{cluster_report, table, targets};
use chat_bench::{Mode, Options, ReflectorSpec, Scale, ServerSpec, Storage, Workload};
use clap::{Parser, Subcommand};

/// Benchmark of chat-server: W1 fan-out, W2 big room, W3 latency, W4 idle memory, W5 many
/// rooms, W6 churn, W7 join storm, F1 files (1 GiB up and down while a room chats); W1–W4
/// also against a featureless reflector, for ratios, and in IRC mode against ngIRCd.
///
/// Build first: `cargo build --release -p chat-server -p chat-bench`.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Tiny versions of every workload, in seconds (the test suite runs this).
    #[arg(long)]
    quick: bool,
    /// Workloads to run, e.g. `W1,W3` or `F1` (default: all). F1 runs once per round, in
    /// framed mode on the server as shipped, whatever --mode and --storage say.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Wire mode(s) the server is driven in: `both` is line and framed (the default run;
    /// with --cluster the default is framed), `all` adds IRC; `irc` alone is the comparison
    /// with ngIRCd.
    #[arg(long, value_parser = ["framed", "line", "irc", "both", "all"])]
    mode: Option<String>,
    /// ngIRCd, run on W1–W4 beside IRC mode in the same run (default: `ngircd` on PATH or
    /// in /usr/sbin, whenever IRC mode runs).
    #[arg(long, value_name = "PATH")]
    ngircd: Option<PathBuf>,
    /// Run IRC mode without ngIRCd.
    #[arg(long, conflicts_with = "ngircd")]
    no_ngircd: bool,
    /// Seconds each workload sends (default 10; W4: seconds the connections are held, 2).
    #[arg(long)]
    duration: Option<f64>,
    /// The chat-server binary, or `in-process` (default: next to this executable).
    #[arg(long)]
    server: Option<String>,
    /// W1's in-flight messages per sender.
    #[arg(long, default_value_t = chat_bench::DEFAULT_WINDOW)]
    window: u64,
    /// The server with its SQLite history (`on`, as shipped), with `--db none` (`off`), or
    /// both, to show what storage costs.
    #[arg(long, default_value = "both", value_parser = ["on", "off", "both"])]
    storage: String,
    /// Also run the server as shipped with its admin listener on and scraped every second
    /// (`server-scraped`: `/metrics` and `/clients`, as Prometheus and a dashboard would),
    /// beside `server` in every round: what exposing metrics costs (issue 14: W1 within
    /// 3 %).
    #[arg(long)]
    scrape: bool,
    /// Runs of each server case (storage on and off alternating); verdicts use medians.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// F1's file, in MiB (default 1024; the targets are for 1 GiB).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..=16384))]
    file_mib: Option<u64>,
    /// Skip the reflector (no ratios).
    #[arg(long)]
    no_reflector: bool,
    /// Print only the JSON lines.
    #[arg(long)]
    json_only: bool,
    /// Instead of the workloads: soak the server for this many seconds of churn and chatter
    /// (in rounds), checking that its descriptors and memory return to baseline.
    #[arg(long, value_name = "SECS")]
    soak: Option<u64>,
    /// Length of one soak round, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    soak_round: u64,
    /// Instead of the workloads: cluster mode (issue 16). A fresh `nats-server -js` on
    /// loopback and 1, 2 and 3 `chat-server --cluster` nodes on it, W1 and W3 with the
    /// clients spread round-robin over the nodes, beside the single node with its SQLite
    /// history in the same run (framed mode unless --mode says otherwise; --only may pick
    /// among W1–W3; no reflector runs, and --storage does not apply).
    #[arg(long, conflicts_with_all = ["soak", "scrape"])]
    cluster: bool,
    /// With --cluster: the nats-server binary (default: `nats-server` on PATH or in
    /// /usr/sbin).
    #[arg(long, value_name = "PATH", requires = "cluster")]
    nats: Option<PathBuf>,
    /// With --cluster: the cluster sizes to run, in order (1 to 8 nodes each).
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<usize>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The reference reflector as its own process (started by the benchmark itself).
    #[command(hide = true)]
    Reflector {
        /// Address to listen on; the chosen one is printed as `listening on ADDR`.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
    },
}

/// The wire modes `--mode` names, `default` when it is not given.
fn modes(mode: Option<&str>, default: &str) -> Vec<Mode> {
    match mode.unwrap_or(default) {
        "framed" => vec![Mode::Framed],
        "line" => vec![Mode::Line],
        "irc" => vec![Mode::Irc],
        "all" => vec![Mode::Line, Mode::Framed, Mode::Irc],
        _ => vec![Mode::Line, Mode::Framed],
    }
}

/// `--server`: a binary (next to this one by default) or `in-process`.
fn server_spec(args: &Args) -> anyhow::Result<ServerSpec> {
    if args.server.as_deref() == Some("in-process") {
        return Ok(ServerSpec::InProcess);
    }
    let explicit = args.server.as_ref().map(PathBuf::from);
    Ok(ServerSpec::Binary(chat_bench::server_proc::locate_server(
        explicit.as_deref(),
    )?))
}

/// `--duration`, checked.
fn duration(args: &Args) -> anyhow::Result<Option<Duration>> {
    match args.duration {
        Some(s) if s.is_finite() && s > 0.0 && s <= 3600.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(s) => bail!("--duration must be between 0 and 3600 seconds, got {s}"),
        None => Ok(None),
    }
}

fn scale(args: &Args) -> Scale {
    if args.quick {
        Scale::Quick
    } else {
        Scale::Full
    }
}

fn cluster_options(args: &Args) -> anyhow::Result<ClusterOptions> {
    let mut workloads = Vec::new();
    for name in &args.only {
        match Workload::parse(name) {
            Some(w @ (Workload::W1 | Workload::W2 | Workload::W3)) => workloads.push(w),
            _ => bail!("--cluster runs W1, W2 and W3 only, not {name:?}"),
        }
    }
    if workloads.is_empty() {
        workloads = vec![Workload::W1, Workload::W3];
    }
    workloads.sort();
    workloads.dedup();
    let Some(nats) = chat_bench::cluster::locate_nats(args.nats.as_deref()) else {
        match &args.nats {
            Some(p) => bail!("--nats: no file at {}", p.display()),
            None => bail!(
                "--cluster needs nats-server (≥ 2.9, with JetStream): none on PATH or in \
                 /usr/sbin (`apt-get install nats-server`, or --nats PATH)"
            ),
        }
    };
    let mut nodes = args.nodes.clone();
    nodes.dedup();
    Ok(ClusterOptions {
        workloads,
        modes: modes(args.mode.as_deref(), "framed"),
        nodes,
        scale: scale(args),
        duration: duration(args)?,
        window: args.window.max(1),
        server: server_spec(args)?,
        nats,
        repeat: args.repeat.clamp(1, 100),
    })
}

fn options(args: &Args) -> anyhow::Result<Options> {
    let workloads = if args.only.is_empty() {
        Workload::ALL.to_vec()
    } else {
        let mut ws = Vec::new();
        for name in &args.only {
            match Workload::parse(name) {
                Some(w) => ws.push(w),
                None => bail!("unknown workload {name:?}: expected W1 … W7 or F1"),
            }
        }
        ws.sort();
        ws.dedup();
        ws
    };
    let modes = modes(args.mode.as_deref(), "both");
    let ngircd = if args.no_ngircd || !modes.contains(&Mode::Irc) {
        None
    } else {
        match chat_bench::ngircd::locate(args.ngircd.as_deref()) {
            Some(p) => Some(p),
            None if args.ngircd.is_some() => bail!("--ngircd: no file at {:?}", args.ngircd),
            None => {
                eprintln!(
                    "chat-bench: no ngircd on PATH or in /usr/sbin: IRC mode runs without \
                     ngIRCd's figures (`apt-get install ngircd`, or --ngircd PATH)"
                );
                None
            }
        }
    };
    let server = server_spec(args)?;
    let in_process = matches!(server, ServerSpec::InProcess);
    let reflector = if args.no_reflector {
        ReflectorSpec::Off
    } else if in_process {
        ReflectorSpec::InProcess
    } else {
        ReflectorSpec::Process(std::env::current_exe()?)
    };
    Ok(Options {
        workloads,
        modes,
        ngircd,
        scale: scale(args),
        duration: duration(args)?,
        window: args.window.max(1),
        server,
        reflector,
        storage: {
            let mut storage = match args.storage.as_str() {
                "on" => vec![Storage::On],
                "off" => vec![Storage::Off],
                _ => vec![Storage::On, Storage::Off],
            };
            if args.scrape {
                storage.push(Storage::Scraped);
            }
            storage
        },
        repeat: args.repeat.clamp(1, 100),
        file_size: args.file_mib.map(|m| m << 20),
    })
}

fn describe(server: &ServerSpec) -> String {
    match server {
        ServerSpec::InProcess => "chat-server in process".into(),
        ServerSpec::Binary(p) => {
            let built = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .map_or_else(String::new, |age| {
                    format!(" (built {} min ago)", age.as_secs() / 60)
                });
            format!("{}{built}", p.display())
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Two workers: the load generator shares two cores with the server, as in issue 4.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if let Some(Cmd::Reflector { listen }) = &args.cmd {
        // Errors only cost W4's 10,000 connections, which then fail visibly.
        let _ = rlimit::increase_nofile_limit(u64::MAX);
        return runtime.block_on(chat_bench::reflector::main(listen));
    }
    if args.cluster {
        return cluster_main(&args, &runtime);
    }
    let opts = options(&args)?;
    if let Some(total) = args.soak {
        let round = args.soak_round.clamp(1, 3600);
        let rounds = usize::try_from(total.div_ceil(round).max(1)).unwrap_or(1);
        let json_only = args.json_only;
        let reports = runtime.block_on(chat_bench::run_soak(
            &opts.server,
            &opts.modes,
            opts.scale,
            Duration::from_secs(round),
            rounds,
            |r| {
                if !json_only {
                    print!("{}", r.table());
                }
                println!("{}", serde_json::to_string(r).unwrap_or_default());
            },
        ))?;
        if reports
            .iter()
            .all(|r| r.fds_returned() && r.rss_plateaued())
        {
            return Ok(());
        }
        bail!("the soak found descriptors or memory that did not come back");
    }
    if !args.json_only {
        println!("chat-bench on {}", chat_bench::machine());
        println!("server: {}", describe(&opts.server));
        if let Some(p) = &opts.ngircd {
            println!("IRC reference: {} (W1–W4, IRC mode)", p.display());
        }
        println!(
            "load generator: this process, 2 tokio workers; rates and latencies over loopback"
        );
        println!();
    }
    let json_only = args.json_only;
    let outcomes = runtime.block_on(chat_bench::run(&opts, |o| {
        if !json_only {
            eprintln!(
                "done: {} {} {} ({:.1} s)",
                o.workload, o.target, o.mode, o.wall_s
            );
        }
        println!("{}", o.json());
    }))?;
    if !json_only {
        println!();
        print!("{}", table(&outcomes));
        if opts.scale == Scale::Full {
            println!();
            print!("{}", targets(&outcomes));
        }
    }
    Ok(())
}

/// `--cluster`: the cases, their JSON lines as they complete, then the report.
fn cluster_main(args: &Args, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
    let opts = cluster_options(args)?;
    let json_only = args.json_only;
    if !json_only {
        println!("chat-bench --cluster on {}", chat_bench::machine());
        println!("server: {}", describe(&opts.server));
        println!("nats-server: {}", opts.nats.display());
        println!(
            "load generator: this process, 2 tokio workers; rates and latencies over loopback"
        );
        println!();
    }
    let outcomes = runtime.block_on(chat_bench::cluster::run_cluster(&opts, |o| {
        if !json_only {
            eprintln!(
                "done: {} {} {} ({:.1} s)",
                o.workload, o.target, o.mode, o.wall_s
            );
        }
        println!("{}", o.json());
    }))?;
    if !json_only {
        println!();
        print!("{}", table(&outcomes));
        println!();
        print!("{}", cluster_report(&outcomes));
    }
    Ok(())
}
