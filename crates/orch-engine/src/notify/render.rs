//! The bodies receivers get, rendered once when a notification is recorded (its signature then
//! covers the same bytes on every retry). Item titles and reasons are text from whoever filed the
//! item or from a failing tool: Slack's control characters in them are escaped, so a title cannot
//! ping `<!channel>` or forge a link.

use orch_store::{EventRecord, ItemRecord};
use serde_json::json;

use super::NotifyFormat;
use super::mapping::Notice;

/// What a body is made from.
pub(crate) struct Source<'a> {
    pub delivery_id: &'a str,
    pub item: &'a ItemRecord,
    pub event: &'a EventRecord,
    pub notice: &'a Notice,
    /// The dashboard's base URL (`[server] public_url`), when configured.
    pub public_url: Option<&'a str>,
}

impl Source<'_> {
    /// The item's dashboard page.
    fn item_url(&self) -> Option<String> {
        self.public_url
            .map(|base| format!("{}/items/{}", base.trim_end_matches('/'), self.item.id))
    }

    fn line(&self) -> String {
        format!(
            "{} {} ({})",
            self.item.id, self.notice.summary, self.item.title
        )
    }
}

pub(crate) fn body(format: NotifyFormat, source: &Source<'_>) -> String {
    match format {
        NotifyFormat::Json => json_body(source),
        NotifyFormat::Slack => slack_body(source),
    }
}

fn json_body(s: &Source<'_>) -> String {
    json!({
        "id": s.delivery_id,
        "event": s.notice.event.as_str(),
        "project": s.item.project.as_str(),
        "item": s.item.id.as_str(),
        "title": s.item.title,
        "stage": s.item.progress.stage.as_str(),
        "text": s.line(),
        "details": s.notice.details,
        "url": s.item_url(),
        "at": rfc3339(s.event.at),
        "event_seq": s.event.seq,
    })
    .to_string()
}

fn slack_body(s: &Source<'_>) -> String {
    let summary = escape(&s.notice.summary);
    let title = escape(&s.item.title);
    let text = match s.item_url() {
        // Slack's link syntax: <url|label>.
        Some(url) => format!("orch: <{url}|{}> {summary} ({title})", s.item.id),
        None => format!("orch: {} {summary} ({title})", s.item.id),
    };
    json!({ "text": text }).to_string()
}

/// Slack's three control characters, as its message formatting documents them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NotifyEvent;
    use orch_core::pipeline::{DEFAULT_PIPELINE_TOML, Pipeline};
    use serde_json::Value;

    fn item(title: &str) -> ItemRecord {
        let pipeline = Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("pipeline");
        ItemRecord {
            id: orch_core::ItemId::parse("WEB-3").expect("id"),
            project: orch_core::ProjectId::parse("web").expect("project"),
            title: title.to_owned(),
            body: String::new(),
            progress: orch_core::transition::start(&pipeline).progress,
            blocked_reason: None,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn render(format: NotifyFormat, title: &str, public_url: Option<&str>) -> Value {
        let item = item(title);
        let event = EventRecord {
            item: item.id.clone(),
            seq: 9,
            at: 1_700_000_000_000,
            kind: "item.blocked".into(),
            run_id: None,
            data: json!({ "reason": "x < y & <!channel>" }),
        };
        let notice = super::super::mapping::notice(&event).expect("notice");
        let source = Source {
            delivery_id: "web/ops/WEB-3/9",
            item: &item,
            event: &event,
            notice: &notice,
            public_url,
        };
        serde_json::from_str(&body(format, &source)).expect("JSON")
    }

    #[test]
    fn slack_gets_one_escaped_line_with_a_link_when_the_url_is_known() {
        let with = render(
            NotifyFormat::Slack,
            "Fix <login> & co",
            Some("https://orch.example/"),
        );
        let obj = with.as_object().expect("object");
        assert_eq!(obj.len(), 1, "only `text`: {with}");
        assert_eq!(
            with["text"],
            "orch: <https://orch.example/items/WEB-3|WEB-3> is blocked: x &lt; y &amp; &lt;!channel&gt; (Fix &lt;login&gt; &amp; co)"
        );
        let without = render(NotifyFormat::Slack, "t", None);
        assert_eq!(
            without["text"],
            "orch: WEB-3 is blocked: x &lt; y &amp; &lt;!channel&gt; (t)"
        );
    }

    #[test]
    fn json_carries_the_facts_and_the_page() {
        let v = render(
            NotifyFormat::Json,
            "Fix login",
            Some("https://orch.example"),
        );
        assert_eq!(v["id"], "web/ops/WEB-3/9");
        assert_eq!(v["event"], NotifyEvent::Blocked.as_str());
        assert_eq!(v["project"], "web");
        assert_eq!(v["item"], "WEB-3");
        assert_eq!(v["title"], "Fix login");
        assert_eq!(v["details"]["reason"], "x < y & <!channel>");
        assert_eq!(v["url"], "https://orch.example/items/WEB-3");
        assert_eq!(v["at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(v["event_seq"], 9);
        let no_url = render(NotifyFormat::Json, "Fix login", None);
        assert_eq!(no_url["url"], Value::Null);
    }
}
