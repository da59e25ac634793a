//! `contrib/`: the packaging files, checked with the tools their users run. Nothing here
//! is skipped when a tool is missing: CI installs systemd (`.ci/run`), so a missing
//! `systemd-analyze` fails the test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn contrib(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(contrib(file)).unwrap_or_else(|e| panic!("contrib/{file}: {e}"))
}

/// `systemd-analyze ARGS... UNIT`, where UNIT is `unit` written as `chat-server.service`
/// in a fresh directory.
fn systemd_analyze(args: &[&str], unit: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chat-server.service");
    std::fs::write(&path, unit).unwrap();
    Command::new("systemd-analyze")
        .args(args)
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (.ci/run installs systemd where it is missing)")
}

/// What `systemd-analyze` said, when it said anything: it reports a bad value or an
/// unknown key on stderr and still exits 0, so silence is the only pass.
fn complaints(out: &Output) -> Option<String> {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !said.trim().is_empty()).then(|| format!("{:?}: {said}", out.status))
}

/// The unit as shipped, but for one thing: `systemd-analyze verify` checks that
/// `ExecStart`'s program exists and is executable, and `/usr/bin/chat-server` is where a
/// package installs it, not where this test's build is. So the copy verified runs the
/// freshly built binary; every other line is the file as shipped.
fn unit_with_this_build() -> String {
    let unit = read("chat-server.service");
    let shipped = "ExecStart=/usr/bin/chat-server --config /etc/chat-server/chat-server.toml";
    assert!(unit.contains(shipped), "ExecStart changed: {unit}");
    unit.replace(
        "ExecStart=/usr/bin/chat-server ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_chat-server")),
    )
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit = unit_with_this_build();
    if let Some(said) = complaints(&systemd_analyze(&["verify"], &unit)) {
        panic!("systemd-analyze verify complains about contrib/chat-server.service: {said}");
    }
    // The check can fail: a misspelt value is caught.
    let broken = unit.replace("ProtectHome=yes", "ProtectHome=yess");
    assert!(
        complaints(&systemd_analyze(&["verify"], &broken)).is_some(),
        "systemd-analyze verify let a bad value through"
    );
}

#[test]
fn the_systemd_unit_keeps_its_sandbox() {
    // `systemd-analyze security` scores the sandboxing from 0 (tight) to 10, printed
    // with one decimal; `--threshold` takes it in tenths. The unit scores 1.4 with
    // Debian bookworm's systemd 252, so anything looser (dropping DynamicUser and
    // ProtectSystem=strict, say, gives 1.9) crosses 1.5 and fails this.
    let out = systemd_analyze(
        &["security", "--offline=true", "--threshold=15", "--no-pager"],
        &unit_with_this_build(),
    );
    assert!(
        out.status.success(),
        "exposure above 1.5: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for wanted in [
        "DynamicUser=yes",
        "StateDirectory=chat-server",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "LimitNOFILE=65536",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(
            read("chat-server.service").lines().any(|l| l == wanted),
            "{wanted} missing"
        );
    }
}

/// Every key of the packaged config, set or shown commented, is a flag's long name; a
/// key shown with a value shows its default (`--help`'s) on one of its lines; and the
/// admin listener it sets is the one the Prometheus snippet scrapes.
#[test]
fn the_packaged_config_names_real_flags_with_their_defaults() {
    let help = Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--help")
        .output()
        .expect("chat-server --help");
    let help = String::from_utf8(help.stdout).unwrap();
    // Each flag's default, as `--help` prints it (`--max-sendq <MAX_SENDQ>` … `[default:
    // 1048576]`); `None` for a flag without one.
    let mut defaults: HashMap<String, Option<String>> = HashMap::new();
    let mut flag = None;
    for line in help.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--") {
            let name = rest.split([' ', '=']).next().unwrap_or(rest).to_owned();
            defaults.insert(name.clone(), None);
            flag = Some(name);
        } else if let (Some(name), Some(rest)) = (&flag, line.strip_prefix("[default: ")) {
            defaults.insert(name.clone(), Some(rest.trim_end_matches(']').to_owned()));
        }
    }
    let config = read("chat-server.toml");
    let mut shown: HashMap<String, Vec<String>> = HashMap::new();
    for line in config.lines() {
        let line = line.trim_start_matches('#').trim();
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        if key.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            let value = value.split(" #").next().unwrap_or(value).trim();
            let value = value.trim_matches('"').to_owned();
            shown.entry(key.to_owned()).or_default().push(value);
        }
    }
    assert!(shown.len() > 30, "too few keys found: {shown:?}");
    for (key, values) in &shown {
        let default = defaults
            .get(key)
            .unwrap_or_else(|| panic!("contrib/chat-server.toml: {key} is not a flag"));
        if let Some(default) = default {
            assert!(
                values.contains(default),
                "contrib/chat-server.toml: {key} shows {values:?}, its default is {default}"
            );
        }
    }
    assert!(config.contains("\nadmin-listen = \"127.0.0.1:9187\"\n"));
    assert!(config.contains("\ndb = \"/var/lib/chat-server/chat.db\"\n"));
    assert!(read("prometheus.yml").contains("targets: [\"127.0.0.1:9187\"]"));
}
