//! Registration's commands: `CAP` negotiation, `NICK`, `USER`, `PASS`, SASL PLAIN's
//! `AUTHENTICATE`, and NickServ's `IDENTIFY` and `REGISTER` for clients without SASL.
//! Registration is a `hello` sent once `NICK` and `USER` came and negotiation (if any)
//! ended; SASL sends it at once, with the account's password, and its `welcome` waits for
//! `CAP END` (and `USER`) in the hold (see `IrcWire::put`).

use chat_shared::{ClientMsg, Password};

use super::caps;
use super::codec::Message;
use super::{Cmd, IrcWire, Registration, Sasl};
use crate::wire::Inbound;

impl<R, W> IrcWire<R, W> {
    fn reg(&mut self) -> Option<&mut Registration> {
        self.reg.as_deref_mut()
    }

    pub(super) fn cap(&mut self, msg: &Message) -> Inbound {
        let sub = msg.arg(0).to_ascii_uppercase();
        let me = self.me().to_owned();
        let server = self.server().to_owned();
        let registering = self.nick.is_none();
        match sub.as_str() {
            "LS" => {
                let v302 = msg.arg(1).parse::<u32>().is_ok_and(|v| v >= 302);
                if v302 {
                    // 302 implies cap-notify.
                    self.caps = self.caps.with(caps::CAP_NOTIFY, true);
                }
                if let Some(reg) = self.reg().filter(|_| registering) {
                    reg.negotiating = true;
                }
                let line = format!(":{server} CAP {me} LS :{}\r\n", caps::offered(v302));
                self.put(line.as_bytes());
            }
            "LIST" => {
                let line = format!(":{server} CAP {me} LIST :{}\r\n", self.caps.names());
                self.put(line.as_bytes());
            }
            "REQ" => {
                if let Some(reg) = self.reg().filter(|_| registering) {
                    reg.negotiating = true;
                }
                let list = msg.arg(1);
                let line = match caps::request(self.caps, list) {
                    Some(set) => {
                        self.caps = set;
                        format!(":{server} CAP {me} ACK :{list}\r\n")
                    }
                    None => format!(":{server} CAP {me} NAK :{list}\r\n"),
                };
                self.put(line.as_bytes());
            }
            "END" => {
                let Some(reg) = self.reg() else {
                    return Inbound::Handled;
                };
                reg.negotiating = false;
                if reg.welcomed {
                    if reg.user {
                        self.release();
                    }
                    return Inbound::Handled;
                }
                return self.try_register();
            }
            _ => self.numeric("410", &[msg.arg(0)], "Invalid CAP command"),
        }
        Inbound::Handled
    }

    pub(super) fn nick_cmd(&mut self, msg: &Message) -> Inbound {
        if msg.arg(0).is_empty() {
            self.numeric("431", &[], "No nickname given");
            return Inbound::Handled;
        }
        let nick = msg.arg(0).to_owned();
        if self.nick.as_deref() == Some(nick.as_str()) {
            return Inbound::Handled; // already so (irssi's NICK after a SASL login)
        }
        if self.nick.is_some() {
            return self.request(Cmd::Nick, &nick, ClientMsg::Nick { nick: nick.clone() });
        }
        if let Some(reg) = self.reg() {
            reg.nick = Some(nick);
        }
        self.try_register()
    }

    pub(super) fn user(&mut self, msg: &Message) -> Inbound {
        // irssi logs in with SASL before it sends NICK and USER: the `welcome` it caused
        // waits for them.
        if let Some(reg) = self.reg.as_deref_mut().filter(|r| r.welcomed && !r.user) {
            reg.user = true;
            if !reg.negotiating {
                self.release();
            }
            return Inbound::Handled;
        }
        if self.nick.is_some() || self.reg.as_ref().is_some_and(|r| r.user) {
            self.numeric("462", &[], "You may not reregister");
            return Inbound::Handled;
        }
        if !self.need_params(msg, 1) {
            return Inbound::Handled;
        }
        if let Some(reg) = self.reg() {
            reg.user = true;
        }
        self.try_register()
    }

    /// `PASS` is the server password of `--irc-password`; without one it is ignored (an
    /// account's password comes by SASL or `IDENTIFY`).
    pub(super) fn pass(&mut self, msg: &Message) -> Inbound {
        if self.nick.is_some() {
            self.numeric("462", &[], "You may not reregister");
            return Inbound::Handled;
        }
        let ok = self
            .config
            .irc_password
            .as_deref()
            .is_none_or(|p| p == msg.arg(0));
        if let Some(reg) = self.reg() {
            reg.pass_ok = ok;
        }
        Inbound::Handled
    }

    /// Sends `hello` once `NICK` and `USER` came and negotiation (if any) ended.
    pub(super) fn try_register(&mut self) -> Inbound {
        let Some(reg) = self.reg.as_deref_mut() else {
            return Inbound::Handled;
        };
        if reg.welcomed || reg.hello_sent || reg.negotiating || !reg.user {
            return Inbound::Handled;
        }
        let Some(nick) = reg.nick.clone() else {
            return Inbound::Handled;
        };
        if !reg.pass_ok {
            self.numeric("464", &[], "Password incorrect");
            return Inbound::BadServerPassword { nick };
        }
        self.hello(nick, None)
    }

    pub(super) fn hello(&mut self, nick: String, password: Option<Password>) -> Inbound {
        if let Some(reg) = self.reg() {
            reg.hello_sent = true;
        }
        let target = nick.clone();
        self.request(
            Cmd::Hello,
            &target,
            ClientMsg::Hello {
                nick,
                version: None,
                client: Some("irc".into()),
                password,
            },
        )
    }

