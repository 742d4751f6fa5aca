//! Administration (admins): partners, console accounts and API keys —
//! listed, made and ended. A password or key made here is shown once, in the answer to
//! the `POST` that made it (no URL holds it, nothing caches it), like the
//! command line's `console-users add` and `keys add`. Every change is an
//! audit event naming the account or credential, never its secret. Admins
//! cannot read PHI or the audit log: nothing here shows either.

use crate::accounts::{Account, Grants, valid_name};
use crate::{Console, Frame, SignedIn, audit, event, page_error, render};
use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use clearway_core::PartnerId;
use clearway_core::access::Role;
use clearway_core::audit::AuditEntity;
use clearway_core::error::ErrorKind;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage {
    pub frame: Frame,
    pub accounts: Vec<Account>,
    pub keys: Vec<clearway_core::partners::Credential>,
    pub partners: Vec<PartnerRow>,
    /// A secret just made, shown this once: (what, for whom, the secret).
    pub made: Option<(&'static str, String, String)>,
    pub message: Option<String>,
}

/// A partner as the admin screen lists it (no key, no webhook secret).
#[derive(Debug)]
pub struct PartnerRow {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub webhook: bool,
    pub created_at: String,
}

fn admin_only(who: &SignedIn) -> StatusCode {
    if who.account.role == Role::Admin { StatusCode::OK } else { StatusCode::FORBIDDEN }
}

async fn page_for(console: &Console, who: &SignedIn) -> Result<AdminPage, Response> {
    match (console.accounts.list().await, console.svc.partners.list_keys().await, console.svc.partners.list().await) {
        (Ok(accounts), Ok(keys), Ok(partners)) => Ok(AdminPage {
            frame: Frame::new("Administration", Some(who)),
            accounts,
            keys,
            partners: partners
                .into_iter()
                .map(|p| PartnerRow {
                    state: crate::partner_state(&p),
                    id: p.id.to_string(),
                    name: p.name.unwrap_or_default(),
                    webhook: p.webhook_url.is_some(),
                    created_at: p.created_at,
                })
                .collect(),
            made: None,
            message: None,
        }),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            tracing::warn!(error = %clearway_core::error::chain(&e), "console admin page unavailable");
            Err(page_error(StatusCode::SERVICE_UNAVAILABLE))
        }
    }
}

/// `GET /console/admin`.
pub async fn page(State(console): State<Arc<Console>>, who: SignedIn) -> Response {
    let status = admin_only(&who);
    if !audit(&console, event("console.admin", "R", who.actor(), status)).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if status != StatusCode::OK {
        return page_error(status);
    }
    match page_for(&console, &who).await {
        Ok(p) => render(p),
        Err(res) => res,
    }
}

