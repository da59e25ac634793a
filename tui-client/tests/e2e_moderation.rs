//! End-to-end: room moderation as the real `chat-tui` binary shows it, in a real terminal
//! (tmux), against a real `chat-server`, beside the clients of the other two kinds.
//!
//! `alice` is a framed client (the protocol's JSON frames, as a bot or another client sends
//! them): first into the new room `#mod`, so its op, she sets the topic, gives `bob`
//! voice, makes the room moderated, kicks him, makes it invite-only and invites him back.
//! `bob` is `chat-tui`, typed at with `send-keys` and read with `capture-pane`; `carol` is
//! a line-mode client (as `nc` would be) in the same room. The test checks that bob's
//! screen shows what alice's frames say happened, in the same order: the topic row, the
//! event lines in the moderation wording, the `@`/`+` marks, the tab marked not joined
//! after the kick, the refused `/join` of an invite-only room, the invitation and its
//! one-key join (Ctrl-J), after which the others see him join and he sees, once each, the
//! events of his first stay and the one he missed; and that the terminal is restored after
//! `/quit`.
//!
//! Alice is framed (line mode's commands translate to the same requests and have tests of
//! their own in `tests/moderation.rs`), carol a line client.
//!
//! Skipped with a message when tmux is missing, unless `CI` is set: then it fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod tmux;

use tmux::{InProcess, LineClient, Tmux, skip_without_tmux};

/// Bound on every wait of the framed client.
const WAIT: Duration = Duration::from_secs(10);

/// Wide enough for the kicked line (the longest) not to wrap.
const WIDTH: u16 = 120;

/// Rows of the pane: tab bar, topic, scrollback, status bar, input.
const HEIGHT: u16 = 30;

/// One capture of chat-tui's screen, read by its parts.
struct Screen(String);

impl Screen {
    fn rows(&self) -> Vec<&str> {
        self.0.lines().collect()
    }

    /// The row under the tab bar, where a room's topic goes.
    fn topic_row(&self) -> String {
        self.rows().get(1).map_or("", |r| r.trim()).to_owned()
    }

    /// The status bar (the row above the input line).
    fn status_bar(&self) -> String {
        self.rows()
            .iter()
            .rev()
            .find(|r| r.contains(" │ bob │ "))
            .map_or(String::new(), |r| r.trim_end().to_owned())
    }

    /// The scrollback's lines without their `HH:MM ` time and without the member list
    /// beside them: `-- alice set mode +m`, `<+bob> hi`, `! you were kicked …`.
    fn lines(&self) -> Vec<String> {
        let rows = self.rows();
        let body = rows.get(2..rows.len().saturating_sub(2)).unwrap_or(&[]);
        body.iter()
            .filter_map(|row| {
                let text = row.rsplit_once(" │").map_or(*row, |(text, _)| text);
                let time = text.get(..6)?;
                let b = time.as_bytes();
                let is_time = b[..2].iter().chain(&b[3..5]).all(u8::is_ascii_digit)
                    && b[2] == b':'
                    && b[5] == b' ';
                is_time.then(|| text[6..].trim_end().to_owned())
            })
            .collect()
    }

    /// How many scrollback lines are exactly `line`.
    fn count(&self, line: &str) -> usize {
        self.lines().iter().filter(|l| *l == line).count()
    }

    /// The member list, top to bottom, as drawn right of its border: `@alice`, `+bob`,
    /// ` carol` (a blank mark column when someone has a mark); its title first.
    fn members(&self) -> Vec<String> {
        let rows = self.rows();
        let body = rows.get(2..rows.len().saturating_sub(2)).unwrap_or(&[]);
        body.iter()
            .filter_map(|row| row.rsplit_once('│'))
            .map(|(_, list)| list.strip_prefix(' ').unwrap_or(list).trim_end().to_owned())
            .filter(|m| !m.is_empty())
            .collect()
    }
}

