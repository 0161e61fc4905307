//! Who a request comes from: the global API token (automation, acting under the server's service
//! name) or a person's own token, looked up by its SHA-256 in the store.
//!
//! A person's token is 32 bytes from the operating system's random source, shown once by
//! `orch user add` and stored only as its SHA-256. A plain hash is enough for such a token: a
//! slow password hash protects secrets people choose, which can be guessed; 256 random bits
//! cannot be guessed, so the hash cannot be reversed, and looking a token up by its hash is one
//! index probe that tells a timing observer nothing about the token itself.
//!
//! Must never: log, return or store a token; take a name from anywhere but a token or a
//! session.

use orch_engine::Actor;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// What every person token starts with, so a leaked one is recognisable in a scan.
pub const TOKEN_PREFIX: &str = "orch_";

/// A new person token: [`TOKEN_PREFIX`] and 64 hex digits of fresh randomness.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes)?;
    Ok(format!("{TOKEN_PREFIX}{}", hex::encode(bytes)))
}

/// The hex SHA-256 of a token: what the store keeps.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether anyone can log in or call the API: a global token, or an active person.
pub(crate) async fn credentials_exist(state: &AppState) -> Result<bool, ApiError> {
    if state.api_token().is_some() {
        return Ok(true);
    }
    Ok(state.engine().store().has_people().await?)
}

/// The actor a presented token names, or `None` when it names nobody (wrong or revoked).
pub(crate) async fn actor_of_token(
    state: &AppState,
    presented: &str,
) -> Result<Option<Actor>, ApiError> {
    let presented = presented.trim();
    if presented.is_empty() {
        return Ok(None);
    }
    // Constant time, so the comparison does not tell an attacker how much of a guess was right.
    if let Some(global) = state.api_token()
        && bool::from(presented.as_bytes().ct_eq(global.expose()))
    {
        return Ok(Some(Actor::Service(state.service_name().to_owned())));
    }
    let person = state
        .engine()
        .store()
        .person_by_token(&token_sha256(presented))
        .await?;
    Ok(person.map(|p| Actor::Person(p.name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, b) = (new_token().expect("random"), new_token().expect("random"));
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        let hash = token_sha256(&a);
        assert_eq!(hash.len(), 64);
        assert!(!hash.contains(&a[TOKEN_PREFIX.len()..]));
        assert_eq!(hash, token_sha256(&a), "the same token, the same hash");
    }
}
