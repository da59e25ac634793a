//! The config file: TOML whose keys are the flags' long names, read into the flags they
//! stand for, so clap parses and checks a key exactly as it would the flag.
//!
//! A key's value is checked on its own, against its flag's parser, before anything is
//! merged, so an error names the key and its line rather than a flag nobody typed.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, ArgMatches, Command};
use toml::de::{DeTable, DeValue};

/// Arguments that are not settings and so have no key.
const NOT_KEYS: &[&str] = &["config", "print-config", "help", "version"];

/// Width of the help comments `--print-config` writes.
const COMMENT_WIDTH: usize = 88;

/// What is wrong with the config file.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not TOML (the parser's message names the line and column).
    #[error("{}: not a valid TOML file: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key that is no setting's.
    #[error(
        "{}:{line}: unknown key `{key}` (the keys are the long names of the flags \
         `chat-server --help` lists, such as `max-sendq`)",
        path.display()
    )]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key's line, from 1.
        line: usize,
        /// The key.
        key: String,
    },
    /// A key whose value its setting does not take.
    #[error("{}:{line}: bad value for `{key}`: {reason}", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// The key's line, from 1.
        line: usize,
        /// The key.
        key: String,
        /// Why, in clap's words where its parser refused the value.
        reason: String,
    },
}

/// One key of the file, as the flag it stands for.
#[derive(Debug)]
pub(super) struct Entry {
    /// The clap id of its argument.
    pub(super) id: String,
    /// The flag and its value (`--max-sendq=1048576`); none for a switch set to false.
    pub(super) args: Vec<OsString>,
}

/// Reads and checks the config file at `path` against the settings of `cmd`.
///
/// # Errors
/// See [`FileError`].
pub(super) fn read(path: &Path, cmd: &Command) -> Result<Vec<Entry>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, cmd).map_err(|e| e.in_file(path))
}

/// A [`FileError`] before it knows its file.
#[derive(Debug, PartialEq, Eq)]
enum Problem {
    Syntax(String),
    UnknownKey(usize, String),
    BadValue(usize, String, String),
}

impl Problem {
    fn in_file(self, path: &Path) -> FileError {
        let path = path.to_owned();
        match self {
            Self::Syntax(message) => FileError::Syntax { path, message },
            Self::UnknownKey(line, key) => FileError::UnknownKey { path, line, key },
            Self::BadValue(line, key, reason) => FileError::BadValue {
                path,
                line,
                key,
                reason,
            },
        }
    }
}

fn parse(text: &str, cmd: &Command) -> Result<Vec<Entry>, Problem> {
    let table = DeTable::parse(text).map_err(|e| Problem::Syntax(e.to_string()))?;
    let mut keys: Vec<_> = table.get_ref().iter().collect();
    // In the file's order, so the first mistake is the one reported.
    keys.sort_by_key(|(key, _)| key.span().start);
    let mut entries = Vec::with_capacity(keys.len());
    for (key, value) in keys {
        let line = 1 + text[..key.span().start].matches('\n').count();
        let name: &str = key.get_ref();
        let arg = setting(cmd, name).ok_or_else(|| Problem::UnknownKey(line, name.to_owned()))?;
        let bad = |reason: String| Problem::BadValue(line, name.to_owned(), reason);
        let args = to_args(arg, name, value.get_ref()).map_err(bad)?;
        check(arg, name, &args).map_err(bad)?;
        entries.push(Entry {
            id: arg.get_id().to_string(),
            args,
        });
    }
    Ok(entries)
}

/// The setting a key names, if it is one.
fn setting<'c>(cmd: &'c Command, key: &str) -> Option<&'c Arg> {
    if NOT_KEYS.contains(&key) {
        return None;
    }
    cmd.get_arguments().find(|a| a.get_long() == Some(key))
}

fn is_switch(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::SetTrue)
}

/// The flag a key's value stands for.
fn to_args(arg: &Arg, key: &str, value: &DeValue<'_>) -> Result<Vec<OsString>, String> {
    if is_switch(arg) {
        return match value.as_bool() {
            Some(true) => Ok(vec![format!("--{key}").into()]),
            Some(false) => Ok(Vec::new()),
            None => Err(format!(
                "expected true or false, found {}",
                value.type_str()
            )),
        };
    }
    let text = match value {
        DeValue::Array(items) => {
            let Some(delimiter) = arg.get_value_delimiter() else {
                return Err("expected one value, found an array".to_owned());
            };
            let items: Result<Vec<String>, String> =
                items.iter().map(|item| scalar(item.get_ref())).collect();
            items?.join(&delimiter.to_string())
        }
        other => scalar(other)?,
    };
    Ok(vec![format!("--{key}={text}").into()])
}

/// A scalar value as the text a flag would be given.
fn scalar(value: &DeValue<'_>) -> Result<String, String> {
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            i128::from_str_radix(&digits, i.radix())
                .map(|n| n.to_string())
                .map_err(|e| format!("bad integer: {e}"))
        }
        DeValue::Float(f) => Ok(f.as_str().replace('_', "")),
        DeValue::Boolean(b) => Ok(b.to_string()),
        DeValue::Datetime(_) | DeValue::Array(_) | DeValue::Table(_) => Err(format!(
            "expected a string, a number or true/false, found {}",
            value.type_str()
        )),
    }
}