/// Polls chat-tui's screen until `ready` holds for it.
fn screen_until(tmux: &Tmux, what: &str, ready: impl Fn(&Screen) -> bool) -> Screen {
    Screen(tmux.wait_until(what, |s| ready(&Screen(s.to_owned()))))
}

/// Polls chat-tui's screen until `needle` appears on it.
fn screen_with(tmux: &Tmux, needle: &str) -> Screen {
    Screen(tmux.wait_for_screen(needle))
}

/// Whether `lines` holds each of `expected`, in that order (other lines may come between).
fn in_order(lines: &[String], expected: &[&str]) -> bool {
    let mut rest = lines.iter();
    expected.iter().all(|want| rest.any(|l| l == want))
}

/// A framed client: JSON requests out, every event in collected by a background thread.
/// Waits read the events in order, each from where the last one matched, so a sequence of
/// waits also checks the order things arrived in.
struct FramedClient {
    stream: TcpStream,
    events: Arc<Mutex<Vec<Value>>>,
    next: usize,
}

impl FramedClient {
    /// Connects and says `hello` as `nick`; returns once welcomed.
    fn connect(addr: SocketAddr, nick: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let mut reader = stream.try_clone().unwrap();
        std::thread::spawn(move || {
            // The contract: a client discards everything before the first 0x00 (a greeting
            // sent to a slow client); that byte starts the first length prefix.
            let mut byte = [0u8; 1];
            loop {
                if reader.read_exact(&mut byte).is_err() {
                    return;
                }
                if byte[0] == 0 {
                    break;
                }
            }
            let mut prefix = [0u8; 4];
            let mut have = 1;
            loop {
                if reader.read_exact(&mut prefix[have..]).is_err() {
                    return;
                }
                have = 0;
                let len = u32::from_be_bytes(prefix) as usize;
                let mut payload = vec![0u8; len];
                if reader.read_exact(&mut payload).is_err() {
                    return;
                }
                let event: Value = serde_json::from_slice(&payload).expect("a JSON frame");
                sink.lock().unwrap().push(event);
            }
        });
        let mut client = Self {
            stream,
            events,
            next: 0,
        };
        client.send(json!({"type": "hello", "nick": nick, "version": 1, "client": "e2e"}));
        client.wait_for(json!({"type": "welcome", "nick": nick}));
        client
    }

    fn send(&mut self, request: Value) {
        let payload = serde_json::to_vec(&request).unwrap();
        let len = u32::try_from(payload.len()).unwrap();
        self.stream.write_all(&len.to_be_bytes()).unwrap();
        self.stream.write_all(&payload).unwrap();
    }

