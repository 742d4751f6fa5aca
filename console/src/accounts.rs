//! The people who sign in to the console, and their sessions.
//!
//! An account has one role of the access model (`operator`, `auditor` or
//! `admin`: partners submit through the API, never the console) and the
//! operator grants `phi_view` and `break_glass`. Its password is stored as
//! an Argon2id hash (PHC string, OWASP's parameters). Admins create
//! accounts (`clearway console-users add`); the password it prints is
//! shown once.
//!
//! A session is a random token in the `__Host-` cookie; the store keeps
//! only its SHA-256, so a copy of the store signs no one in. It ends after
//! [`IDLE_MS`] without a request a person made (the dashboard's own
//! polling does not count), after [`ABSOLUTE_MS`] in any case, on sign-out,
//! or at once when its account is disabled.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use bytes::Bytes;
use clearway_core::access::Role;
use clearway_core::error::{ErrorKind, PortError, PortResult};
use clearway_core::ports::{Condition, Key, StateStore, Table, WriteOp};
use clearway_core::records::timestamp;
use clearway_core::sensitive::Sensitive;
use serde::{Deserialize, Serialize};

/// A session ends after this long without a request its person made.
pub const IDLE_MS: i64 = 15 * 60 * 1000;
/// A session ends this long after sign-in, whatever happens.
pub const ABSOLUTE_MS: i64 = 8 * 60 * 60 * 1000;
/// How often a session's last activity is written (not on every request).
pub const SEEN_EVERY_MS: i64 = 30 * 1000;
/// The least a password set by hand has.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most a password has (Argon2 takes any length; a bound on work).
pub const MAX_PASSWORD_CHARS: usize = 256;

const ACCOUNTS: &str = "console-account";
const SESSIONS: &str = "console-session";

/// A console account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub phi_view: bool,
    #[serde(default)]
    pub break_glass: bool,
    /// Argon2id, PHC string.
    password: String,
    pub created_at: String,
    #[serde(default)]
    pub disabled: bool,
}

/// A signed-in session (stored under the SHA-256 of its token).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub account: String,
    pub created_ms: i64,
    pub seen_ms: i64,
}

impl Session {
    /// Whether it is still in force at `now_ms`.
    pub fn live(&self, now_ms: i64) -> bool {
        now_ms - self.seen_ms < IDLE_MS && now_ms - self.created_ms < ABSOLUTE_MS
    }

    /// When it ends if nothing more is done (Unix ms).
    pub fn ends_ms(&self) -> i64 {
        (self.seen_ms + IDLE_MS).min(self.created_ms + ABSOLUTE_MS)
    }
}

fn account_key(name: &str) -> Key {
    Key::new(Table::Partners, ACCOUNTS, name)
}

fn session_key(token_hash: &str) -> Key {
    Key::new(Table::Partners, SESSIONS, token_hash)
}

fn encode<T: Serialize>(v: &T) -> PortResult<Bytes> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| PortError::with_cause(ErrorKind::Internal, "encode", e))
}

fn decode<T: serde::de::DeserializeOwned>(b: &[u8]) -> PortResult<T> {
    serde_json::from_slice(b).map_err(|e| PortError::with_cause(ErrorKind::Internal, "decode", e))
}

/// Whether `name` may name an account: 1-64 of `a-z 0-9 . _ -`, starting
/// with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.as_bytes()[0].is_ascii_alphanumeric()
}

/// Argon2id with OWASP's parameters (19 MiB, two passes, one lane).
fn hasher() -> argon2::Argon2<'static> {
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, None).unwrap_or_default(),
    )
}

/// Hashes a password (CPU work: call it off the async threads).
fn hash_password(password: &str) -> PortResult<String> {
    let mut salt = [0u8; 16];
    clearway_core::crypto::random_bytes(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| PortError::new(ErrorKind::Internal, "password salt"))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| PortError::new(ErrorKind::Internal, "hash password"))
}

