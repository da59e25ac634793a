//! The `--quick` smoke test: tiny versions of every workload in all three modes, server
//! and reflector in this process. It asserts only that deliveries happen and nothing is lost,
//! never a speed: the test suite runs on machines of every size and load.

use chat_bench::{Options, run};

/// Held by every test here for its whole run. They share one process, and the soak counts
/// the process's descriptors: a sibling's load generator running meanwhile (the cluster
/// test's, say) counted as the soak's leak.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_mode_delivers_everything_in_every_workload_issue_4() {
    let _one = ONE_AT_A_TIME.lock().await;
    let outcomes = run(&Options::quick(), |_| {})
        .await
        .expect("every quick workload runs");
    // W1–W4 on the reflector, then W1–W7 in all three modes (line, framed, IRC) on the
    // server, with its history database (SQLite in memory here) and without; F1 once.
    assert_eq!(outcomes.len(), 4 + 7 * 3 * 2 + 1, "{outcomes:#?}");
    assert!(outcomes.iter().any(|o| o.mode == "irc"), "IRC mode ran");
    for o in &outcomes {
        let what = format!("{} {} {}", o.workload, o.target, o.mode);
        match o.workload {
            "W1" | "W2" | "W3" | "W5" => {
                assert!(o.delivered > 0, "{what}: nothing delivered: {o:#?}");
                assert_eq!(o.lost, 0, "{what}: lost deliveries: {o:#?}");
                assert_eq!(o.lag_events, 0, "{what}: lagged: {o:#?}");
            }
            "W4" => {
                let idle = o.idle.as_ref().expect("W4 reports idle figures");
                assert_eq!(idle.held, idle.connections, "{what}: connections dropped");
            }
            "W6" => {
                let churn = o.churn.as_ref().expect("W6 reports churn figures");
                assert!(churn.cycles > 0, "{what}: no churn cycle completed");
                assert_eq!(churn.failures, 0, "{what}: churn cycles failed");
                assert!(o.delivered > 0, "{what}: the busy room was silent");
                assert_eq!(o.lost, 0, "{what}: the busy room lost deliveries");
            }
            "W7" => {
                let storm = o.storm.as_ref().expect("W7 reports storm figures");
                assert_eq!(storm.joined, storm.joiners, "{what}: joins failed: {o:#?}");
                assert_eq!(storm.failures, 0, "{what}: joins failed: {o:#?}");
                assert!(o.delivered > 0, "{what}: nothing delivered: {o:#?}");
                assert_eq!(o.lost, 0, "{what}: early members lost deliveries: {o:#?}");
                assert_eq!(o.lag_events, 0, "{what}: lagged: {o:#?}");
            }
            "F1" => {
                let t = o.transfer.as_ref().expect("F1 reports transfer figures");
                assert!(t.sha256_verified, "{what}: SHA-256 not verified: {o:#?}");
                assert!(
                    t.upload_mb_s > 0.0 && t.download_mb_s > 0.0,
                    "{what}: {o:#?}"
                );
                assert!(
                    t.chat_baseline.count > 0,
                    "{what}: no baseline chat: {o:#?}"
                );
                assert!(t.chat_upload.count > 0, "{what}: no chat meanwhile: {o:#?}");
                assert_eq!(o.lost, 0, "{what}: the room lost deliveries: {o:#?}");
            }
            other => panic!("unexpected workload {other}"),
        }
    }
}

/// A short soak in this process (issue 5): after rounds of churn and chatter, every socket
/// of the server and of the load generator is closed again. (RSS is not judged in process:
/// the load generator's own memory is in the same figure.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_rounds_leave_no_descriptor_behind_issue_5() {
    let _one = ONE_AT_A_TIME.lock().await;
    let reports = chat_bench::run_soak(
        &chat_bench::ServerSpec::InProcess,
        &[chat_bench::Mode::Line, chat_bench::Mode::Framed],
        chat_bench::Scale::Quick,
        std::time::Duration::from_secs(1),
        2,
        |_| {},
    )
    .await
    .expect("the soak runs");
    for r in &reports {
        assert!(r.cycles > 0, "{}", r.table());
        assert_eq!(r.lost, 0, "{}", r.table());
        assert!(r.fds_returned(), "{}", r.table());
    }
}

