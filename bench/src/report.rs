//! Results: one [`Outcome`] per workload, target and mode; printed as a table for people
//! and as one JSON line each for scripts, with every server result also given as a ratio
//! to the reflector's in the same run (the figure that survives a noisy machine).
//!
//! Layout:
//! - [`Outcome`], [`Idle`], [`Churn`], [`Storm`], [`Transfer`]: what one run measured.
//! - [`Outcome::compare`]: the ratio to the reflector, per workload's headline metric.
//! - [`table`]: the human table; [`targets`]: issue 10's targets, met or not, and issue 6's
//!   cost of storage, issue 14's of metrics, issue 15's file transfer (F1).

use std::fmt::Write;

use serde::Serialize;

use crate::stats::Latency;

/// W4's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Idle {
    /// Connections opened and logged in.
    pub connections: u64,
    /// Members of each room they stay in.
    pub members_per_room: u64,
    /// Still open after the hold period.
    pub held: u64,
    /// Target RSS before the first connection.
    pub rss_before_kib: Option<u64>,
    /// Target RSS with every connection held.
    pub rss_after_kib: Option<u64>,
    /// (after − before) / connections.
    pub kib_per_conn: Option<f64>,
}

/// W6's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Churn {
    /// Completed connect-login-join-quit cycles.
    pub cycles: u64,
    /// Cycles that failed.
    pub failures: u64,
    /// Completed cycles per second.
    pub cycles_per_s: f64,
    /// Duration of one cycle.
    pub cycle_latency: Latency,
    /// Message latency in the busy room meanwhile.
    pub room_latency: Latency,
}

/// W7's figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Storm {
    /// Members of the room before the senders started (loss is counted for them).
    pub early_members: u64,
    /// Clients that joined at once.
    pub joiners: u64,
    /// Joins the server confirmed.
    pub joined: u64,
    /// Joins that failed (refused, or not confirmed in time).
    pub failures: u64,
    /// From the first join to the last confirmed one, seconds.
    pub join_all_s: f64,
    /// One joiner's connect, login and join until confirmed.
    pub join_latency: Latency,
    /// The last join was confirmed after the senders had stopped.
    pub outlasted_talk: bool,
    /// `lagged` events at joiners (also in the outcome's total).
    pub joiner_lag_events: u64,
    /// Live messages the joiners received after their join (not counted as loss either way).
    pub joiner_deliveries: u64,
    /// Latency over the whole talk, before and after the storm too, at every member.
    pub talk_latency: Latency,
}

/// F1's figures (issue 15). MB is 10^6 bytes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Transfer {
    /// The file's length.
    pub bytes: u64,
    /// PATCH requests it was uploaded in.
    pub patches: u64,
    /// Bytes per PATCH (the last may be shorter).
    pub patch_bytes: u64,
    /// The filesystem the server kept the files on (`TYPE DEVICE on MOUNTPOINT`).
    pub files_fs: String,
    /// From the first byte of the first PATCH to the server's `message` sharing the file.
    pub upload_s: f64,
    /// `bytes` / `upload_s`.
    pub upload_mb_s: f64,
    /// Of `upload_s`, from the last byte written to the `message`: the server's last block
    /// written, its whole-file check, its fsync and the share.
    pub upload_finish_s: f64,
    /// From the `GET` to the last byte, hashed.
    pub download_s: f64,
    /// `bytes` / `download_s`.
    pub download_mb_s: f64,
    /// The server shared the announced SHA-256, and the download hashed to it.
    pub sha256_verified: bool,
    /// Server RSS right before the upload, KiB.
    pub upload_rss_before_kib: Option<u64>,
    /// Its peak during the upload (read every 10 ms), KiB.
    pub upload_rss_peak_kib: Option<u64>,
    /// Peak − before, KiB.
    pub upload_rss_growth_kib: Option<u64>,
    /// The same for the download.
    pub download_rss_before_kib: Option<u64>,
    /// The same for the download.
    pub download_rss_peak_kib: Option<u64>,
    /// The same for the download.
    pub download_rss_growth_kib: Option<u64>,
    /// Server CPU during the upload, % of one core.
    pub upload_server_cpu_pct: Option<f64>,
    /// Server CPU during the download, % of one core.
    pub download_server_cpu_pct: Option<f64>,
    /// This load generator's CPU during the upload, % of one core.
    pub upload_loadgen_cpu_pct: f64,
    /// This load generator's CPU during the download, % of one core.
    pub download_loadgen_cpu_pct: f64,
    /// Members of the chatting room (receivers and senders; the uploader comes on top).
    pub chat_members: u64,
    /// The room's latency before, without a transfer.
    pub chat_baseline: Latency,
    /// The room's latency during the upload.
    pub chat_upload: Latency,
    /// The room's latency during the download.
    pub chat_download: Latency,
    /// The larger of the two p99s during a transfer / the baseline's p99.
    pub p99_ratio: f64,
}

/// `--cluster`: the nodes' own cluster counters at the end of a case, added up (their
/// `/metrics`: `chat_cluster_*`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NodeStats {
    /// Room messages the nodes published to JetStream.
    pub published: u64,
    /// The stream messages they went out in (a node publishes what a room has queued as
    /// one).
    pub publishes: u64,
    /// The time JetStream took to store those, from publish to ack, in total, µs.
    pub publish_us: u64,
    /// Messages published again because another node had taken their `seq`.
    pub conflicts: u64,
    /// Stream messages not yet applied at the end, at the node furthest behind.
    pub behind: u64,
}

impl NodeStats {
    /// Mean time from publish to JetStream's ack, µs (per stream message).
    pub fn publish_mean_us(&self) -> Option<f64> {
        (self.publishes > 0).then(|| self.publish_us as f64 / self.publishes as f64)
    }
}