    /// Waits for the next event that has every field of `pattern` (with those values),
    /// after the one the last wait matched, and returns it.
    fn wait_for(&mut self, pattern: Value) -> Value {
        let fields = pattern.as_object().expect("a pattern is an object");
        let matches = |event: &Value| fields.iter().all(|(k, v)| event.get(k) == Some(v));
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let events = self.events.lock().unwrap();
                if let Some(at) = events[self.next..].iter().position(matches) {
                    self.next += at + 1;
                    return events[self.next - 1].clone();
                }
                assert!(
                    Instant::now() < deadline,
                    "the framed client never got {pattern} after its event #{}; it got: {:#?}",
                    self.next,
                    *events
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn chat_tui_shows_a_rooms_topic_marks_kick_and_invitation_as_the_other_clients_see_them() {
    if skip_without_tmux("chat_tui_shows_a_rooms_topic_marks_kick_and_invitation…") {
        return;
    }

    let server = InProcess::start();
    let addr = server.addr;

    // alice creates #mod: its first member, so its op.
    let mut alice = FramedClient::connect(addr, "alice");
    alice.send(json!({"type": "join", "room": "mod"}));
    alice.wait_for(json!({"type": "joined", "room": "mod", "nick": "alice", "role": "op"}));

    // bob: chat-tui, joining with its own /join. The shell prints the exit status on the
    // (restored) normal screen, then waits for a line so the pty stays open until it is
    // read (see e2e_tmux.rs).
    let bin = env!("CARGO_BIN_EXE_chat-tui");
    let command = format!(
        "sh -c '\"$0\" --nick bob --server \"$1\"; echo \"chat-tui exited with $?\"; read _' \
         '{bin}' {addr}"
    );
    let tmux = Tmux::start("e2e-mod", WIDTH, HEIGHT, &command);
    screen_with(&tmux, " online │ bob │ #lobby");
    tmux.type_line("/join mod");
    screen_with(&tmux, " online │ bob │ #mod +t │");
    alice.wait_for(json!({"type": "joined", "room": "mod", "nick": "bob"}));

    // carol: a line client in the room too (before it closes).
    let mut carol = LineClient::connect(addr, "carol");
    carol.say("/join mod");
    carol.wait_for_exact("-- you joined #mod; it is your current room");
    alice.wait_for(json!({"type": "joined", "room": "mod", "nick": "carol"}));
    screen_until(&tmux, "carol joining", |s| {
        s.lines().contains(&"-- carol joined #mod".to_owned())
    });

    // Topic, voice, moderated: each as alice's frames say, then as bob's screen shows it.
    alice.send(json!({"type": "topic", "room": "mod", "text": "Rust only"}));
    let topic = alice.wait_for(json!({"type": "topic", "room": "mod", "text": "Rust only"}));
    assert_eq!(topic["by"], "alice", "{topic}");
    alice.send(json!({"type": "voice", "room": "mod", "nick": "bob"}));
    let voice = alice.wait_for(json!({"type": "role", "room": "mod", "nick": "bob"}));
    assert_eq!(
        (&voice["role"], &voice["by"]),
        (&json!("voice"), &json!("alice"))
    );
    alice.send(json!({"type": "mode", "room": "mod", "moderated": true}));
    let moderated = alice.wait_for(json!({"type": "mode", "room": "mod", "by": "alice"}));
    assert_eq!(moderated["moderated"], true, "{moderated}");
    assert!(
        moderated.get("invite_only").is_none(),
        "only what changed: {moderated}"
    );

    // Voiced, bob may speak in the moderated room; his line carries his mark.
    screen_with(&tmux, " online │ bob │ #mod +mt │");
    tmux.type_line("voiced, so I may speak");
    let said = alice.wait_for(json!({"type": "message", "room": "mod", "from": "bob"}));
    assert_eq!(said["text"], "voiced, so I may speak");
    carol.wait_for_exact("<bob> voiced, so I may speak");

    let events = [
        "-- alice set the topic: Rust only",
        "-- alice gave bob voice",
        "-- alice set mode +m",
        "<+bob> voiced, so I may speak",
    ];
    let screen = screen_until(&tmux, "the topic, voice and mode lines, then bob's", |s| {
        in_order(&s.lines(), &events)
    });
    assert_eq!(screen.topic_row(), "Rust only", "{}", screen.0);
    let members = screen.members();
    assert_eq!(
        members.get(1..4),
        Some(&["@alice".to_owned(), "+bob".to_owned(), " carol".to_owned()][..]),
        "ops, then voiced, then the rest, marked: {members:?}\n{}",
        screen.0
    );
    assert!(members[0].contains("3 members"), "{members:?}");
    // The seq order alice saw is the order bob's screen shows.
    let seqs = [&topic, &voice, &moderated, &said].map(|e| e["seq"].as_u64().unwrap());
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");

    // The kick: everyone is told, bob included; his tab stays, marked not joined.
    alice.send(json!({"type": "kick", "room": "mod", "nick": "bob", "reason": "spam"}));
    let kicked = alice.wait_for(json!({"type": "kicked", "room": "mod", "nick": "bob"}));
    assert_eq!(
        (&kicked["by"], &kicked["reason"]),
        (&json!("alice"), &json!("spam"))
    );
    assert!(kicked["seq"].as_u64().unwrap() > seqs[3], "{kicked}");
    let kick_line = "-- bob was kicked by alice (spam)";
    let told = "! you were kicked from #mod by alice (spam): /join mod to go back in, \
                /part to close the tab";
    // A nick's mark is its role now, as in the member list: bob has none any more.
    let unmarked = "<bob> voiced, so I may speak";
    let screen = screen_until(&tmux, "the kick", |s| {
        in_order(
            &s.lines(),
            &[&events[..3], &[unmarked, kick_line, told]].concat(),
        )
    });
    assert!(
        screen.status_bar().contains(" │ #mod +mt (not joined) │ "),
        "{}",
        screen.0
    );
    assert!(
        screen.members().is_empty(),
        "nobody is listed in a room we are not in:\n{}",
        screen.0
    );

    // carol read the same events in the same words, as line mode's `-- ` notices.
    let words = [
        "alice set the topic: Rust only",
        "alice gave bob voice",
        "alice set mode +m",
        "bob was kicked by alice (spam)",
    ];
    carol.wait_until(&format!("{words:?} in order"), |lines| {
        let mut rest = lines.iter();
        words.iter().all(|w| rest.any(|l| *l == format!("-- {w}")))
    });

    // Invite-only now; the invitation, then Ctrl-J joins (the invitation lets bob in once).
    alice.send(json!({"type": "mode", "room": "mod", "invite_only": true}));
    let closed = alice.wait_for(json!({"type": "mode", "room": "mod", "invite_only": true}));
    tmux.type_line("/join mod");
    let refused = |l: &String| {
        l.starts_with("! #mod is invite-only: ") && l.ends_with(" (an op can /invite you)")
    };
    screen_until(&tmux, "the refusal", |s| s.lines().iter().any(refused));
    alice.send(json!({"type": "invite", "room": "mod", "nick": "bob"}));
    alice.wait_for(json!({"type": "notice"}));
    let invitation = "-- alice invites you to #mod: press Ctrl-J to join (or /join mod)";
    screen_until(&tmux, "the invitation", |s| {
        in_order(&s.lines(), &[told, invitation])
    });
    tmux.send_key("C-j");
    alice.wait_for(json!({"type": "joined", "room": "mod", "nick": "bob"}));
    carol.wait_for_exact("-- bob joined #mod");

    // Back in: the room as it is now (invite-only; bob's voice, a guest's, ended when he
    // left), and what he missed (+i) from the join's history, every event line once.
    let missed = "-- alice set mode +i";
    let screen = screen_until(&tmux, "bob back in #mod", |s| {
        s.status_bar().contains(" │ #mod +imt │ ")
            && s.members().len() == 4
            && in_order(&s.lines(), &[kick_line, missed])
    });
    assert!(closed["seq"].as_u64().unwrap() > kicked["seq"].as_u64().unwrap());
    assert_eq!(screen.topic_row(), "Rust only", "{}", screen.0);
    assert_eq!(
        screen.members().get(1..),
        Some(&["@alice".to_owned(), " bob".to_owned(), " carol".to_owned()][..]),
        "{}",
        screen.0
    );
    for line in events[..3]
        .iter()
        .chain([&unmarked, &kick_line, &missed, &told, &invitation])
    {
        assert_eq!(screen.count(line), 1, "{line:?} once:\n{}", screen.0);
    }

    // Quit: exit status 0 and the terminal modes switched off again.
    tmux.type_line("/quit");
    screen_with(&tmux, "chat-tui exited with 0");
    assert_eq!(
        tmux.pane_format("#{alternate_on} #{mouse_any_flag} #{mouse_sgr_flag}"),
        "0 0 0",
        "alternate screen and mouse reporting must be off after exit"
    );
    alice.wait_for(json!({"type": "parted", "room": "mod", "nick": "bob"}));
    carol.wait_for_exact("-- bob left #mod (quit)");
    tmux.send_key("Enter");
    drop(tmux);

    server.stop();
}
