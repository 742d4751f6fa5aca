//! Who may do what: the four roles a credential carries, the HL7 v3
//! purpose-of-use codes a request may declare, and the authenticated
//! principal every channel hands to its handlers. The per-route policy
//! (which role may call which route, for which purposes) is the HTTP
//! layer's; its table is `docs/specs/authorization.md`.

use crate::PartnerId;
use crate::ports::{Condition, Key, StateStore, Table, WriteOp};
use crate::records::{PartnerRecord, decode_json, encode_json};
use crate::{ErrorKind, PortError, PortResult};
use std::sync::Arc;

/// What a credential may do. Default deny: a route not granted to a role
/// is refused to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A trading partner: submits and reads its own tenant's data only.
    Submitter,
    /// Metadata of every tenant and dead-letter replay; PHI bodies only with
    /// a `phi_view` grant or under break-glass.
    Operator,
    /// The audit trail: search, proofs, verification, exports, the
    /// break-glass review queue. No PHI bodies.
    Auditor,
    /// Partners, credentials and roles. Reads neither PHI nor the audit log.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Submitter, Role::Operator, Role::Auditor, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Submitter => "submitter",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The HL7 v3 PurposeOfUse (ActReason) codes Clearway accepts in
/// `X-Purpose-Of-Use`. Any other value is refused (`400`).
pub const PURPOSES: &[&str] = &[
    "TREAT",
    "ETREAT",
    "HPAYMT",
    "CLMATTCH",
    "COVAUTH",
    "COVERAGE",
    "ELIGDTRM",
    "ELIGVER",
    "ENROLLM",
    "REMITADV",
    "HOPERAT",
    "HCOMPL",
    "HSYSADMIN",
    "HQUALIMP",
    "RECORDMGT",
    "FRAUD",
    "PATRQT",
    "PUBHLTH",
    "HRESCH",
    "BTG",
];

/// `code` if it is one of [`PURPOSES`].
pub fn purpose(code: &str) -> Option<&'static str> {
    let code = code.trim();
    PURPOSES.iter().copied().find(|p| *p == code)
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The partner id (submitters) or the person's or service's name.
    pub id: String,
    pub role: Role,
    /// A submitter's tenant.
    pub partner: Option<Arc<PartnerRecord>>,
    /// The credential's public id (12 hex digits of its SHA-256): names the
    /// key in audit events, reveals nothing of it.
    pub credential: String,
    /// May read PHI bodies (operators).
    pub phi_view: bool,
    /// May declare break-glass (operators).
    pub break_glass: bool,
}

impl Principal {
    /// The tenant a submitter acts for.
    pub fn tenant(&self) -> Option<&PartnerId> {
        self.partner.as_ref().filter(|_| self.role == Role::Submitter).map(|p| &p.id)
    }
}

// ------------------------------------------------------------ break-glass --

/// Most a break-glass elevation lasts.
pub const BREAK_GLASS_MAX_MINUTES: u32 = 60;
/// Least a justification says, in characters.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;
/// Most a justification says, in characters.
pub const MAX_JUSTIFICATION_CHARS: usize = 2000;
/// Why someone broke the glass.
pub const BREAK_GLASS_REASONS: &[&str] = &["incident", "patient-safety", "legal-hold", "partner-request"];

/// A break-glass elevation: an eligible operator's short-lived right to
/// read PHI bodies, justified, every use of it audited and reviewed.
/// (Table::Partners, pk `breakglass`, sk its id: newest last.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakGlass {
    /// UUIDv7.
    pub id: String,
    pub principal: String,
    pub credential: String,
    pub reason: String,
    /// The operator's own words, for the reviewing auditor: kept here, never
    /// in an audit event.
    pub justification: String,
    pub started_at_ms: i64,
    pub expires_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<Review>,
}

/// An auditor's review of a break-glass elevation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    pub by: String,
    pub at_ms: i64,
    /// `appropriate` or `inappropriate`.
    pub finding: String,
}