/// One workload against one target in one mode.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// `W1` … `W7`.
    pub workload: &'static str,
    /// `server` or `reflector`.
    pub target: &'static str,
    /// `framed` or `line`.
    pub mode: &'static str,
    /// Connections the workload used (W6: besides the churning ones; W7: joiners included).
    pub clients: usize,
    /// Measured interval: first send to last delivery (W4: the logins).
    pub wall_s: f64,
    /// Messages sent.
    pub sent: u64,
    /// Deliveries owed: each message × the members that were in the room to receive it
    /// (receivers, not counting the sender's own copy; W7: the members before the storm).
    pub expected: u64,
    /// Deliveries received.
    pub delivered: u64,
    /// `expected − delivered` (negative would mean duplicates).
    pub lost: i64,
    /// `lagged` events at any client of the workload (the server skipped messages for a
    /// reader it judged slow).
    pub lag_events: u64,
    /// Connections that ended during the workload.
    pub disconnects: u64,
    /// Deliveries per second.
    pub deliveries_per_s: f64,
    /// Messages per second (W4: logins per second; W6: churn cycles per second).
    pub messages_per_s: f64,
    /// Send-to-receive latency (W6: one churn cycle; W7: messages sent during the storm).
    pub latency: Latency,
    /// Target RSS at the end, KiB (absent when it runs in this process).
    pub server_rss_kib: Option<u64>,
    /// Target CPU over the interval, % of one core.
    pub server_cpu_pct: Option<f64>,
    /// This load generator's CPU over the interval, % of one core.
    pub loadgen_cpu_pct: f64,
    /// `--cluster`: the chat-server nodes the clients were spread over (the server figures
    /// are theirs added up).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<usize>,
    /// `--cluster` with more than one node: the latency of the deliveries whose sender was
    /// on another node than their receiver (also in `latency`, which has them all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_latency: Option<Latency>,
    /// W1–W3 in framed mode: from a message's send to its sender's own copy, the
    /// acknowledgement (which waits for the disk's group commit; the other members' copies
    /// do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_latency: Option<Latency>,
    /// `--cluster`: the NATS server's RSS at the end, KiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_rss_kib: Option<u64>,
    /// `--cluster`: the NATS server's CPU over the interval, % of one core.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_cpu_pct: Option<f64>,
    /// `--cluster`: the nodes' cluster counters at the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<NodeStats>,
    /// W4 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle: Option<Idle>,
    /// W6 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub churn: Option<Churn>,
    /// W7 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storm: Option<Storm>,
    /// F1 only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transfer: Option<Transfer>,
    /// This result's headline metric divided by the reflector's (see `ratio_of`).
    pub ratio: Option<f64>,
    /// What `ratio` divides.
    pub ratio_of: Option<&'static str>,
    /// IRC mode: the headline metric divided by ngIRCd's in the same round (`ratio_of`
    /// says which metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vs_ngircd: Option<f64>,
}

impl Outcome {
    /// An empty outcome for `clients` connections.
    pub fn new(clients: usize) -> Self {
        Self {
            clients,
            ..Self::default()
        }
    }

    /// Rates and loss from the counts and the wall time.
    pub fn derive_rates(&mut self) {
        let wall = self.wall_s.max(1e-9);
        self.deliveries_per_s = self.delivered as f64 / wall;
        self.messages_per_s = self.sent as f64 / wall;
        self.lost = i64::try_from(self.expected).unwrap_or(i64::MAX)
            - i64::try_from(self.delivered).unwrap_or(i64::MAX);
    }

    /// The workload's headline metric and its name: W1 throughput, W2/W3 p99 latency, W4
    /// memory per connection, W7 p99 latency during the storm (no reflector runs W7: it
    /// only picks `--repeat`'s median run).
    fn headline(&self) -> Option<(f64, &'static str)> {
        match self.workload {
            "W1" => Some((self.deliveries_per_s, "deliveries_per_s")),
            "W2" | "W3" | "W7" => Some((self.latency.p99_us, "p99")),
            "W4" => self
                .idle
                .as_ref()
                .and_then(|i| i.kib_per_conn)
                .map(|k| (k, "kib_per_conn")),
            _ => None,
        }
    }

    /// Sets `ratio` against the reflector's result for the same workload.
    pub fn compare(&mut self, reflector: &Outcome) {
        if let (Some((mine, what)), Some((theirs, _))) = (self.headline(), reflector.headline())
            && theirs > 0.0
        {
            self.ratio = Some(mine / theirs);
            self.ratio_of = Some(what);
        }
    }

    /// Sets `vs_ngircd` against ngIRCd's result for the same workload (IRC mode).
    pub fn compare_ngircd(&mut self, ngircd: &Outcome) {
        if let (Some((mine, what)), Some((theirs, _))) = (self.headline(), ngircd.headline())
            && theirs > 0.0
        {
            self.vs_ngircd = Some(mine / theirs);
            self.ratio_of.get_or_insert(what);
        }
    }

    /// One JSON line.
    pub fn json(&self) -> String {
        // Plain data with string keys: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn count(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn micros(us: f64) -> String {
    if us <= 0.0 {
        "-".into()
    } else if us < 1000.0 {
        format!("{us:.0}µs")
    } else if us < 100_000.0 {
        format!("{:.1}ms", us / 1000.0)
    } else {
        format!("{:.0}ms", us / 1000.0)
    }
}

/// Bytes as MiB or GiB.
fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / f64::from(1u32 << 30))
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

fn mib_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn opt<T>(v: Option<T>, f: impl Fn(T) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

/// The table of `outcomes`, one row each.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<3} {:<11} {:<6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6}  notes",
        "wl",
        "target",
        "mode",
        "conns",
        "deliv/s",
        "msgs/s",
        "p50",
        "p90",
        "p99",
        "max",
        "lost",
        "lagged",
        "srvRSS",
        "srvCPU",
        "genCPU",
        "×refl"
    );
    for o in outcomes {
        let mut notes = Vec::new();
        if let Some(i) = &o.idle {
            notes.push(format!(
                "{}/{} held in rooms of {}, {} KiB/conn, logins/s in msgs/s",
                i.held,
                i.connections,
                i.members_per_room,
                opt(i.kib_per_conn, |k| format!("{k:.2}"))
            ));
        }
        if let Some(st) = &o.storm {
            notes.push(format!(
                "{}/{} joined in {:.2} s (one join p50 {}, p99 {}){}{}; latency = talk during the storm, whole talk p99 {}; lost: at the {} early members",
                st.joined,
                st.joiners,
                st.join_all_s,
                micros(st.join_latency.p50_us),
                micros(st.join_latency.p99_us),
                if st.failures > 0 {
                    format!(", {} failed", st.failures)
                } else {
                    String::new()
                },
                if st.outlasted_talk {
                    ", outlasting the talk"
                } else {
                    ""
                },
                micros(st.talk_latency.p99_us),
                st.early_members
            ));
        }
        if let Some(t) = &o.transfer {
            notes.push(format!(
                "{} up {:.0} MB/s, down {:.0} MB/s{}; srvRSS +{} / +{}; latency = the room of {} during both, p99 {} without",
                mib(t.bytes),
                t.upload_mb_s,
                t.download_mb_s,
                if t.sha256_verified {
                    ", SHA-256 verified"
                } else {
                    ", SHA-256 NOT verified"
                },
                opt(t.upload_rss_growth_kib, mib_kib),
                opt(t.download_rss_growth_kib, mib_kib),
                t.chat_members,
                micros(t.chat_baseline.p99_us)
            ));
        }
        if let Some(c) = &o.churn {
            notes.push(format!(
                "{} cycles ({} failed), latency = one cycle; busy room p99 {}",
                c.cycles,
                c.failures,
                micros(c.room_latency.p99_us)
            ));
        }
        if let Some(a) = o.ack_latency.as_ref().filter(|a| a.count > 0) {
            notes.push(format!(
                "acks p50 {} p99 {}",
                micros(a.p50_us),
                micros(a.p99_us)
            ));
        }
        if o.disconnects > 0 && o.idle.is_none() {
            notes.push(format!("{} disconnected", o.disconnects));
        }
        if let (Some(r), Some(what)) = (o.vs_ngircd, o.ratio_of) {
            notes.push(format!("{r:.2} × ngIRCd's {what}"));
        }
        if let (Some(_), Some(what)) = (o.ratio, o.ratio_of) {
            notes.push(format!("×refl of {what}"));
        }
        let _ = writeln!(
            s,
            "{:<3} {:<11} {:<6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6}  {}",
            o.workload,
            o.target,
            o.mode,
            o.clients,
            if o.delivered > 0 {
                count(o.deliveries_per_s)
            } else {
                "-".into()
            },
            count(o.messages_per_s),
            micros(o.latency.p50_us),
            micros(o.latency.p90_us),
            micros(o.latency.p99_us),
            micros(o.latency.max_us),
            if o.expected > 0 {
                o.lost.to_string()
            } else {
                "-".into()
            },
            o.lag_events,
            opt(o.server_rss_kib, |k| format!("{:.1}M", k as f64 / 1024.0)),
            opt(o.server_cpu_pct, |c| format!("{c:.0}%")),
            format!("{:.0}%", o.loadgen_cpu_pct),
            opt(o.ratio, |r| format!("{r:.2}")),
            notes.join("; ")
        );
    }
    s
}

