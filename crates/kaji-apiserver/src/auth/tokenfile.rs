//! Static bearer tokens for people, in upstream's `--token-auth-file` format
//! (k8s.io/apiserver/plugin/pkg/authenticator/token/tokenfile): CSV lines
//! `token,user,uid,"group1,group2"`. Kaji keeps the file at `<data-dir>/server/cred/users.csv`
//! (written by `kaji token create`) and re-reads it when its modification time changes, looked
//! at no more than once a second, so new tokens work without a restart. A fifth column
//! `expires=<RFC 3339>` (a kaji extension that upstream's reader ignores) ends a token's life.
//! Tokens are compared in constant time.

use super::User;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// Under the data dir: the token file.
pub const USERS_FILE: &str = "server/cred/users.csv";

/// How often the file's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

/// One line of the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub token: String,
    pub user: User,
    pub expires: Option<jiff::Timestamp>,
}

#[derive(Default)]
struct State {
    checked: Option<Instant>,
    modified: Option<SystemTime>,
    entries: Vec<Entry>,
}

pub struct TokenFile {
    path: PathBuf,
    state: Mutex<State>,
}

/// Splits one CSV record (RFC 4180 quoting, leading spaces of fields trimmed as upstream's
/// `TrimLeadingSpace`).
pub fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_start = true;
            }
            ' ' | '\t' if at_start => {}
            '"' if at_start => {
                quoted = true;
                at_start = false;
            }
            c => {
                cur.push(c);
                at_start = false;
            }
        }
    }
    fields.push(cur);
    fields
}

/// Quotes a CSV field when it needs it.
pub fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', ' ']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Parses the file's text; bad lines are skipped with a warning (upstream refuses to start;
/// a file edited while the server runs should not take every token away).
pub fn parse(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let f = csv_fields(line);
        if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
            tracing::warn!(line = i + 1, "token file: a line needs token,user,uid");
            continue;
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let expires = match f.get(4).and_then(|e| e.strip_prefix("expires=")) {
            Some(t) => match t.parse::<jiff::Timestamp>() {
                Ok(t) => Some(t),
                Err(_) => {
                    tracing::warn!(line = i + 1, "token file: bad expires= time");
                    continue;
                }
            },
            None => None,
        };
        out.push(Entry {
            token: f[0].clone(),
            user: User {
                name: f[1].clone(),
                uid: f[2].clone(),
                groups,
                ..User::default()
            },
            expires,
        });
    }
    out
}

/// Equal in time that depends only on the lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenFile {
    pub fn new(data_dir: &Path) -> TokenFile {
        TokenFile {
            path: data_dir.join(USERS_FILE),
            state: Mutex::new(State::default()),
        }
    }

    fn refresh(&self, s: &mut State) {
        let now = Instant::now();
        if s.checked.is_some_and(|c| now.duration_since(c) < RECHECK) {
            return;
        }
        s.checked = Some(now);
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == s.modified {
            return;
        }
        s.modified = modified;
        s.entries = match std::fs::read_to_string(&self.path) {
            Ok(text) => parse(&text),
            Err(_) => Vec::new(),
        };
        tracing::info!(path = %self.path.display(), tokens = s.entries.len(), "token file loaded");
    }

    /// The user of `token`, if the file has it (and it has not expired).
    pub fn authenticate(&self, token: &str) -> Option<User> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut s);
        let mut found = None;
        // Every entry is compared, so the time taken does not tell which one matched.
        for e in &s.entries {
            if constant_time_eq(e.token.as_bytes(), token.as_bytes()) && found.is_none() {
                found = Some(e);
            }
        }
        let e = found?;
        if e.expires.is_some_and(|t| t <= jiff::Timestamp::now()) {
            return None;
        }
        Some(e.user.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_format() {
        let e = parse(
            "abc,alice,1000,\"dev,ops\"\n\n t2, bob ,2\nbad,line\ntok3,carol,3,,expires=2000-01-01T00:00:00Z\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].user.name, "alice");
        assert_eq!(e[0].user.uid, "1000");
        assert_eq!(e[0].user.groups, vec!["dev", "ops"]);
        assert_eq!(e[1].token, "t2");
        assert_eq!(e[1].user.name, "bob ");
        assert!(e[2].expires.is_some());
        assert_eq!(csv_fields(&csv_quote("a,\"b")), vec!["a,\"b"]);
    }

    #[test]
    fn reloads_on_change() {
        let dir = std::env::temp_dir().join(format!("kaji-tokenfile-{}", uuid::Uuid::new_v4()));
        let tf = TokenFile::new(&dir);
        assert_eq!(tf.authenticate("tok"), None);
        std::fs::create_dir_all(dir.join("server/cred")).unwrap();
        std::fs::write(dir.join(USERS_FILE), "tok,alice,1\n").unwrap();
        tf.state.lock().unwrap().checked = None;
        assert_eq!(tf.authenticate("tok").unwrap().name, "alice");
        assert_eq!(tf.authenticate("tok2"), None);
        assert_eq!(tf.authenticate("to"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