/// IRC mode against ngIRCd (issue 13), when ngIRCd is installed (`apt-get install
/// ngircd`): the bench's own configuration starts, takes W1–W4's tiny versions without
/// dropping anyone, and every server result is compared with ngIRCd's. Without ngIRCd
/// there is nothing to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn irc_mode_runs_against_ngircd_when_it_is_installed_issue_13() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(ngircd) = chat_bench::ngircd::locate(None) else {
        eprintln!("no ngircd installed: nothing to compare with");
        return;
    };
    let opts = Options {
        workloads: chat_bench::Workload::ALL[..4].to_vec(),
        modes: vec![chat_bench::Mode::Irc],
        ngircd: Some(ngircd),
        storage: vec![chat_bench::Storage::On],
        ..Options::quick()
    };
    let outcomes = run(&opts, |_| {})
        .await
        .expect("IRC mode runs against ngIRCd");
    // Per workload: the reflector, ngIRCd, the server.
    assert_eq!(outcomes.len(), 4 * 3, "{outcomes:#?}");
    for o in outcomes.iter().filter(|o| o.mode == "irc") {
        let what = format!("{} {}", o.workload, o.target);
        assert_eq!(o.disconnects, 0, "{what}: {o:#?}");
        if o.workload == "W4" {
            let idle = o.idle.as_ref().expect("W4 reports idle figures");
            assert_eq!(idle.held, idle.connections, "{what}: {o:#?}");
        } else {
            assert!(o.delivered > 0 && o.lost == 0, "{what}: {o:#?}");
        }
        // In process the server's memory is not its own: W4 has no ratio here.
        if o.target == "server" && o.workload != "W4" {
            assert!(o.vs_ngircd.is_some(), "{what}: no ratio to ngIRCd: {o:#?}");
        }
    }
}

/// `--cluster --quick` (issue 16), when nats-server is installed (`apt-get install
/// nats-server`): the single node, then one and two nodes in this process on a fresh
/// nats-server each, W1 and W3 with the clients spread over the nodes; everything is
/// delivered, once, and with two nodes some deliveries cross nodes. Without nats-server
/// there is nothing to run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_spreads_w1_and_w3_over_nodes_when_nats_is_installed_issue_16() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(nats) = chat_bench::cluster::locate_nats(None) else {
        eprintln!("no nats-server installed: no cluster to run");
        return;
    };
    let opts = chat_bench::cluster::ClusterOptions {
        workloads: vec![chat_bench::Workload::W1, chat_bench::Workload::W3],
        modes: vec![chat_bench::Mode::Framed],
        nodes: vec![1, 2],
        scale: chat_bench::Scale::Quick,
        duration: None,
        window: chat_bench::DEFAULT_WINDOW,
        server: chat_bench::ServerSpec::InProcess,
        nats,
        repeat: 1,
    };
    let outcomes = chat_bench::cluster::run_cluster(&opts, |_| {})
        .await
        .expect("the cluster cases run");
    assert_eq!(outcomes.len(), 2 * 3, "{outcomes:#?}");
    for o in &outcomes {
        let what = format!("{} {}", o.workload, o.target);
        assert!(o.delivered > 0, "{what}: nothing delivered: {o:#?}");
        assert_eq!(o.lost, 0, "{what}: lost deliveries: {o:#?}");
        assert_eq!(o.lag_events, 0, "{what}: lagged: {o:#?}");
        match o.target {
            "server" => assert!(o.cluster.is_none(), "{what}: {o:#?}"),
            _ => {
                let c = o.cluster.expect("the nodes' counters are read");
                assert!(c.published > 0, "{what}: {o:#?}");
            }
        }
        if o.target == "cluster-2" {
            let cross = o.cross_latency.expect("two nodes: cross-node latency");
            assert!(cross.count > 0, "{what}: nothing crossed nodes: {o:#?}");
        }
    }
    let report = chat_bench::report::cluster_report(&outcomes);
    assert!(
        report.contains("W3 framed cluster×2: cross-node p99"),
        "{report}"
    );
}