/// The middle value (the upper one of an even count).
fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The outcomes of one case, in the order they ran.
fn runs<'a>(outcomes: &'a [Outcome], w: &str, t: &str, m: &str) -> Vec<&'a Outcome> {
    outcomes
        .iter()
        .filter(|o| o.workload == w && o.target == t && o.mode == m)
        .collect()
}

/// The run of a case with the median headline figure.
fn median_run<'a>(outcomes: &'a [Outcome], w: &str, t: &str, m: &str) -> Option<&'a Outcome> {
    let mut runs = runs(outcomes, w, t, m);
    let key = |o: &Outcome| o.headline().map_or(0.0, |(v, _)| v);
    runs.sort_by(|a, b| key(a).total_cmp(&key(b)));
    runs.get(runs.len() / 2).copied()
}

/// The run of a case with the median ratio to its round's reflector (the median headline
/// figure's without a reflector).
fn median_ratio_run<'a>(outcomes: &'a [Outcome], w: &str, t: &str, m: &str) -> Option<&'a Outcome> {
    let mut runs = runs(outcomes, w, t, m);
    if runs.iter().any(|o| o.ratio.is_none()) {
        return median_run(outcomes, w, t, m);
    }
    runs.sort_by(|a, b| a.ratio.unwrap_or(0.0).total_cmp(&b.ratio.unwrap_or(0.0)));
    runs.get(runs.len() / 2).copied()
}

/// How many side-by-side pairs a cost is the median of, for its line.
fn of_pairs(k: usize) -> String {
    if k > 1 {
        format!(", median of {k} pairs")
    } else {
        String::new()
    }
}

/// Issue 6: what storage costs, from the runs with and without it taken in pairs (they ran
/// side by side); the median pair decides.
fn storage_cost(outcomes: &[Outcome], s: &mut String) {
    for mode in ["line", "framed"] {
        let pairs = |w: &str| {
            runs(outcomes, w, "server", mode)
                .into_iter()
                .zip(runs(outcomes, w, "server-nodb", mode))
                .collect::<Vec<_>>()
        };
        let w1 = pairs("W1");
        let costs: Vec<f64> = w1
            .iter()
            .filter(|(_, off)| off.deliveries_per_s > 0.0)
            .map(|(on, off)| 1.0 - on.deliveries_per_s / off.deliveries_per_s)
            .collect();
        let k = costs.len();
        if let Some(cost) = median(costs) {
            let on = median(w1.iter().map(|(on, _)| on.deliveries_per_s).collect()).unwrap_or(0.0);
            let off =
                median(w1.iter().map(|(_, off)| off.deliveries_per_s).collect()).unwrap_or(0.0);
            let _ = writeln!(
                s,
                "{} W1 {mode} storage cost: {:.1} % of deliveries/s ({} with, {} without{}), target ≤ 15 %",
                if cost <= 0.15 { "met   " } else { "MISSED" },
                cost * 100.0,
                count(on),
                count(off),
                of_pairs(k)
            );
        }
        for w in ["W2", "W3"] {
            let p = pairs(w);
            let added: Vec<f64> = p
                .iter()
                .map(|(on, off)| (on.latency.p99_us - off.latency.p99_us) / 1000.0)
                .collect();
            let k = added.len();
            if let Some(added) = median(added) {
                let on = median(p.iter().map(|(on, _)| on.latency.p99_us).collect()).unwrap_or(0.0);
                let off =
                    median(p.iter().map(|(_, off)| off.latency.p99_us).collect()).unwrap_or(0.0);
                let _ = writeln!(
                    s,
                    "{} {w} {mode} storage cost: p99 {:+.1} ms ({} with, {} without{}), target a few ms at most (≤ 5)",
                    if added <= 5.0 { "met   " } else { "MISSED" },
                    added,
                    micros(on),
                    micros(off),
                    of_pairs(k)
                );
            }
        }
    }
}

/// Issue 13's targets for IRC mode, judged on `server` against ngIRCd in the same run: W1
/// ≥ 2 × ngIRCd's deliveries/s, W4 less memory per idle connection than ngIRCd; W2 and W3
/// are shown beside ngIRCd's without a target. With `--repeat`, the median of the rounds'
/// ratios (each server run is compared to the ngIRCd run right before it).
fn irc_targets(outcomes: &[Outcome], s: &mut String) {
    let mut lines = String::new();
    for w in ["W1", "W2", "W3", "W4"] {
        let ours = runs(outcomes, w, "server", "irc");
        let theirs = runs(outcomes, w, "ngircd", "irc");
        let k = ours.iter().filter(|o| o.vs_ngircd.is_some()).count();
        let Some(r) = median(ours.iter().filter_map(|o| o.vs_ngircd).collect()) else {
            continue;
        };
        let figure = |runs: &[&Outcome]| {
            median(
                runs.iter()
                    .filter_map(|o| o.headline().map(|h| h.0))
                    .collect(),
            )
        };
        let (a, b) = (figure(&ours).unwrap_or(0.0), figure(&theirs).unwrap_or(0.0));
        let rounds = if k > 1 {
            format!(", median of {k} rounds")
        } else {
            String::new()
        };
        let lost = ours.iter().map(|o| o.lost).max().unwrap_or(0);
        let _ = match w {
            "W1" => writeln!(
                lines,
                "{} W1 irc: {r:.2} × ngIRCd's deliveries/s ({} against {}{rounds}), lost {lost}, target ≥ 2 × ngIRCd's and 0 lost",
                if r >= 2.0 && lost == 0 {
                    "met   "
                } else {
                    "MISSED"
                },
                count(a),
                count(b)
            ),
            "W4" => writeln!(
                lines,
                "{} W4 irc: {a:.2} KiB per idle connection against ngIRCd's {b:.2} ({r:.2} ×{rounds}), target below ngIRCd's",
                if r < 1.0 { "met   " } else { "MISSED" },
            ),
            _ => writeln!(
                lines,
                "info   {w} irc: p99 {} against ngIRCd's {} ({r:.2} ×{rounds}), lost {lost}, no target",
                micros(a),
                micros(b)
            ),
        };
    }
    if !lines.is_empty() {
        s.push_str("issue 13's targets, IRC mode, `server` against ngIRCd in the same run:\n");
        s.push_str(&lines);
    }
}