    /// SASL PLAIN: `AUTHENTICATE PLAIN`, `+`, then the base64 of
    /// `authzid NUL authcid NUL password` (in 400-byte chunks). The account is the nick,
    /// so the credentials become a `hello` for the account's nick; its `welcome` is
    /// answered 900/903 and its refusal 904.
    pub(super) fn authenticate(&mut self, msg: &Message) -> Inbound {
        let arg = msg.arg(0).to_owned();
        let Some(reg) = self
            .reg
            .as_deref_mut()
            .filter(|r| !r.welcomed && !r.hello_sent)
        else {
            self.numeric("907", &[], "You have already authenticated using SASL");
            return Inbound::Handled;
        };
        if arg == "*" {
            reg.sasl = Sasl::Idle;
            self.numeric("906", &[], "SASL authentication aborted");
            return Inbound::Handled;
        }
        match &mut reg.sasl {
            Sasl::Idle | Sasl::Done => {
                if arg.eq_ignore_ascii_case("PLAIN") {
                    reg.sasl = Sasl::Plain(String::new());
                    self.put(b"AUTHENTICATE +\r\n");
                } else {
                    self.numeric("908", &["PLAIN"], "are available SASL mechanisms");
                    self.numeric("904", &[], "SASL authentication failed");
                }
                Inbound::Handled
            }
            Sasl::Plain(buf) => {
                if arg != "+" {
                    buf.push_str(&arg);
                }
                if arg.len() == 400 && buf.len() < 4096 {
                    return Inbound::Handled; // more chunks follow
                }
                let payload = std::mem::take(buf);
                reg.sasl = Sasl::Idle;
                let Some((account, password)) = plain_credentials(&payload) else {
                    self.numeric("904", &[], "SASL authentication failed");
                    return Inbound::Handled;
                };
                if let Some(reg) = self.reg() {
                    reg.sasl = Sasl::InFlight;
                }
                self.hello(account, Some(Password::new(password)))
            }
            Sasl::InFlight => Inbound::Handled,
        }
    }

    /// A `login` for `IDENTIFY` after registration.
    fn identify(&mut self, account: String, password: &str) -> Inbound {
        let me = self.me().to_owned();
        self.request(
            Cmd::Account,
            &me,
            ClientMsg::Login {
                nick: account,
                password: Password::new(password),
            },
        )
    }

    /// `IDENTIFY [ACCOUNT] PASSWORD` and `REGISTER PASSWORD`, to NickServ.
    pub(super) fn nickserv(&mut self, text: &str) -> Inbound {
        let mut words = text.split_whitespace();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        match (verb.as_str(), args.as_slice()) {
            // After registering: log in to the account (the current nick's, or the one
            // named), taking its nick.
            ("IDENTIFY", [password]) if self.nick.is_some() => {
                let me = self.me().to_owned();
                self.identify(me, password)
            }
            ("IDENTIFY", [account, password]) if self.nick.is_some() => {
                self.identify((*account).to_owned(), password)
            }
            ("IDENTIFY", [password]) => {
                let nick = self.reg.as_ref().and_then(|r| r.nick.clone());
                match nick {
                    Some(nick) => self.hello(nick, Some(Password::new(*password))),
                    None => {
                        self.nickserv_says("Send NICK first, or IDENTIFY ACCOUNT PASSWORD");
                        Inbound::Handled
                    }
                }
            }
            ("IDENTIFY", [account, password]) => {
                self.hello((*account).to_owned(), Some(Password::new(*password)))
            }
            ("REGISTER", [password, ..]) if self.nick.is_some() => {
                let me = self.me().to_owned();
                self.request(
                    Cmd::Account,
                    &me,
                    ClientMsg::Register {
                        password: Password::new(*password),
                    },
                )
            }
            ("REGISTER", _) if self.nick.is_none() => {
                self.nickserv_says("Register after connecting: REGISTER PASSWORD");
                Inbound::Handled
            }
            _ => {
                self.nickserv_says("Commands: IDENTIFY [ACCOUNT] PASSWORD, REGISTER PASSWORD");
                Inbound::Handled
            }
        }
    }
}

/// `authzid NUL authcid NUL password` from base64; the account is the authcid (or the
/// authzid when that is all there is).
fn plain_credentials(b64: &str) -> Option<(String, String)> {
    let bytes = base64_decode(b64)?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.split('\0');
    let (authzid, authcid, password) = (parts.next()?, parts.next()?, parts.next()?);
    let account = if authcid.is_empty() { authzid } else { authcid };
    if account.is_empty() || password.is_empty() || parts.next().is_some() {
        return None;
    }
    Some((account.to_owned(), password.to_owned()))
}

/// Standard base64 with padding, as SASL sends it; `None` for anything else. (Twenty
/// lines rather than a crate for one message per login.)
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in s {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_plain_credentials_name_the_account_and_its_password() {
        // base64("\0alice\0hunter22")
        assert_eq!(
            plain_credentials("AGFsaWNlAGh1bnRlcjIy"),
            Some(("alice".into(), "hunter22".into()))
        );
        // base64("alice\0alice\0pw")
        assert_eq!(
            plain_credentials("YWxpY2UAYWxpY2UAcHc="),
            Some(("alice".into(), "pw".into()))
        );
        assert_eq!(plain_credentials("not base64!"), None);
        assert_eq!(plain_credentials("AGFsaWNl"), None); // no password
    }
}
