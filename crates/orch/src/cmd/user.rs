//! `orch user add|revoke|list`: the people who act on items under their own name.
//!
//! A token is printed once, by `add`, and never again: orch keeps only its SHA-256. Must never:
//! print, log or store a token anywhere else.

use serde_json::json;

use crate::cli::{JsonArgs, UserAddArgs, UserNameArgs};
use crate::context::Context;
use crate::error::UsageError;

pub async fn add(ctx: &Context, a: UserAddArgs) -> anyhow::Result<i32> {
    let name = a.name.trim().to_owned();
    orch_engine::people::valid_person_name(&name).map_err(UsageError)?;
    if name == ctx.settings.service_name {
        return Err(UsageError(format!(
            "`{name}` is the name the automation token acts under ([server] service_name); pick another"
        ))
        .into());
    }
    for account in &a.tracker_ids {
        orch_engine::people::valid_tracker_account(account).map_err(UsageError)?;
    }
    let store = ctx.engine.store();
    let active = store
        .list_people()
        .await?
        .into_iter()
        .any(|p| p.name == name && p.is_active());
    if active && a.tracker_ids.is_empty() {
        return Err(UsageError(format!(
            "`{name}` is already a person with a token; `orch user revoke {name}` first to give them a new one, or pass --tracker-id to link an account"
        ))
        .into());
    }
    let token = if active {
        None
    } else {
        let token = orch_server::people::new_token()
            .map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
        store
            .add_person(&name, &orch_server::people::token_sha256(&token))
            .await?;
        Some(token)
    };
    for account in &a.tracker_ids {
        store
            .link_tracker_account(&name, account)
            .await
            .map_err(|e| UsageError(format!("linking {account}: {e}")))?;
        println!("{name} is the tracker account {account}");
    }
    if let Some(token) = token {
        println!("Added {name}. Their API token (shown once, orch keeps only its hash):");
        println!("{token}");
        println!(
            "It opens the API (Authorization: Bearer <token>) and the dashboard's login as {name}."
        );
    }
    Ok(0)
}

pub async fn revoke(ctx: &Context, a: UserNameArgs) -> anyhow::Result<i32> {
    let name = a.name.trim();
    if ctx.engine.store().revoke_person(name).await? {
        println!("Revoked {name}: their token and sessions open nothing any more.");
        Ok(0)
    } else {
        Err(UsageError(format!(
            "no active person `{name}`; `orch user list` shows them"
        ))
        .into())
    }
}

pub async fn list(ctx: &Context, a: JsonArgs) -> anyhow::Result<i32> {
    let people = ctx.engine.store().list_people().await?;
    if a.json {
        let rows: Vec<_> = people
            .iter()
            .map(|p| {
                json!({
                    "name": p.name, "active": p.is_active(), "created_at": p.created_at,
                    "revoked_at": p.revoked_at, "tracker_accounts": p.tracker_accounts,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if people.is_empty() {
        println!("No people yet; `orch user add NAME` adds one.");
    }
    for p in &people {
        println!(
            "{:<20} {:<8} {}",
            p.name,
            if p.is_active() { "active" } else { "revoked" },
            p.tracker_accounts.join(", ")
        );
    }
    Ok(0)
}