/// A verdict from the conditions that were measured (`judged`) and one that may not have
/// been (`None`: no reflector in this run, or no RSS in process): such a line says `n/a`
/// unless a measured condition already failed.
fn verdict(judged: bool, unmeasured: Option<bool>) -> &'static str {
    match (judged, unmeasured) {
        (false, _) | (true, Some(false)) => "MISSED",
        (true, Some(true)) => "met   ",
        (true, None) => "n/a   ",
    }
}

/// Issue 10's targets (its item 5), one line each, saying the target and what was measured:
/// met, MISSED, or n/a when a figure they need is missing from this run.
///
/// They are judged on the server as shipped: its default flags but the rate and connection
/// limits, with its history database (`server`); with `--repeat`, on the run with the
/// median ratio to the reflector (W1–W3) or the median headline figure (the rest). Ratios
/// are to the reflector (line mode) of the same round. What storage costs is judged apart
/// (issue 6, [`storage_cost`]).
pub fn targets(outcomes: &[Outcome]) -> String {
    let find = |w: &str, m: &str| {
        if ["W1", "W2", "W3"].contains(&w) {
            median_ratio_run(outcomes, w, "server", m)
        } else {
            median_run(outcomes, w, "server", m)
        }
    };
    let ratio = |o: &Outcome| opt(o.ratio, |r| format!("{r:.2}"));
    let mut s = String::new();
    for mode in ["line", "framed"] {
        if let Some(o) = find("W1", mode) {
            let floor = if mode == "line" { 0.7 } else { 0.6 };
            let _ = writeln!(
                s,
                "{} W1 {mode}: lost {}, lagged {}, {} × the reflector ({} deliveries/s), target 0 lost, 0 lagged, ≥ {floor} × the reflector",
                verdict(
                    o.lost == 0 && o.lag_events == 0,
                    o.ratio.map(|r| r >= floor)
                ),
                o.lost,
                o.lag_events,
                ratio(o),
                count(o.deliveries_per_s)
            );
        }
        if let Some(o) = find("W2", mode) {
            let _ = writeln!(
                s,
                "{} W2 {mode}: lost {}, lagged {}, p99 {} = {} × the reflector's, target 0 lost, 0 lagged, p99 ≤ 1.1 × the reflector's",
                verdict(o.lost == 0 && o.lag_events == 0, o.ratio.map(|r| r <= 1.1)),
                o.lost,
                o.lag_events,
                micros(o.latency.p99_us),
                ratio(o)
            );
        }
        if let Some(o) = find("W3", mode) {
            let _ = writeln!(
                s,
                "{} W3 {mode}: p99 {} = {} × the reflector's, target ≤ 1.2 × the reflector's",
                verdict(true, o.ratio.map(|r| r <= 1.2)),
                micros(o.latency.p99_us),
                ratio(o)
            );
        }
        if let Some(o) = find("W4", mode)
            && let Some(i) = &o.idle
        {
            let _ = writeln!(
                s,
                "{} W4 {mode}: {} KiB per idle connection in rooms of {}, {}/{} held, target ≤ 2.5 KiB and 10000 held",
                verdict(i.held >= 10_000, i.kib_per_conn.map(|k| k <= 2.5)),
                opt(i.kib_per_conn, |k| format!("{k:.2}")),
                i.members_per_room,
                i.held,
                i.connections
            );
        }
        if let Some(o) = find("W7", mode)
            && let Some(st) = &o.storm
        {
            let _ = writeln!(
                s,
                "{} W7 {mode}: lagged {} ({} at joiners), {}/{} joined in {:.2} s, p99 {} during the storm, lost {} at the {} early members, target 0 lagged (and everyone joined, early members lose nothing)",
                verdict(
                    o.lag_events == 0 && o.lost == 0 && st.joined == st.joiners,
                    Some(true)
                ),
                o.lag_events,
                st.joiner_lag_events,
                st.joined,
                st.joiners,
                st.join_all_s,
                micros(o.latency.p99_us),
                o.lost,
                st.early_members
            );
        }
    }
    if !s.is_empty() {
        s.insert_str(
            0,
            "issue 10's targets, judged on `server` (storage on, the server's default flags):\n",
        );
    }
    irc_targets(outcomes, &mut s);
    let mut cost = String::new();
    storage_cost(outcomes, &mut cost);
    if !cost.is_empty() {
        s.push_str("issue 6's storage cost, `server` (SQLite) against `server-nodb`:\n");
        s.push_str(&cost);
    }
    files_targets(outcomes, &mut s);
    let mut cost = String::new();
    metrics_cost(outcomes, &mut cost);
    if !cost.is_empty() {
        s.push_str("issue 14's metrics cost, `server-scraped` against `server`:\n");
        s.push_str(&cost);
    }
    s
}

/// F1's throughput target, MB/s (10^6 bytes), each way.
pub const F1_MB_S: f64 = 300.0;
/// F1's RSS growth target, KiB, during either transfer.
pub const F1_RSS_GROWTH_KIB: u64 = 32 * 1024;
/// F1's chat target: the room's p99 during a transfer at most this × its p99 without.
pub const F1_P99_RATIO: f64 = 1.5;