/// Whether `password` matches `phc` (CPU work: off the async threads).
fn password_matches(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// A hash that matches nothing, verified when no account has the name, so
/// an unknown name takes as long as a wrong password.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password("clearway decoy password").unwrap_or_default())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> PortResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| PortError::with_cause(ErrorKind::Internal, "password hashing", e))
}

/// Accounts and sessions over a state store.
#[derive(Clone)]
pub struct Accounts {
    state: std::sync::Arc<dyn StateStore>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accounts")
    }
}

/// What a new account may do.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    pub phi_view: bool,
    pub break_glass: bool,
}

impl Accounts {
    pub fn new(state: std::sync::Arc<dyn StateStore>) -> Self {
        Accounts { state }
    }

    /// Creates an account with a generated password, returned once.
    pub async fn add(&self, name: &str, role: Role, grants: Grants) -> PortResult<Sensitive<String>> {
        if !valid_name(name) {
            return Err(PortError::invalid_input("an account name is 1-64 of a-z 0-9 . _ -"));
        }
        if role == Role::Submitter {
            return Err(PortError::invalid_input(
                "partners use the API; console accounts are operator, auditor or admin",
            ));
        }
        if (grants.phi_view || grants.break_glass) && role != Role::Operator {
            return Err(PortError::invalid_input("phi_view and break_glass are for operators"));
        }
        let password = clearway_core::crypto::new_api_key()?;
        let p = password.expose().clone();
        let phc = blocking(move || hash_password(&p)).await??;
        let account = Account {
            name: name.to_string(),
            role,
            phi_view: grants.phi_view,
            break_glass: grants.break_glass,
            password: phc,
            created_at: timestamp(time::OffsetDateTime::now_utc()),
            disabled: false,
        };
        self.state.write(vec![put(account_key(name), encode(&account)?, Condition::NotExists, None)]).await.map_err(
            |e| {
                if e.kind() == ErrorKind::PreconditionFailed {
                    PortError::new(ErrorKind::AlreadyExists, "an account has that name")
                } else {
                    e
                }
            },
        )?;
        Ok(password)
    }