impl BreakGlass {
    pub fn key(id: &str) -> Key {
        Key::new(Table::Partners, "breakglass", id)
    }
    /// The marker of a credential's elevation in force (expires with it).
    pub fn active_key(credential: &str) -> Key {
        Key::new(Table::Partners, "breakglass-active", credential)
    }
    /// In force at `now_ms`.
    pub fn active(&self, now_ms: i64) -> bool {
        self.ended_at_ms.is_none() && now_ms < self.expires_at_ms
    }
}

/// Why a break-glass request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakGlassRefusal {
    NotEligible,
    Reason,
    Justification,
    Minutes,
}

impl BreakGlassRefusal {
    pub fn detail(&self) -> String {
        match self {
            BreakGlassRefusal::NotEligible => "this credential may not break the glass".into(),
            BreakGlassRefusal::Reason => format!("reason is one of {}", BREAK_GLASS_REASONS.join(", ")),
            BreakGlassRefusal::Justification => {
                format!("justification is {MIN_JUSTIFICATION_CHARS} to {MAX_JUSTIFICATION_CHARS} characters")
            }
            BreakGlassRefusal::Minutes => format!("minutes is 1 to {BREAK_GLASS_MAX_MINUTES}"),
        }
    }
}

/// Checks a break-glass request and makes its session (not yet stored).
pub fn break_glass(
    who: &Principal,
    reason: &str,
    justification: &str,
    minutes: u32,
    now_ms: i64,
) -> Result<BreakGlass, BreakGlassRefusal> {
    if who.role != Role::Operator || !who.break_glass {
        return Err(BreakGlassRefusal::NotEligible);
    }
    if !BREAK_GLASS_REASONS.contains(&reason) {
        return Err(BreakGlassRefusal::Reason);
    }
    let n = justification.trim().chars().count();
    if !(MIN_JUSTIFICATION_CHARS..=MAX_JUSTIFICATION_CHARS).contains(&n) {
        return Err(BreakGlassRefusal::Justification);
    }
    if !(1..=BREAK_GLASS_MAX_MINUTES).contains(&minutes) {
        return Err(BreakGlassRefusal::Minutes);
    }
    Ok(BreakGlass {
        id: uuid::Uuid::now_v7().to_string(),
        principal: who.id.clone(),
        credential: who.credential.clone(),
        reason: reason.into(),
        justification: justification.trim().into(),
        started_at_ms: now_ms,
        expires_at_ms: now_ms + i64::from(minutes) * 60_000,
        ended_at_ms: None,
        review: None,
    })
}

/// Stores a new session and its marker, durably.
pub async fn store_break_glass(state: &dyn StateStore, s: &BreakGlass) -> PortResult<()> {
    state
        .write(vec![
            WriteOp::Put {
                key: BreakGlass::key(&s.id),
                value: encode_json(s)?,
                expires_at: None,
                condition: Condition::NotExists,
                owner: None,
            },
            WriteOp::Put {
                key: BreakGlass::active_key(&s.credential),
                value: encode_json(&s.id)?,
                expires_at: Some((s.expires_at_ms + 999) / 1000),
                // One elevation per credential at a time, even when two
                // requests race.
                condition: Condition::NotExists,
                owner: None,
            },
        ])
        .await
}

/// The session in force for a credential, if any.
pub async fn active_break_glass(
    state: &dyn StateStore,
    credential: &str,
    now_ms: i64,
) -> PortResult<Option<BreakGlass>> {
    let Some(marker) = state.get(&BreakGlass::active_key(credential)).await? else { return Ok(None) };
    let id: String = decode_json(&marker.value)?;
    Ok(get_break_glass(state, &id).await?.map(|(s, _)| s).filter(|s| s.active(now_ms)))
}

pub async fn get_break_glass(state: &dyn StateStore, id: &str) -> PortResult<Option<(BreakGlass, u64)>> {
    match state.get(&BreakGlass::key(id)).await? {
        Some(item) => Ok(Some((decode_json(&item.value)?, item.version))),
        None => Ok(None),
    }
}

