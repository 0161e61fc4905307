//! An API token: shown by `Debug` and `Display` as `***`, exposed only where a header is built.

use std::fmt;

#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token; blank is refused so a missing environment variable is noticed at start-up.
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        let value = value.trim();
        (!value.is_empty()).then(|| Token(value.to_owned()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = Token::new("plane_api_abcdef").expect("token");
        assert_eq!(format!("{token:?}"), "Token(***)");
        assert!(Token::new("  ").is_none());
    }
}
