//! IRCv3 capabilities: the ones this server offers, and a connection's negotiated set as
//! bits (a connection holds them for its life, so they cost two bytes, not a list).

/// A set of capabilities, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CapSet(u16);

pub(crate) const MESSAGE_TAGS: CapSet = CapSet(1);
pub(crate) const SERVER_TIME: CapSet = CapSet(1 << 1);
pub(crate) const ECHO_MESSAGE: CapSet = CapSet(1 << 2);
pub(crate) const MULTI_PREFIX: CapSet = CapSet(1 << 3);
pub(crate) const CAP_NOTIFY: CapSet = CapSet(1 << 4);
pub(crate) const SASL: CapSet = CapSet(1 << 5);
pub(crate) const USERHOST_IN_NAMES: CapSet = CapSet(1 << 6);
pub(crate) const BATCH: CapSet = CapSet(1 << 7);
pub(crate) const STANDARD_REPLIES: CapSet = CapSet(1 << 8);
pub(crate) const CHATHISTORY: CapSet = CapSet(1 << 9);
pub(crate) const LABELED_RESPONSE: CapSet = CapSet(1 << 10);
pub(crate) const AWAY_NOTIFY: CapSet = CapSet(1 << 11);
pub(crate) const EXTENDED_JOIN: CapSet = CapSet(1 << 12);
pub(crate) const ACCOUNT_TAG: CapSet = CapSet(1 << 13);
pub(crate) const ACCOUNT_NOTIFY: CapSet = CapSet(1 << 14);
pub(crate) const CHGHOST: CapSet = CapSet(1 << 15);

/// Every capability offered, with its name and (for `CAP LS 302`) its value. `multi-prefix`
/// is true to the letter: a member has one role, so one prefix is all there is to show;
/// `chghost` too: a mask is `nick!nick@server` for life, so no `CHGHOST` is ever due.
const OFFERED: [(CapSet, &str, &str); 16] = [
    (MESSAGE_TAGS, "message-tags", ""),
    (SERVER_TIME, "server-time", ""),
    (ECHO_MESSAGE, "echo-message", ""),
    (MULTI_PREFIX, "multi-prefix", ""),
    (CAP_NOTIFY, "cap-notify", ""),
    (SASL, "sasl", "PLAIN"),
    (USERHOST_IN_NAMES, "userhost-in-names", ""),
    (BATCH, "batch", ""),
    (STANDARD_REPLIES, "standard-replies", ""),
    (CHATHISTORY, "draft/chathistory", ""),
    (LABELED_RESPONSE, "labeled-response", ""),
    (AWAY_NOTIFY, "away-notify", ""),
    (EXTENDED_JOIN, "extended-join", ""),
    (ACCOUNT_TAG, "account-tag", ""),
    (ACCOUNT_NOTIFY, "account-notify", ""),
    (CHGHOST, "chghost", ""),
];

impl CapSet {
    pub(crate) fn has(self, cap: CapSet) -> bool {
        self.0 & cap.0 == cap.0
    }

    pub(crate) fn with(self, cap: CapSet, on: bool) -> CapSet {
        if on {
            CapSet(self.0 | cap.0)
        } else {
            CapSet(self.0 & !cap.0)
        }
    }

    /// The names of the capabilities in this set, space-separated (`CAP LIST`).
    pub(crate) fn names(self) -> String {
        let names: Vec<&str> = OFFERED
            .iter()
            .filter(|(cap, ..)| self.has(*cap))
            .map(|(_, name, _)| *name)
            .collect();
        names.join(" ")
    }
}

/// The `CAP LS` list; with `values` (302), `sasl=PLAIN`.
pub(crate) fn offered(values: bool) -> String {
    let names: Vec<String> = OFFERED
        .iter()
        .map(|(_, name, value)| {
            if values && !value.is_empty() {
                format!("{name}={value}")
            } else {
                (*name).to_owned()
            }
        })
        .collect();
    names.join(" ")
}

/// Applies a `CAP REQ` list (`a -b c`) to `set`: all of it or, if any name is not offered,
/// none of it (`NAK`), as the specification requires.
pub(crate) fn request(set: CapSet, list: &str) -> Option<CapSet> {
    let mut out = set;
    for word in list.split_whitespace() {
        let (on, name) = match word.strip_prefix('-') {
            Some(name) => (false, name),
            None => (true, word),
        };
        let (cap, ..) = OFFERED.iter().find(|(_, n, _)| *n == name)?;
        out = out.with(*cap, on);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_one_unknown_name_changes_nothing() {
        let set = request(CapSet::default(), "server-time echo-message").unwrap();
        assert!(set.has(SERVER_TIME) && set.has(ECHO_MESSAGE) && !set.has(SASL));
        assert_eq!(request(set, "sasl draft/frobnicate"), None);
        let set = request(set, "-echo-message sasl").unwrap();
        assert!(!set.has(ECHO_MESSAGE) && set.has(SASL));
        assert_eq!(set.names(), "server-time sasl");
        assert!(offered(true).contains("sasl=PLAIN"));
        assert!(!offered(false).contains('='));
    }
}
