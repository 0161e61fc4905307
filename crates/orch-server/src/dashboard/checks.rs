//! The item page's "External checks" section: what the forge last reported on the commit a
//! promotion judged (the latest `checks.read` event), one row per check with its state and
//! link, and the reviews of its pull request as the deploy last read them (`reviews.read`),
//! marking those that sent the item back (`review.returned`). The forge's words are escaped, and only `http(s)` links become links: a status's
//! `target_url` is whatever the CI that posted it wrote.

use std::fmt::Write as _;

use orch_store::EventRecord;
use serde_json::Value;

use super::html::esc;

pub(crate) fn section(out: &mut String, events: &[EventRecord]) {
    checks(out, events);
    reviews(out, events);
}

fn reviews(out: &mut String, events: &[EventRecord]) {
    let Some(read) = orch_engine::ReviewsShown::last(events) else {
        return;
    };
    let _ = write!(
        out,
        "<section><h2>Reviews</h2><p class=\"meta\">pull request #{}</p><table class=\"checks\">\
         <thead><tr><th>reviewer</th><th>review</th><th>on</th><th>comments</th></tr></thead><tbody>",
        read.pull
    );
    for r in &read.reviews {
        let class = match r.state.as_str() {
            "approved" => "check-success",
            "changes-requested" => "check-failure",
            _ => "check-pending",
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"{class}\">{}{}</td><td><code>{}</code></td><td>{}</td></tr>",
            esc(&r.by),
            esc(&r.state),
            r.note,
            esc(r.commit.get(..8).unwrap_or(&r.commit)),
            r.comments
        );
    }
    out.push_str("</tbody></table></section>");
}

fn checks(out: &mut String, events: &[EventRecord]) {
    let Some(read) = events
        .iter()
        .rev()
        .find(|e| e.kind == orch_engine::events::CHECKS_READ)
    else {
        return;
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let sha = text(&read.data, "sha");
    let _ = write!(
        out,
        "<section><h2>External checks</h2><p class=\"meta\">on {} · {}</p>\
         <table class=\"checks\"><thead><tr><th>check</th><th>state</th><th>description</th>\
         </tr></thead><tbody>",
        esc(sha.get(..8).unwrap_or(&sha)),
        esc(&text(&read.data, "verdict"))
    );
    for check in read.data["checks"].as_array().into_iter().flatten() {
        let name = text(check, "name");
        let url = text(check, "url");
        let name_cell = if url.starts_with("https://") || url.starts_with("http://") {
            format!("<a href=\"{}\">{}</a>", esc(&url), esc(&name))
        } else {
            esc(&name).to_string()
        };
        let _ = write!(
            out,
            "<tr><td>{name_cell}</td><td class=\"check-{state}\">{forge_state}</td><td>{}</td></tr>",
            esc(&text(check, "description")),
            state = esc(&text(check, "state")),
            forge_state = esc(&text(check, "forge_state")),
        );
    }
    out.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(checks: Value) -> EventRecord {
        EventRecord {
            item: orch_core::ItemId::parse("WEB-1").expect("id"),
            seq: 1,
            at: 0,
            kind: orch_engine::events::CHECKS_READ.into(),
            run_id: Some(1),
            data: json!({ "sha": "0123456789abcdef", "verdict": "failed", "checks": checks }),
        }
    }

    #[test]
    fn rows_link_only_http_urls_and_escape_the_forges_words() {
        let mut out = String::new();
        section(
            &mut out,
            &[read(json!([
                { "name": "test", "state": "failure", "forge_state": "failure",
                  "description": "<b>2 failed</b>", "url": "https://ci.example/1" },
                { "name": "evil", "state": "success", "forge_state": "success",
                  "description": "", "url": "javascript:alert(1)" },
            ]))],
        );
        assert!(
            out.contains("<a href=\"https://ci.example/1\">test</a>"),
            "{out}"
        );
        assert!(out.contains("&lt;b&gt;2 failed"), "{out}");
        assert!(!out.contains("javascript:"), "{out}");
        assert!(out.contains("on 01234567 · failed"), "{out}");
    }

    #[test]
    fn every_review_is_listed_escaped_and_those_that_sent_the_item_back_or_do_not_count_say_so() {
        let mut out = String::new();
        let mut read_reviews = read(json!([]));
        read_reviews.kind = orch_engine::events::REVIEWS_READ.into();
        read_reviews.data = json!({ "pull": 3, "reviews": [
            { "id": 5, "by": "<ada>", "state": "changes-requested", "commit": "0123456789ab",
              "comments": 2 },
            { "id": 6, "by": "bob", "state": "approved", "commit": "0123456789ab", "comments": 0 },
            { "id": 7, "by": "mallory", "state": "changes-requested", "commit": "0123456789ab",
              "comments": 1, "counted": false },
        ]});
        let mut returned = read(json!([]));
        returned.kind = orch_engine::events::REVIEW_RETURNED.into();
        returned.data = json!({ "review": 5, "by": "<ada>", "pull": 3 });
        section(&mut out, &[read_reviews, returned]);
        assert!(out.contains("&lt;ada&gt;"), "{out}");
        assert!(
            out.contains("changes-requested (sent back to development)"),
            "{out}"
        );
        assert!(out.contains(">approved</td>"), "{out}");
        assert!(out.contains("pull request #3"), "{out}");
        assert!(
            out.contains("changes-requested (not counted: not an orch person)"),
            "{out}"
        );
    }

    #[test]
    fn nothing_without_a_reading() {
        let mut out = String::new();
        section(&mut out, &[]);
        assert!(out.is_empty());
    }
}