/// Runs the key's flag through its own parser, alone: the value's type and range are
/// checked here, where the key's line is known.
fn check(arg: &Arg, key: &str, args: &[OsString]) -> Result<(), String> {
    let mut alone = Arg::new(arg.get_id().clone())
        .long(key.to_owned())
        .action(arg.get_action().clone())
        .value_parser(arg.get_value_parser().clone());
    if let Some(delimiter) = arg.get_value_delimiter() {
        alone = alone.value_delimiter(delimiter);
    }
    let argv = std::iter::once(OsString::from("chat-server")).chain(args.iter().cloned());
    Command::new("chat-server")
        .arg(alone)
        .try_get_matches_from(argv)
        .map(drop)
        .map_err(|e| {
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            first.trim_start_matches("error: ").to_owned()
        })
}

/// Every setting that has a value, as the TOML text of that value, by key.
pub(super) fn values(cmd: &Command, matches: &ArgMatches) -> BTreeMap<String, String> {
    settings(cmd)
        .filter_map(|(key, arg)| Some((key.to_owned(), value_of(arg, matches)?)))
        .collect()
}

fn settings(cmd: &Command) -> impl Iterator<Item = (&str, &Arg)> {
    cmd.get_arguments().filter_map(|arg| {
        let key = arg.get_long()?;
        (!NOT_KEYS.contains(&key)).then_some((key, arg))
    })
}

/// A setting's value in TOML, if it has one.
fn value_of(arg: &Arg, matches: &ArgMatches) -> Option<String> {
    let id = arg.get_id().as_str();
    if is_switch(arg) {
        return Some(matches.get_flag(id).to_string());
    }
    let raw: Vec<String> = matches
        .get_raw(id)?
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    if arg.get_value_delimiter().is_some() {
        let items: Vec<String> = raw.iter().map(|v| toml_string(v)).collect();
        return Some(format!("[{}]", items.join(", ")));
    }
    let one = raw.into_iter().next()?;
    Some(if is_number(arg) && one.parse::<f64>().is_ok() {
        one
    } else {
        toml_string(&one)
    })
}

fn is_number(arg: &Arg) -> bool {
    use std::any::TypeId;
    let id = arg.get_value_parser().type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
        TypeId::of::<f64>(),
    ]
    .iter()
    .any(|t| id == *t)
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The configuration of `matches` as a config file: every setting with its help as a
/// comment, and commented out where it has no value.
pub(super) fn print(cmd: &Command, matches: &ArgMatches) -> String {
    let mut out = String::from(
        "# chat-server configuration: every key is a flag's long name (chat-server --help).\n\
         # Flags and CHAT_* environment variables win over this file.\n",
    );
    for (key, arg) in settings(cmd) {
        out.push('\n');
        if let Some(help) = arg.get_help() {
            wrap_comment(&help.to_string(), &mut out);
        }
        match value_of(arg, matches) {
            Some(value) => out.push_str(&format!("{key} = {value}\n")),
            None => out.push_str(&format!("# {key} =\n")),
        }
    }
    out
}

fn wrap_comment(text: &str, out: &mut String) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > COMMENT_WIDTH && line.len() > 1 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn cmd() -> Command {
        super::super::Args::command()
    }

    #[test]
    fn keys_become_their_flags() {
        let entries = parse(
            "rate = 2.5\nmax-sendq = 0x10_0000\nadmins = [\"ann\", \"bo\"]\n\
             require-tls = false\nmotd = \"héllo = \\\"you\\\"\"\n",
            &cmd(),
        )
        .unwrap();
        let args: Vec<Vec<OsString>> = entries.into_iter().map(|e| e.args).collect();
        assert_eq!(
            args,
            vec![
                vec![OsString::from("--rate=2.5")],
                vec![OsString::from("--max-sendq=1048576")],
                vec![OsString::from("--admins=ann,bo")],
                vec![],
                vec![OsString::from("--motd=héllo = \"you\"")],
            ]
        );
    }

    #[test]
    fn a_mistake_names_its_key_and_line() {
        assert_eq!(
            parse("rate = 1\n\nmax-sendqq = 5\n", &cmd()).unwrap_err(),
            Problem::UnknownKey(3, "max-sendqq".into())
        );
        assert!(matches!(
            parse("# c\nmax-sendq = \"lots\"\n", &cmd()).unwrap_err(),
            Problem::BadValue(2, key, reason) if key == "max-sendq" && reason.contains("lots")
        ));
        assert!(matches!(
            parse("max-text = -1\n", &cmd()).unwrap_err(),
            Problem::BadValue(1, key, _) if key == "max-text"
        ));
        assert!(matches!(
            parse("log-format = \"xml\"\n", &cmd()).unwrap_err(),
            Problem::BadValue(1, key, reason) if key == "log-format" && reason.contains("xml")
        ));
        assert!(matches!(
            parse("rate = [1, 2]\n", &cmd()).unwrap_err(),
            Problem::BadValue(1, _, reason) if reason.contains("array")
        ));
        assert!(matches!(
            parse("require-tls = \"yes\"\n", &cmd()).unwrap_err(),
            Problem::BadValue(1, _, reason) if reason.contains("true or false")
        ));
        assert!(matches!(
            parse("[limits]\nrate = 1\n", &cmd()).unwrap_err(),
            Problem::UnknownKey(1, key) if key == "limits"
        ));
        // Not settings, so not keys.
        assert!(matches!(
            parse("config = \"x.toml\"\n", &cmd()).unwrap_err(),
            Problem::UnknownKey(1, _)
        ));
        assert!(matches!(
            parse("rate = \n", &cmd()).unwrap_err(),
            Problem::Syntax(message) if message.contains("line 1")
        ));
    }

    #[test]
    fn comments_wrap_at_their_width() {
        let mut out = String::new();
        wrap_comment(&"word ".repeat(40), &mut out);
        assert!(out.lines().count() > 1);
        assert!(
            out.lines()
                .all(|l| l.len() <= COMMENT_WIDTH && l.starts_with('#'))
        );
    }
}