/// Ends a credential's session in force; returns it, ended.
pub async fn end_break_glass(state: &dyn StateStore, credential: &str, now_ms: i64) -> PortResult<Option<BreakGlass>> {
    let Some(s) = active_break_glass(state, credential, now_ms).await? else { return Ok(None) };
    let Some((mut s, version)) = get_break_glass(state, &s.id).await? else { return Ok(None) };
    s.ended_at_ms = Some(now_ms);
    state
        .write(vec![
            WriteOp::Put {
                key: BreakGlass::key(&s.id),
                value: encode_json(&s)?,
                expires_at: None,
                condition: Condition::Version(version),
                owner: None,
            },
            WriteOp::Delete { key: BreakGlass::active_key(credential), condition: Condition::None },
        ])
        .await?;
    Ok(Some(s))
}

/// Sessions, oldest first; `unreviewed` keeps those no auditor has
/// reviewed yet.
pub async fn list_break_glass(state: &dyn StateStore, unreviewed: bool, limit: usize) -> PortResult<Vec<BreakGlass>> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < limit {
        let page = state.query(Table::Partners, "breakglass", after.as_deref(), 1000).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, item) in page {
            let s: BreakGlass = decode_json(&item.value)?;
            if !unreviewed || s.review.is_none() {
                out.push(s);
            }
        }
    }
    out.truncate(limit);
    Ok(out)
}

/// Records an auditor's review; `None` if there is no such session. A
/// session still in force, or reviewed already, cannot be reviewed
/// (`PreconditionFailed`); nobody reviews their own (`InvalidInput`).
pub async fn review_break_glass(
    state: &dyn StateStore,
    id: &str,
    review: Review,
    now_ms: i64,
) -> PortResult<Option<BreakGlass>> {
    let Some((mut s, version)) = get_break_glass(state, id).await? else { return Ok(None) };
    if s.active(now_ms) {
        return Err(PortError::new(ErrorKind::PreconditionFailed, "the elevation is still in force"));
    }
    if s.review.is_some() {
        return Err(PortError::new(ErrorKind::PreconditionFailed, "the elevation was reviewed already"));
    }
    if review.by == s.principal {
        return Err(PortError::invalid_input("nobody reviews their own elevation"));
    }
    s.review = Some(review);
    state
        .write(vec![WriteOp::Put {
            key: BreakGlass::key(id),
            value: encode_json(&s)?,
            expires_at: None,
            condition: Condition::Version(version),
            owner: None,
        }])
        .await?;
    Ok(Some(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_purposes_parse_round_trip() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(purpose(" HPAYMT "), Some("HPAYMT"));
        assert_eq!(purpose("hpaymt"), None);
        assert_eq!(purpose("NOPE"), None);
    }

    fn operator(eligible: bool) -> Principal {
        Principal {
            id: "ops-ann".into(),
            role: Role::Operator,
            partner: None,
            credential: "0123456789ab".into(),
            phi_view: false,
            break_glass: eligible,
        }
    }

    #[test]
    fn break_glass_needs_eligibility_a_reason_a_justification_and_at_most_an_hour() {
        let why = "partner reports claims lost since 09:00";
        let s = break_glass(&operator(true), "incident", why, 30, 1_000).unwrap();
        assert_eq!(s.expires_at_ms, 1_000 + 30 * 60_000);
        assert!(s.active(1_000) && !s.active(s.expires_at_ms));
        assert_eq!(break_glass(&operator(false), "incident", why, 30, 0), Err(BreakGlassRefusal::NotEligible));
        let mut auditor = operator(true);
        auditor.role = Role::Auditor;
        assert_eq!(break_glass(&auditor, "incident", why, 30, 0), Err(BreakGlassRefusal::NotEligible));
        assert_eq!(break_glass(&operator(true), "curiosity", why, 30, 0), Err(BreakGlassRefusal::Reason));
        assert_eq!(
            break_glass(&operator(true), "incident", "  too short, really ", 30, 0),
            Err(BreakGlassRefusal::Justification)
        );
        assert_eq!(break_glass(&operator(true), "incident", why, 61, 0), Err(BreakGlassRefusal::Minutes));
        assert_eq!(break_glass(&operator(true), "incident", why, 0, 0), Err(BreakGlassRefusal::Minutes));
    }
}