/// Issue 15's targets (its item 7), judged on F1; with `--repeat`, on the median of each
/// figure over the runs (the SHA-256 must be verified in all of them).
fn files_targets(outcomes: &[Outcome], s: &mut String) {
    let f1 = runs(outcomes, "F1", "server", "framed");
    let ts: Vec<&Transfer> = f1.iter().filter_map(|o| o.transfer.as_ref()).collect();
    let Some(first) = ts.first() else {
        return;
    };
    let k = ts.len();
    let med =
        |f: &dyn Fn(&Transfer) -> f64| median(ts.iter().map(|t| f(t)).collect()).unwrap_or(0.0);
    let med_kib = |f: &dyn Fn(&Transfer) -> Option<u64>| {
        ts.iter()
            .map(|t| f(t))
            .collect::<Option<Vec<u64>>>()
            .and_then(|v| median(v.into_iter().map(|x| x as f64).collect()))
            .map(|x| x as u64)
    };
    let (up, down) = (med(&|t| t.upload_mb_s), med(&|t| t.download_mb_s));
    let verified = ts.iter().all(|t| t.sha256_verified);
    let runs_note = if k > 1 {
        format!(", medians of {k} runs")
    } else {
        String::new()
    };
    s.push_str(
        "issue 15's targets, F1 (`server` as shipped, --max-file-size and --quota-per-user raised for 1 GiB):\n",
    );
    let _ = writeln!(
        s,
        "{} F1 transfer: up {up:.0} MB/s ({:.2} s, {:.2} s of it after the last byte), down {down:.0} MB/s ({:.2} s), {} in {} PATCHes, SHA-256 {}, files on {}{runs_note}, target ≥ {F1_MB_S:.0} MB/s each way with the SHA-256 verified",
        verdict(verified && up >= F1_MB_S && down >= F1_MB_S, Some(true)),
        med(&|t| t.upload_s),
        med(&|t| t.upload_finish_s),
        med(&|t| t.download_s),
        mib(first.bytes),
        first.patches,
        if verified { "verified" } else { "NOT verified" },
        first.files_fs
    );
    let (grown_up, grown_down) = (
        med_kib(&|t| t.upload_rss_growth_kib),
        med_kib(&|t| t.download_rss_growth_kib),
    );
    let _ = writeln!(
        s,
        "{} F1 server RSS growth: +{} uploading, +{} downloading (peaks {} / {}){runs_note}, target ≤ 32 MiB during either",
        verdict(
            true,
            grown_up
                .zip(grown_down)
                .map(|(u, d)| u.max(d) <= F1_RSS_GROWTH_KIB)
        ),
        opt(grown_up, mib_kib),
        opt(grown_down, mib_kib),
        opt(med_kib(&|t| t.upload_rss_peak_kib), mib_kib),
        opt(med_kib(&|t| t.download_rss_peak_kib), mib_kib)
    );
    let ratio = med(&|t| t.p99_ratio);
    let ratios = if k > 1 {
        let all: Vec<String> = ts.iter().map(|t| format!("{:.2}", t.p99_ratio)).collect();
        format!(" (runs: {})", all.join(", "))
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "{} F1 room of {}: p99 {} uploading, {} downloading, {} without = {ratio:.2} ×{ratios}, lost {}, lagged {}{runs_note}, target ≤ {F1_P99_RATIO} × the p99 without",
        verdict(
            ts.iter().all(|t| t.chat_baseline.p99_us > 0.0) && ratio <= F1_P99_RATIO,
            Some(true)
        ),
        first.chat_members,
        micros(med(&|t| t.chat_upload.p99_us)),
        micros(med(&|t| t.chat_download.p99_us)),
        micros(med(&|t| t.chat_baseline.p99_us)),
        f1.iter().map(|o| o.lost).max().unwrap_or(0),
        f1.iter().map(|o| o.lag_events).max().unwrap_or(0)
    );
}

/// Issue 14: what exposing metrics costs W1, from the runs with the admin listener scraped
/// and without it, taken in pairs (they ran side by side); the median pair decides.
/// (The counting itself is always on: see README Performance for its share.)
fn metrics_cost(outcomes: &[Outcome], s: &mut String) {
    for mode in ["line", "framed", "irc"] {
        let pairs: Vec<_> = runs(outcomes, "W1", "server-scraped", mode)
            .into_iter()
            .zip(runs(outcomes, "W1", "server", mode))
            .filter(|(_, plain)| plain.deliveries_per_s > 0.0)
            .collect();
        let costs: Vec<f64> = pairs
            .iter()
            .map(|(scraped, plain)| 1.0 - scraped.deliveries_per_s / plain.deliveries_per_s)
            .collect();
        let k = costs.len();
        let Some(cost) = median(costs) else {
            continue;
        };
        let scraped =
            median(pairs.iter().map(|(o, _)| o.deliveries_per_s).collect()).unwrap_or(0.0);
        let plain = median(pairs.iter().map(|(_, o)| o.deliveries_per_s).collect()).unwrap_or(0.0);
        let _ = writeln!(
            s,
            "{} W1 {mode} metrics cost: {:+.1} % of deliveries/s ({} scraped, {} not{}), target ≤ 3 %",
            if cost <= 0.03 { "met   " } else { "MISSED" },
            cost * 100.0,
            count(scraped),
            count(plain),
            of_pairs(k)
        );
    }
}

/// Issue 16's bound on cross-node W3 p99, in multiples of the single node's.
pub const CLUSTER_P99_BOUND: f64 = 3.0;

/// How `--cluster`'s report names a target: `single node`, `cluster×N`.
fn cluster_label(target: &str) -> String {
    match target.strip_prefix("cluster-") {
        Some(n) => format!("cluster×{n}"),
        None if target == "server" => "single node".into(),
        None => target.into(),
    }
}

/// The targets of a `--cluster` run in the order they first ran (the single node first).
fn cluster_targets(outcomes: &[Outcome], mode: &str) -> Vec<&'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    for o in outcomes.iter().filter(|o| o.mode == mode) {
        if !seen.contains(&o.target) {
            seen.push(o.target);
        }
    }
    seen
}

/// The modes of a run in the order they first ran.
fn modes_of(outcomes: &[Outcome]) -> Vec<&'static str> {
    let mut seen: Vec<&'static str> = Vec::new();
    for o in outcomes {
        if !seen.contains(&o.mode) {
            seen.push(o.mode);
        }
    }
    seen
}

/// A target's CPU time per message sent, µs (`None` without CPU figures).
fn cpu_per_message_us(pct: Option<f64>, o: &Outcome) -> Option<f64> {
    let pct = pct?;
    (o.sent > 0).then(|| pct / 100.0 * o.wall_s / o.sent as f64 * 1e6)
}

/// `a` less `b` as a signed latency.
fn micros_diff(a: f64, b: f64) -> String {
    let d = a - b;
    if d < 0.0 {
        format!("−{}", micros(-d))
    } else {
        format!("+{}", micros(d))
    }
}

/// `lost/lagged` over every run of a case, or `-` when it did not run.
fn loss_of(runs: &[&Outcome]) -> String {
    if runs.is_empty() {
        return "-".into();
    }
    let lost: i64 = runs.iter().map(|o| o.lost).sum();
    let lagged: u64 = runs.iter().map(|o| o.lag_events).sum();
    format!("{lost}/{lagged}")
}