#[derive(Debug, serde::Deserialize)]
pub struct AccountForm {
    name: String,
    role: String,
    #[serde(default)]
    phi_view: Option<String>,
    #[serde(default)]
    break_glass: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct KeyForm {
    principal: String,
    role: String,
    #[serde(default)]
    phi_view: Option<String>,
    #[serde(default)]
    break_glass: Option<String>,
    #[serde(default)]
    label: String,
}

/// Renders the admin page after a change: with the secret made, or a
/// message; `status` for a change refused.
async fn after(
    console: &Console,
    who: &SignedIn,
    status: StatusCode,
    made: Option<(&'static str, String, String)>,
    message: Option<String>,
) -> Response {
    match page_for(console, who).await {
        Ok(mut p) => {
            p.made = made;
            p.message = message;
            let mut res = render(p);
            *res.status_mut() = status;
            res
        }
        Err(res) => res,
    }
}

/// `POST /console/admin/accounts`: a new console account; its password is
/// shown once.
pub async fn add_account(State(console): State<Arc<Console>>, who: SignedIn, Form(f): Form<AccountForm>) -> Response {
    let name = f.name.trim().to_ascii_lowercase();
    let role = Role::parse(f.role.trim());
    let grants = Grants { phi_view: f.phi_view.is_some(), break_glass: f.break_glass.is_some() };
    let result = match (admin_only(&who), role) {
        (StatusCode::OK, Some(role)) => Some(console.accounts.add(&name, role, grants).await),
        (StatusCode::OK, None) => None,
        _ => {
            audit(&console, event("console.account_add", "C", who.actor(), StatusCode::FORBIDDEN)).await;
            return page_error(StatusCode::FORBIDDEN);
        }
    };
    let status = match &result {
        Some(Ok(_)) => StatusCode::OK,
        Some(Err(e)) if e.kind() == ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        Some(Err(e)) if e.kind() == ErrorKind::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        None => StatusCode::UNPROCESSABLE_ENTITY,
        Some(Err(_)) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut e = event("console.account_add", "C", who.actor(), status);
    if valid_name(&name) {
        e.entity.push(AuditEntity { kind: "account".into(), id: name.clone() });
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    match result {
        Some(Ok(password)) => {
            after(&console, &who, status, Some(("password of console account", name, password.expose().clone())), None)
                .await
        }
        Some(Err(e)) if status != StatusCode::SERVICE_UNAVAILABLE => {
            let m = if status == StatusCode::CONFLICT {
                "An account has that name.".to_string()
            } else {
                format!("Not made: {}.", e.operation())
            };
            after(&console, &who, status, None, Some(m)).await
        }
        None => after(&console, &who, status, None, Some("The role is operator, auditor or admin.".into())).await,
        Some(Err(_)) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `POST /console/admin/accounts/{name}/disable`.
pub async fn disable_account(State(console): State<Arc<Console>>, who: SignedIn, Path(name): Path<String>) -> Response {
    let status = admin_only(&who);
    let outcome = if status != StatusCode::OK {
        status
    } else if name == who.account.name {
        // Not oneself: an admin who locks themself out needs the host.
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        match console.accounts.disable(&name).await {
            Ok(()) => StatusCode::SEE_OTHER,
            Err(e) if e.kind() == ErrorKind::NotFound => StatusCode::NOT_FOUND,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    };
    let mut e = event("console.account_disable", "U", who.actor(), outcome);
    if valid_name(&name) {
        e.entity.push(AuditEntity { kind: "account".into(), id: name });
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    match outcome {
        StatusCode::SEE_OTHER => Redirect::to("/console/admin").into_response(),
        StatusCode::UNPROCESSABLE_ENTITY => {
            after(&console, &who, outcome, None, Some("You cannot disable your own account here.".into())).await
        }
        other => page_error(other),
    }
}

/// `POST /console/admin/keys`: a new API key; shown once.
pub async fn add_key(State(console): State<Arc<Console>>, who: SignedIn, Form(f): Form<KeyForm>) -> Response {
    let status = admin_only(&who);
    if status != StatusCode::OK {
        audit(&console, event("console.key_add", "C", who.actor(), status)).await;
        return page_error(status);
    }
    let principal = PartnerId::new(f.principal.trim());
    let role = Role::parse(f.role.trim());
    let label = Some(f.label.trim().chars().take(100).collect::<String>()).filter(|l| !l.is_empty());
    let grants = clearway_core::partners::NewCredential {
        phi_view: f.phi_view.is_some(),
        break_glass: f.break_glass.is_some(),
        label,
    };
    let result = match (&principal, role) {
        (Ok(p), Some(role)) => Some(console.svc.partners.add_key(p, role, grants).await),
        _ => None,
    };
    let status = match &result {
        Some(Ok(_)) => StatusCode::OK,
        Some(Err(e)) if matches!(e.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        None => StatusCode::UNPROCESSABLE_ENTITY,
        Some(Err(_)) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut e = event("console.key_add", "C", who.actor(), status);
    if let Ok(p) = &principal {
        e.entity.push(AuditEntity { kind: "principal".into(), id: p.to_string() });
    }
    if let Some(Ok((id, _))) = &result {
        e.entity.push(AuditEntity { kind: "key".into(), id: id.clone() });
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    match result {
        Some(Ok((id, key))) => {
            let whose = format!("{} ({id})", f.principal.trim());
            after(&console, &who, status, Some(("API key", whose, key.expose().clone())), None).await
        }
        Some(Err(e)) if status == StatusCode::UNPROCESSABLE_ENTITY => {
            after(&console, &who, status, None, Some(format!("Not made: {}.", e.operation()))).await
        }
        None => {
            let m = "The holder is a partner or person id and the role submitter, operator, auditor or admin.";
            after(&console, &who, status, None, Some(m.into())).await
        }
        Some(Err(_)) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `POST /console/admin/keys/{id}/revoke`: at once in this process,
/// within seconds in others.
pub async fn revoke_key(State(console): State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    let status = admin_only(&who);
    let outcome = if status != StatusCode::OK {
        status
    } else {
        match console.svc.partners.revoke_key(&id).await {
            Ok(_) => StatusCode::SEE_OTHER,
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput) => StatusCode::NOT_FOUND,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    };
    let mut e = event("console.key_revoke", "U", who.actor(), outcome);
    if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        e.entity.push(AuditEntity { kind: "key".into(), id });
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if outcome == StatusCode::SEE_OTHER {
        return Redirect::to("/console/admin").into_response();
    }
    page_error(outcome)
}

#[derive(Debug, serde::Deserialize)]
pub struct PartnerForm {
    id: String,
    #[serde(default)]
    name: String,
}

/// `POST /console/admin/partners`: a new trading partner, with its first
/// data key and a submitter's API key shown once (as `clearway partners
/// add` prints it).
pub async fn add_partner(State(console): State<Arc<Console>>, who: SignedIn, Form(f): Form<PartnerForm>) -> Response {
    let status = admin_only(&who);
    if status != StatusCode::OK {
        audit(&console, event("console.partner_add", "C", who.actor(), status)).await;
        return page_error(status);
    }
    let id = PartnerId::new(f.id.trim());
    let name = Some(f.name.trim().chars().take(100).collect::<String>()).filter(|n| !n.is_empty());
    let result = match &id {
        Ok(id) => Some(console.svc.partners.add(id, name.as_deref(), false).await),
        Err(_) => None,
    };
    let status = match &result {
        Some(Ok(_)) => StatusCode::OK,
        Some(Err(e))
            if matches!(
                e.kind(),
                ErrorKind::InvalidInput | ErrorKind::AlreadyExists | ErrorKind::PreconditionFailed
            ) =>
        {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        None => StatusCode::UNPROCESSABLE_ENTITY,
        Some(Err(_)) => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut e = event("console.partner_add", "C", who.actor(), status);
    if let Ok(p) = &id {
        e.entity.push(AuditEntity { kind: "partner".into(), id: p.to_string() });
        e.tenant = Some(p.to_string());
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    match result {
        Some(Ok(key)) => {
            let whose = f.id.trim().to_string();
            after(&console, &who, status, Some(("partner's API key", whose, key.expose().clone())), None).await
        }
        Some(Err(_)) if status == StatusCode::UNPROCESSABLE_ENTITY => {
            after(&console, &who, status, None, Some("Not made: that partner exists already.".into())).await
        }
        None => {
            let m = "A partner id is 1 to 64 characters: letters, digits, dots, dashes and underscores.";
            after(&console, &who, status, None, Some(m.into())).await
        }
        Some(Err(_)) => page_error(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// `POST /console/admin/partners/{id}/revoke`: the partner's keys stop
/// working (its records stay; `clearway keys shred` erases them).
pub async fn revoke_partner(State(console): State<Arc<Console>>, who: SignedIn, Path(id): Path<String>) -> Response {
    let status = admin_only(&who);
    let partner = PartnerId::new(&id);
    let outcome = match (&partner, status) {
        (_, s) if s != StatusCode::OK => s,
        (Ok(p), _) => match console.svc.partners.revoke(p).await {
            Ok(()) => StatusCode::SEE_OTHER,
            Err(e) if e.kind() == ErrorKind::NotFound => StatusCode::NOT_FOUND,
            Err(_) => StatusCode::SERVICE_UNAVAILABLE,
        },
        (Err(_), _) => StatusCode::NOT_FOUND,
    };
    let mut e = event("console.partner_revoke", "U", who.actor(), outcome);
    if let Ok(p) = &partner {
        e.entity.push(AuditEntity { kind: "partner".into(), id: p.to_string() });
        e.tenant = Some(p.to_string());
    }
    if !audit(&console, e).await {
        return page_error(StatusCode::SERVICE_UNAVAILABLE);
    }
    if outcome == StatusCode::SEE_OTHER {
        return Redirect::to("/console/admin").into_response();
    }
    page_error(outcome)
}
