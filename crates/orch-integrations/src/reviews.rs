//! People's reviews of a pull request, read as one list of [`Review`]s from each forge's own
//! shapes (GitHub `APPROVED` / `CHANGES_REQUESTED` / `COMMENTED` / `DISMISSED`; Gitea `APPROVED`
//! / `REQUEST_CHANGES` / `COMMENT`, with `dismissed` and `stale` flags), each with the commit it
//! was given on and its comments on the diff. A state orch does not know is
//! [`ReviewState::Other`]: it never approves and never sends back.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    Approved,
    ChangesRequested,
    Commented,
    /// Dismissed, pending, or a state orch does not know.
    Other,
}

/// One comment of a review on a line of the diff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewComment {
    pub path: String,
    pub line: Option<u64>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub id: u64,
    /// The reviewer's account on the forge: its numeric id (stable) and login (for people).
    pub user_id: u64,
    pub login: String,
    pub state: ReviewState,
    /// The commit the review was given on.
    pub commit_id: String,
    pub body: String,
    pub comments: Vec<ReviewComment>,
}

/// A review as GitHub (`pulls/{n}/reviews`) or Gitea (`pulls/{n}/reviews`) answers it; its
/// comments are added by the caller.
pub(crate) fn review(value: &Value) -> Option<Review> {
    let state = match value.get("state").and_then(Value::as_str).unwrap_or("") {
        _ if value.get("dismissed").and_then(Value::as_bool) == Some(true) => ReviewState::Other,
        "APPROVED" => ReviewState::Approved,
        "CHANGES_REQUESTED" | "REQUEST_CHANGES" => ReviewState::ChangesRequested,
        "COMMENTED" | "COMMENT" => ReviewState::Commented,
        _ => ReviewState::Other,
    };
    Some(Review {
        id: value.get("id").and_then(Value::as_u64)?,
        user_id: value.pointer("/user/id").and_then(Value::as_u64)?,
        login: value
            .pointer("/user/login")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        state,
        commit_id: value
            .get("commit_id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        body: value
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        comments: Vec::new(),
    })
}

/// A review comment: GitHub's `line` (else `original_line`), Gitea's `position` (else
/// `original_position`); 0 means none.
pub(crate) fn comment(value: &Value) -> ReviewComment {
    let line = ["line", "original_line", "position", "original_position"]
        .iter()
        .find_map(|k| value.get(*k).and_then(Value::as_u64).filter(|n| *n > 0));
    ReviewComment {
        path: value
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        line,
        body: value
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn both_forges_words_map_and_dismissed_reviews_count_for_nothing() {
        let of = |v: Value| review(&v).map(|r| r.state);
        let user = json!({ "id": 7, "login": "ada" });
        assert_eq!(
            of(json!({ "id": 1, "user": user, "state": "CHANGES_REQUESTED" })),
            Some(ReviewState::ChangesRequested)
        );
        assert_eq!(
            of(json!({ "id": 1, "user": user, "state": "REQUEST_CHANGES" })),
            Some(ReviewState::ChangesRequested)
        );
        assert_eq!(
            of(json!({ "id": 1, "user": user, "state": "APPROVED", "dismissed": true })),
            Some(ReviewState::Other)
        );
        assert_eq!(
            of(json!({ "id": 1, "user": user, "state": "PENDING" })),
            Some(ReviewState::Other)
        );
        assert_eq!(
            of(json!({ "id": 1, "state": "APPROVED" })),
            None,
            "no reviewer"
        );
    }

    #[test]
    fn comment_lines_come_from_either_forges_field() {
        assert_eq!(
            comment(&json!({ "path": "a.rs", "line": 12, "body": "x" })).line,
            Some(12)
        );
        assert_eq!(
            comment(&json!({ "path": "a.rs", "position": 0, "original_position": 9 })).line,
            Some(9)
        );
    }
}