/// `--cluster`'s report (issue 16, item 6), per mode: a row per target (the single node
/// with its SQLite history, then each cluster size) with W1's deliveries/s, its loss and
/// `lagged`, the CPU of the nodes and of nats-server, W3's p50 and p99 at every receiver
/// and at the receivers on another node than the message's sender; then the targets
/// (cross-node W3 p99 ≤ 3 × the single node's p99; nothing lost, nobody lagged), and what
/// the cluster path costs per message. With `--repeat`, each figure is the run with the
/// median headline (W1 deliveries/s, W3 p99), and loss is added up over every run.
pub fn cluster_report(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for mode in modes_of(outcomes) {
        let targets = cluster_targets(outcomes, mode);
        let med = |w: &str, t: &str| median_run(outcomes, w, t, mode);
        let single_w1 = med("W1", "server");
        let single_w3 = med("W3", "server");
        let _ = writeln!(
            s,
            "cluster, {mode} mode: clients round-robin over the nodes, one nats-server (JetStream, file store); \
             cross = deliveries whose sender is on another node; ×single = W1 deliveries/s, and W3 p99 \
             (cross-node where there is one) over the single node's; lost/lagged over all runs"
        );
        let _ = writeln!(
            s,
            "{:<12} {:>5} {:>10} {:>7} {:>11} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>7}",
            "target",
            "nodes",
            "W1 deliv/s",
            "×single",
            "lost/lagged",
            "srvCPU",
            "natsCPU",
            "W3 p50",
            "W3 p99",
            "cross p50",
            "cross p99",
            "lost/lagged",
            "×single"
        );
        for &t in &targets {
            let w1 = med("W1", t);
            let w3 = med("W3", t);
            let nodes = w1
                .or(w3)
                .and_then(|o| o.nodes)
                .map_or_else(|| "-".into(), |n| n.to_string());
            let cross = w3.and_then(|o| o.cross_latency);
            let w3_p99 = w3.map(|o| {
                cross
                    .as_ref()
                    .filter(|c| c.count > 0)
                    .map_or(o.latency.p99_us, |c| c.p99_us)
            });
            let _ = writeln!(
                s,
                "{:<12} {:>5} {:>10} {:>7} {:>11} {:>7} {:>8} {:>8} {:>8} {:>9} {:>9} {:>11} {:>7}",
                cluster_label(t),
                nodes,
                opt(w1, |o| count(o.deliveries_per_s)),
                match (w1, single_w1) {
                    (Some(a), Some(b)) if b.deliveries_per_s > 0.0 =>
                        format!("{:.2}", a.deliveries_per_s / b.deliveries_per_s),
                    _ => "-".into(),
                },
                loss_of(&runs(outcomes, "W1", t, mode)),
                opt(w1.and_then(|o| o.server_cpu_pct), |c| format!("{c:.0}%")),
                opt(w1.and_then(|o| o.broker_cpu_pct), |c| format!("{c:.0}%")),
                opt(w3, |o| micros(o.latency.p50_us)),
                opt(w3, |o| micros(o.latency.p99_us)),
                opt(cross.as_ref(), |c| micros(c.p50_us)),
                opt(cross.as_ref(), |c| micros(c.p99_us)),
                loss_of(&runs(outcomes, "W3", t, mode)),
                match (w3_p99, single_w3) {
                    (Some(a), Some(b)) if b.latency.p99_us > 0.0 =>
                        format!("{:.2}", a / b.latency.p99_us),
                    _ => "-".into(),
                },
            );
        }
        s.push('\n');
        s.push_str(&cluster_verdicts(outcomes, mode, &targets));
        s.push_str(&cluster_cost(outcomes, mode, &targets));
        s.push('\n');
    }
    s
}

