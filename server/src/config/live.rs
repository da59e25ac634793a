//! The settings a running server takes anew when its config file is reloaded (SIGHUP):
//! limits, the MOTD and the admins. Everything else in [`Config`] is read once, at start,
//! by whatever it shapes (the store, the listener, the rooms), so a change to it is logged
//! as waiting for a restart instead.
//!
//! Readers call [`Config::live`] where they use a value, never keep a copy, so a change
//! reaches established sessions too: a new rate applies to the very next message.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, Guard};

use super::Config;

/// The keys of the config file (the flags' long names) whose change applies at once.
/// The TLS certificate files are not among them but are read again at every reload.
pub const LIVE_KEYS: &[&str] = &[
    "rate",
    "burst",
    "max-text",
    "max-clients",
    "max-clients-per-ip",
    "motd",
    "admins",
];

/// The live part of the configuration, as one snapshot: a reader sees either all of one
/// reload or all of the next.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// [`Config::rate`].
    pub rate: f64,
    /// [`Config::burst`].
    pub burst: u32,
    /// [`Config::max_text`].
    pub max_text: usize,
    /// [`Config::max_clients`].
    pub max_clients: usize,
    /// [`Config::max_clients_per_ip`].
    pub max_clients_per_ip: usize,
    /// [`Config::motd`].
    pub motd: Option<String>,
    /// [`Config::admins`], as given (for the log).
    pub admins: Vec<String>,
    /// The admins' nick skeletons, which is what a session's nick is compared by.
    admin_skeletons: HashSet<String>,
}

impl Live {
    /// The live settings of `config`, as its fields give them.
    pub fn of(config: &Config) -> Self {
        Self {
            rate: config.rate,
            burst: config.burst,
            max_text: config.max_text,
            max_clients: config.max_clients,
            max_clients_per_ip: config.max_clients_per_ip,
            motd: config.motd.clone(),
            admins: config.admins.clone(),
            admin_skeletons: config
                .admins
                .iter()
                .map(|a| chat_shared::validate::name_skeleton(a))
                .collect(),
        }
    }

    /// Whether the nick with this skeleton is an admin's (once logged in: the caller's
    /// to check).
    pub(crate) fn is_admin_skeleton(&self, skeleton: &str) -> bool {
        self.admin_skeletons.contains(skeleton)
    }

    /// One line per setting that differs from `old`, for the log; the MOTD's text is not
    /// repeated, only that it changed.
    pub(crate) fn changes_from(&self, old: &Self) -> Vec<String> {
        let mut out = Vec::new();
        let mut note = |key: &str, was: String, now: String| {
            if was != now {
                out.push(format!("{key}: {was} -> {now}"));
            }
        };
        note("rate", old.rate.to_string(), self.rate.to_string());
        note("burst", old.burst.to_string(), self.burst.to_string());
        note(
            "max-text",
            old.max_text.to_string(),
            self.max_text.to_string(),
        );
        note(
            "max-clients",
            old.max_clients.to_string(),
            self.max_clients.to_string(),
        );
        note(
            "max-clients-per-ip",
            old.max_clients_per_ip.to_string(),
            self.max_clients_per_ip.to_string(),
        );
        note(
            "admins",
            format!("{:?}", old.admins),
            format!("{:?}", self.admins),
        );
        if old.motd != self.motd {
            out.push("motd: changed".to_owned());
        }
        out
    }
}

/// Where a [`Config`] keeps its live settings once the server runs. Leave it at its
/// default: it starts from the config's own fields the first time it is read, and a copy
/// of a config (`clone`) starts again from the copy's fields.
#[derive(Debug, Default)]
pub struct LiveCell(OnceLock<ArcSwap<Live>>);

impl Clone for LiveCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl Config {
    fn live_swap(&self) -> &ArcSwap<Live> {
        self.live
            .0
            .get_or_init(|| ArcSwap::from_pointee(Live::of(self)))
    }

    /// The live settings now. Cheap (no lock, no count on a shared cache line); hold it
    /// only for the statement that uses it.
    pub(crate) fn live(&self) -> Guard<Arc<Live>> {
        self.live_swap().load()
    }

    /// Puts `live` in place for every later reader and returns what it replaced.
    pub(crate) fn set_live(&self, live: Live) -> Arc<Live> {
        self.live_swap().swap(Arc::new(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_reads_its_own_fields_until_a_reload_replaces_them() {
        let config = Config {
            rate: 2.0,
            admins: vec!["Alice".into()],
            ..Config::default()
        };
        assert!((config.live().rate - 2.0).abs() < f64::EPSILON);
        assert!(
            config
                .live()
                .is_admin_skeleton(&chat_shared::validate::name_skeleton("alice"))
        );
        let copy = config.clone();
        let mut next = Live::of(&config);
        next.rate = 9.0;
        next.motd = Some("hi".into());
        let old = config.set_live(next);
        assert!((config.live().rate - 9.0).abs() < f64::EPSILON);
        assert_eq!(
            config.live().changes_from(&old),
            vec!["rate: 2 -> 9".to_owned(), "motd: changed".to_owned()]
        );
        // A copy made before the reload has its own settings.
        assert!((copy.live().rate - 2.0).abs() < f64::EPSILON);
        assert!(LIVE_KEYS.contains(&"rate") && LIVE_KEYS.contains(&"admins"));
    }
}