    /// Sets an account's password (and re-enables it).
    pub async fn set_password(&self, name: &str, password: &str) -> PortResult<()> {
        let n = password.chars().count();
        if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
            return Err(PortError::invalid_input("a password has 12 to 256 characters"));
        }
        let (mut account, version) = self.get(name).await?.ok_or_else(|| PortError::not_found("no such account"))?;
        let p = password.to_string();
        account.password = blocking(move || hash_password(&p)).await??;
        account.disabled = false;
        self.state.write(vec![put(account_key(name), encode(&account)?, Condition::Version(version), None)]).await
    }

    /// Disables an account: its sessions end at their next request.
    pub async fn disable(&self, name: &str) -> PortResult<()> {
        let (mut account, version) = self.get(name).await?.ok_or_else(|| PortError::not_found("no such account"))?;
        account.disabled = true;
        self.state.write(vec![put(account_key(name), encode(&account)?, Condition::Version(version), None)]).await
    }

    /// An account and its version.
    pub async fn get(&self, name: &str) -> PortResult<Option<(Account, u64)>> {
        if !valid_name(name) {
            return Ok(None);
        }
        match self.state.get(&account_key(name)).await? {
            Some(item) => Ok(Some((decode(&item.value)?, item.version))),
            None => Ok(None),
        }
    }

    /// Every account, by name.
    pub async fn list(&self) -> PortResult<Vec<Account>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.state.query(Table::Partners, ACCOUNTS, after.as_deref(), 1000).await?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, item) in page {
                out.push(decode(&item.value)?);
            }
        }
        Ok(out)
    }

    /// The enabled account `name` if `password` is its password. Takes as
    /// long for an unknown name as for a wrong password.
    pub async fn verify(&self, name: &str, password: &str) -> PortResult<Option<Account>> {
        if password.is_empty() || password.chars().count() > MAX_PASSWORD_CHARS {
            return Ok(None);
        }
        let account = self.get(name).await?.map(|(a, _)| a);
        let phc = account.as_ref().map_or_else(|| decoy().to_string(), |a| a.password.clone());
        let p = password.to_string();
        let matches = blocking(move || password_matches(&phc, &p)).await?;
        Ok(account.filter(|a| matches && !a.disabled))
    }

    /// Opens a session for `account`: its token (for the cookie only).
    pub async fn open_session(&self, account: &str, now_ms: i64) -> PortResult<Sensitive<String>> {
        let token = clearway_core::crypto::new_api_key()?;
        let session = Session { account: account.to_string(), created_ms: now_ms, seen_ms: now_ms };
        self.state
            .write(vec![put(
                session_key(&token_hash(token.expose())),
                encode(&session)?,
                Condition::NotExists,
                Some(session.ends_ms() / 1000 + 1),
            )])
            .await?;
        Ok(token)
    }

    /// The live session of `token` and its account (enabled), noting the
    /// request as activity when `activity` (at most every
    /// [`SEEN_EVERY_MS`]). An ended session is deleted.
    pub async fn session(&self, token: &str, now_ms: i64, activity: bool) -> PortResult<Option<(Session, Account)>> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let key = session_key(&token_hash(token));
        let Some(item) = self.state.get(&key).await? else { return Ok(None) };
        let mut session: Session = decode(&item.value)?;
        let account = self.get(&session.account).await?.map(|(a, _)| a).filter(|a| !a.disabled);
        let Some(account) = account.filter(|_| session.live(now_ms)) else {
            let _ = self.state.write(vec![WriteOp::Delete { key, condition: Condition::None }]).await;
            return Ok(None);
        };
        if activity && now_ms - session.seen_ms >= SEEN_EVERY_MS {
            session.seen_ms = now_ms;
            // A lost race with another request of the same person is fine:
            // it wrote about the same time.
            let written = self
                .state
                .write(vec![put(
                    key,
                    encode(&session)?,
                    Condition::Version(item.version),
                    Some(session.ends_ms() / 1000 + 1),
                )])
                .await;
            match written {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::PreconditionFailed => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Some((session, account)))
    }

    /// Ends the session of `token`.
    pub async fn close_session(&self, token: &str) -> PortResult<()> {
        if token.is_empty() || token.len() > 128 {
            return Ok(());
        }
        self.state
            .write(vec![WriteOp::Delete { key: session_key(&token_hash(token)), condition: Condition::None }])
            .await
    }
}

/// The stored name of a session token.
fn token_hash(token: &str) -> String {
    clearway_core::crypto::sha256_hex(token.as_bytes())
}

/// The public id of a session (names it in audit events; reveals nothing).
pub fn session_id(token: &str) -> String {
    format!("session:{}", &token_hash(token)[..12])
}

fn put(key: Key, value: Bytes, condition: Condition, expires_at: Option<i64>) -> WriteOp {
    WriteOp::Put { key, value, expires_at, condition, owner: None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_ids() {
        for ok in ["alice", "ops.1", "a-b_c", "0day"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "Alice", ".hidden", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_password_matches_its_hash_only() {
        let phc = hash_password("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(password_matches(&phc, "correct horse battery"));
        assert!(!password_matches(&phc, "correct horse batterz"));
        assert!(!password_matches("not a hash", "correct horse battery"));
        assert!(!password_matches(decoy(), "correct horse battery"));
    }

    #[test]
    fn a_session_ends_idle_or_at_its_limit() {
        let s = Session { account: "a".into(), created_ms: 0, seen_ms: 0 };
        assert!(s.live(IDLE_MS - 1));
        assert!(!s.live(IDLE_MS));
        let busy = Session { account: "a".into(), created_ms: 0, seen_ms: ABSOLUTE_MS - 1000 };
        assert!(busy.live(ABSOLUTE_MS - 1));
        assert!(!busy.live(ABSOLUTE_MS), "eight hours, however busy");
        assert_eq!(busy.ends_ms(), ABSOLUTE_MS);
    }
}