/// Issue 16's targets for one mode of a `--cluster` run.
fn cluster_verdicts(outcomes: &[Outcome], mode: &str, targets: &[&'static str]) -> String {
    let mut s = String::new();
    let med = |w: &str, t: &str| median_run(outcomes, w, t, mode);
    let single = med("W3", "server");
    for &t in targets.iter().filter(|t| t.starts_with("cluster-")) {
        let label = cluster_label(t);
        if let Some(o) = med("W3", t) {
            let base = single.map_or(0.0, |b| b.latency.p99_us);
            match o.cross_latency.as_ref().filter(|c| c.count > 0) {
                Some(c) if base > 0.0 => {
                    let r = c.p99_us / base;
                    let _ = writeln!(
                        s,
                        "{} W3 {mode} {label}: cross-node p99 {} = {r:.2} × the single node's {}, target ≤ {CLUSTER_P99_BOUND} ×",
                        if r <= CLUSTER_P99_BOUND {
                            "met   "
                        } else {
                            "MISSED"
                        },
                        micros(c.p99_us),
                        micros(base)
                    );
                }
                Some(c) => {
                    let _ = writeln!(
                        s,
                        "n/a    W3 {mode} {label}: cross-node p99 {}, no single-node W3 in this run to compare with",
                        micros(c.p99_us)
                    );
                }
                None if base > 0.0 => {
                    let _ = writeln!(
                        s,
                        "info   W3 {mode} {label}: nothing crosses nodes; p99 {} = {:.2} × the single node's {}",
                        micros(o.latency.p99_us),
                        o.latency.p99_us / base,
                        micros(base)
                    );
                }
                None => {}
            }
        }
        let all: Vec<&Outcome> = ["W1", "W2", "W3"]
            .iter()
            .flat_map(|w| runs(outcomes, w, t, mode))
            .collect();
        if !all.is_empty() {
            let lost: i64 = all.iter().map(|o| o.lost).sum();
            let lagged: u64 = all.iter().map(|o| o.lag_events).sum();
            let gone: u64 = all.iter().map(|o| o.disconnects).sum();
            let mut which: Vec<&str> = all.iter().map(|o| o.workload).collect();
            which.dedup();
            let _ = writeln!(
                s,
                "{} {} {mode} {label}: lost {lost}, lagged {lagged}, disconnected {gone} ({} runs), target none",
                if lost == 0 && lagged == 0 && gone == 0 {
                    "met   "
                } else {
                    "MISSED"
                },
                which.join("+"),
                all.len()
            );
        }
    }
    s
}

/// What the cluster path costs per message, for one mode: W3's p50 on the cluster less
/// the single node's (200 messages/s do not queue there, so that is the path's time: the
/// publish to JetStream, its store, its ack, the delivery to the nodes, and whatever
/// waits behind it), the publish-to-ack time the nodes count themselves, and W1's CPU
/// time per message sent in the nodes and in nats-server against the single node's.
fn cluster_cost(outcomes: &[Outcome], mode: &str, targets: &[&'static str]) -> String {
    let mut s = String::new();
    let med = |w: &str, t: &str| median_run(outcomes, w, t, mode);
    let clusters: Vec<&'static str> = targets
        .iter()
        .copied()
        .filter(|t| t.starts_with("cluster-"))
        .collect();
    if let Some(single) = med("W3", "server") {
        let base = single.latency.p50_us;
        let mut parts = Vec::new();
        for &t in &clusters {
            if let Some(o) = med("W3", t) {
                let mut part = format!(
                    "{} {} ({})",
                    cluster_label(t),
                    micros(o.latency.p50_us),
                    micros_diff(o.latency.p50_us, base)
                );
                if let Some(c) = o.cross_latency.as_ref().filter(|c| c.count > 0) {
                    let _ = write!(
                        part,
                        ", cross-node {} ({})",
                        micros(c.p50_us),
                        micros_diff(c.p50_us, base)
                    );
                }
                parts.push(part);
            }
        }
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "cost   W3 {mode} p50 per message against the single node's {}: {} (the cluster path: publish to JetStream, stored, acknowledged, delivered to the nodes)",
                micros(base),
                parts.join("; ")
            );
        }
    }
    for w in ["W1", "W2", "W3"] {
        let parts: Vec<String> = clusters
            .iter()
            .filter_map(|&t| {
                let o = med(w, t)?;
                let c = o.cluster?;
                Some(format!(
                    "{} {} ({} published in {} stream messages, {} seq conflicts, {} behind at the end)",
                    cluster_label(t),
                    opt(c.publish_mean_us(), micros),
                    c.published,
                    c.publishes,
                    c.conflicts,
                    c.behind
                ))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "cost   {w} {mode} publish to JetStream's ack per message, as the nodes count it: {}",
                parts.join("; ")
            );
        }
    }
    let us = |v: Option<f64>| opt(v, |u| format!("{u:.1} µs"));
    let mut parts = Vec::new();
    if let Some(o) = med("W1", "server") {
        parts.push(format!(
            "single node {}",
            us(cpu_per_message_us(o.server_cpu_pct, o))
        ));
    }
    for &t in &clusters {
        if let Some(o) = med("W1", t) {
            parts.push(format!(
                "{} {} in the nodes + {} in nats-server",
                cluster_label(t),
                us(cpu_per_message_us(o.server_cpu_pct, o)),
                us(cpu_per_message_us(o.broker_cpu_pct, o))
            ));
        }
    }
    if parts.len() > 1 {
        let _ = writeln!(
            s,
            "cost   W1 {mode} CPU per message sent (its fan-out included): {}",
            parts.join("; ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line of `s` that contains `prefix`.
    fn line_with(s: &str, prefix: &str) -> String {
        s.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in {s}"))
            .to_owned()
    }

    #[test]
    fn cluster_report_judges_cross_node_p99_against_the_single_node_issue_16() {
        let lat = |p50_us, p99_us| Latency {
            count: 100,
            p50_us,
            p90_us: p99_us,
            p99_us,
            max_us: p99_us,
        };
        let o =
            |workload, target, nodes, dps, (p50, p99), cross: Option<(f64, f64)>, lost| Outcome {
                workload,
                target,
                mode: "framed",
                nodes: Some(nodes),
                deliveries_per_s: dps,
                latency: lat(p50, p99),
                cross_latency: cross.map(|(a, b)| lat(a, b)),
                lost,
                sent: 1000,
                wall_s: 10.0,
                server_cpu_pct: Some(10.0),
                broker_cpu_pct: (target != "server").then_some(5.0),
                ..Outcome::default()
            };
        let outcomes = vec![
            o("W1", "server", 1, 1e6, (0.0, 0.0), None, 0),
            o("W1", "cluster-1", 1, 5e5, (0.0, 0.0), None, 0),
            o("W1", "cluster-2", 2, 4e5, (0.0, 0.0), None, 3),
            o("W3", "server", 1, 0.0, (400.0, 1000.0), None, 0),
            o("W3", "cluster-1", 1, 0.0, (900.0, 2000.0), None, 0),
            o(
                "W3",
                "cluster-2",
                2,
                0.0,
                (1000.0, 2500.0),
                Some((1100.0, 2900.0)),
                0,
            ),
            o(
                "W3",
                "cluster-3",
                3,
                0.0,
                (1000.0, 2500.0),
                Some((1200.0, 3500.0)),
                0,
            ),
        ];
        let mut outcomes = outcomes;
        outcomes[5].cluster = Some(NodeStats {
            published: 2000,
            publishes: 2000,
            publish_us: 800_000,
            conflicts: 7,
            behind: 0,
        });
        let s = cluster_report(&outcomes);
        let ack = line_with(&s, "W3 framed publish to JetStream's ack");
        assert!(
            ack.contains(
                "cluster×2 400µs (2000 published in 2000 stream messages, 7 seq conflicts"
            ),
            "{s}"
        );
        let row = line_with(&s, "cluster×2 ");
        assert!(row.contains("400.0k") && row.contains("0.40"), "{s}");
        assert!(row.contains("2.90"), "cross-node p99 / single p99: {s}");
        let two = line_with(&s, "W3 framed cluster×2:");
        assert!(two.starts_with("met") && two.contains("2.90 ×"), "{s}");
        assert!(
            line_with(&s, "W3 framed cluster×3:").starts_with("MISSED"),
            "{s}"
        );
        assert!(
            line_with(&s, "W3 framed cluster×1:").starts_with("info"),
            "{s}"
        );
        assert!(
            line_with(&s, "W1+W3 framed cluster×1:").starts_with("met"),
            "{s}"
        );
        assert!(
            line_with(&s, "W1+W3 framed cluster×2:").starts_with("MISSED"),
            "3 lost: {s}"
        );
        let cost = line_with(&s, "W3 framed p50 per message");
        assert!(cost.contains("cluster×1 900µs (+500µs)"), "{s}");
        assert!(cost.contains("cross-node 1.1ms (+700µs)"), "{s}");
        // 10 % of a core for 10 s over 1000 messages: 1000 µs each; nats-server half that.
        let cpu = line_with(&s, "W1 framed CPU per message");
        assert!(cpu.contains("single node 1000.0 µs"), "{s}");
        assert!(
            cpu.contains("cluster×2 1000.0 µs in the nodes + 500.0 µs in nats-server"),
            "{s}"
        );
    }

    #[test]
    fn ratio_uses_the_headline_metric() {
        let mut server = Outcome {
            workload: "W1",
            deliveries_per_s: 3e6,
            ..Outcome::default()
        };
        let refl = Outcome {
            workload: "W1",
            deliveries_per_s: 6e6,
            ..Outcome::default()
        };
        server.compare(&refl);
        assert_eq!(server.ratio, Some(0.5));
        assert!(server.json().contains("\"ratio\":0.5"));
        assert!(table(&[server]).contains("0.50"));
    }

    #[test]
    fn storage_cost_is_the_median_of_side_by_side_pairs() {
        let w1 = |target, deliveries_per_s| Outcome {
            workload: "W1",
            target,
            mode: "line",
            deliveries_per_s,
            ..Outcome::default()
        };
        // Pairs costing 10 %, 30 % and 5 %: one bad pair does not decide.
        let outcomes = [
            w1("server", 9e6),
            w1("server-nodb", 10e6),
            w1("server", 7e6),
            w1("server-nodb", 10e6),
            w1("server", 9.5e6),
            w1("server-nodb", 10e6),
        ];
        let mut s = String::new();
        storage_cost(&outcomes, &mut s);
        assert!(s.starts_with("met    W1 line storage cost: 10.0 %"), "{s}");
        assert!(s.contains("median of 3 pairs"), "{s}");
        assert_eq!(
            median_run(&outcomes, "W1", "server", "line").map(|o| o.deliveries_per_s),
            Some(9e6)
        );
    }

    #[test]
    fn issue_10_targets_say_what_was_measured() {
        let server = |workload, mode| Outcome {
            workload,
            target: "server",
            mode,
            ..Outcome::default()
        };
        let w1 = Outcome {
            deliveries_per_s: 3e6,
            ratio: Some(0.65),
            ..server("W1", "line")
        };
        let w1_framed = Outcome {
            ratio: Some(0.65),
            ..server("W1", "framed")
        };
        let w2 = Outcome {
            lost: 3,
            ratio: Some(1.0),
            ..server("W2", "line")
        };
        let w3 = server("W3", "line");
        let w4 = Outcome {
            idle: Some(Idle {
                connections: 10_000,
                members_per_room: 100,
                held: 10_000,
                kib_per_conn: Some(2.4),
                ..Idle::default()
            }),
            ..server("W4", "line")
        };
        let w7 = Outcome {
            lag_events: 2,
            storm: Some(Storm {
                early_members: 50,
                joiners: 1000,
                joined: 1000,
                join_all_s: 1.5,
                joiner_lag_events: 2,
                ..Storm::default()
            }),
            ..server("W7", "framed")
        };
        // Not judged: issue 10 judges the server with storage on.
        let nodb = Outcome {
            target: "server-nodb",
            ratio: Some(0.9),
            ..server("W1", "line")
        };
        let s = targets(&[w1, w1_framed, w2, w3, w4, w7, nodb]);
        let line = |prefix: &str| line_with(&s, prefix);
        assert!(line("W1 line:").starts_with("MISSED"), "0.65 < 0.7: {s}");
        assert!(line("W1 line:").contains("0.65 × the reflector"), "{s}");
        assert!(line("W1 framed:").starts_with("met"), "0.65 ≥ 0.6: {s}");
        assert!(line("W2 line:").starts_with("MISSED"), "3 lost: {s}");
        assert!(
            line("W3 line:").starts_with("n/a"),
            "no reflector ratio: {s}"
        );
        assert!(line("W4 line:").starts_with("met"), "{s}");
        assert!(line("W7 framed:").starts_with("MISSED"), "2 lagged: {s}");
        assert!(
            line("W7 framed:").contains("1000/1000 joined in 1.50 s"),
            "{s}"
        );
    }

    #[test]
    fn irc_mode_is_judged_against_ngircd_round_by_round() {
        let irc = |workload, target, deliveries_per_s| Outcome {
            workload,
            target,
            mode: "irc",
            deliveries_per_s,
            ..Outcome::default()
        };
        let idle = |target, kib| Outcome {
            idle: Some(Idle {
                kib_per_conn: Some(kib),
                ..Idle::default()
            }),
            ..irc("W4", target, 0.0)
        };
        // Rounds of 2.5 ×, 1.5 × and 2.2 ×: the median round decides.
        let mut outcomes = Vec::new();
        for (ours, theirs) in [(5e6, 2e6), (3e6, 2e6), (4.4e6, 2e6)] {
            let reference = irc("W1", "ngircd", theirs);
            let mut o = irc("W1", "server", ours);
            o.compare_ngircd(&reference);
            outcomes.extend([reference, o]);
        }
        let reference = idle("ngircd", 2.9);
        let mut o = idle("server", 2.2);
        o.compare_ngircd(&reference);
        assert!(table(std::slice::from_ref(&o)).contains("0.76 × ngIRCd's kib_per_conn"));
        outcomes.extend([reference, o]);
        let s = targets(&outcomes);
        let line = |prefix: &str| line_with(&s, prefix);
        assert!(line("W1 irc:").starts_with("met"), "{s}");
        assert!(line("W1 irc:").contains("2.20 × ngIRCd's"), "{s}");
        assert!(line("W1 irc:").contains("median of 3 rounds"), "{s}");
        assert!(line("W4 irc:").starts_with("met"), "{s}");
        assert!(!s.contains("issue 10"), "no line-mode run, no heading: {s}");
        assert!(
            line("W4 irc:").contains("2.20 KiB per idle connection against ngIRCd's 2.90"),
            "{s}"
        );
    }

    #[test]
    fn issue_15_targets_judge_both_ways_and_the_worse_phase() {
        let lat = |p99_us| Latency {
            count: 100,
            p99_us,
            ..Latency::default()
        };
        let f1 = |upload_mb_s, growth, upload_p99| Outcome {
            workload: "F1",
            target: "server",
            mode: "framed",
            transfer: Some(Transfer {
                bytes: 1 << 30,
                patches: 64,
                upload_mb_s,
                download_mb_s: 900.0,
                sha256_verified: true,
                upload_rss_growth_kib: Some(growth),
                download_rss_growth_kib: Some(1024),
                chat_members: 100,
                chat_baseline: lat(2000.0),
                chat_upload: lat(upload_p99),
                chat_download: lat(2100.0),
                p99_ratio: f64::max(upload_p99, 2100.0) / 2000.0,
                ..Transfer::default()
            }),
            ..Outcome::default()
        };
        let s = targets(&[f1(450.0, 8 * 1024, 2500.0)]);
        assert!(line_with(&s, "F1 transfer:").starts_with("met"), "{s}");
        assert!(
            line_with(&s, "F1 transfer:").contains("1.00 GiB in 64 PATCHes"),
            "{s}"
        );
        assert!(line_with(&s, "F1 server RSS").starts_with("met"), "{s}");
        assert!(line_with(&s, "F1 room").starts_with("met"), "{s}");
        let s = targets(&[f1(250.0, 40 * 1024, 3500.0)]);
        assert!(line_with(&s, "F1 transfer:").starts_with("MISSED"), "{s}");
        assert!(line_with(&s, "F1 server RSS").starts_with("MISSED"), "{s}");
        assert!(line_with(&s, "F1 room").starts_with("MISSED"), "{s}");
        assert!(line_with(&s, "F1 room").contains("1.75 ×"), "{s}");
        let mut unsampled = f1(450.0, 0, 2500.0);
        if let Some(t) = &mut unsampled.transfer {
            t.upload_rss_growth_kib = None;
        }
        let s = targets(&[unsampled]);
        assert!(line_with(&s, "F1 server RSS").starts_with("n/a"), "{s}");
        // Three runs: the median of each figure decides, not the run of the median one.
        let s = targets(&[
            f1(450.0, 8 * 1024, 5000.0),
            f1(250.0, 8 * 1024, 5000.0),
            f1(350.0, 8 * 1024, 2500.0),
        ]);
        assert!(line_with(&s, "F1 transfer:").starts_with("met"), "{s}");
        assert!(line_with(&s, "F1 transfer:").contains("up 350 MB/s"), "{s}");
        assert!(line_with(&s, "F1 room").starts_with("MISSED"), "{s}");
        assert!(
            line_with(&s, "F1 room").contains("runs: 2.50, 2.50, 1.25"),
            "{s}"
        );
    }

    #[test]
    fn formats_counts_and_latencies() {
        assert_eq!(count(4_520_000.0), "4.52M");
        assert_eq!(count(1500.0), "1.5k");
        assert_eq!(micros(85.0), "85µs");
        assert_eq!(micros(12_345.0), "12.3ms");
    }
}
