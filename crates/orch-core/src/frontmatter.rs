//! Fail-closed YAML frontmatter: the only part of an artifact a gate ever reads.
//!
//! An artifact starts with a line `---`, a YAML mapping, and a closing line `---`. Everything
//! that is not exactly that is an error naming what is wrong: no file, a byte-order mark, no
//! opening or closing fence, YAML that does not parse, a document that is not a mapping, a
//! duplicate key, a non-string key. CRLF line ends are read as LF (they change no meaning).
//! The closing fence is the first line that is exactly `---`, so a `---` line inside a block
//! value ends the frontmatter there; what follows is then usually invalid YAML, and FAILED.
//!
//! The text must read the same to a person as to the YAML parser: a carriage return that is not
//! part of a CRLF, and the Unicode line breaks YAML 1.1 knows (NEL, LINE SEPARATOR, PARAGRAPH
//! SEPARATOR), are refused, because an editor or a diff shows one line where the parser sees
//! two. A verdict must be written on one line of its own, `field: VALUE` at the start of the
//! line (the value plain or quoted), exactly once, and that line must say what the parser read:
//! a verdict built by an alias, a multi-line scalar or a flow mapping is FAILED.
//! The accepted grammar is documented in `docs/artifacts.md`; this module must never accept an
//! artifact whose verdict line a person would read differently.

use std::collections::BTreeMap;

use thiserror::Error;

/// A parsed frontmatter block: keys in file order are not kept, values stay YAML.
#[derive(Debug, Clone, PartialEq)]
pub struct Frontmatter {
    fields: BTreeMap<String, yaml_serde::Value>,
    /// The block's lines as a person reads them (split at LF), for the verdict line check.
    lines: Vec<String>,
}

/// Why an artifact's frontmatter could not be read. Every variant means FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrontmatterError {
    #[error("artifact is missing")]
    Missing,
    #[error("artifact starts with a byte-order mark; write UTF-8 without BOM")]
    ByteOrderMark,
    #[error("artifact does not start with a `---` line (no frontmatter)")]
    NoOpeningFence,
    #[error("frontmatter has no closing `---` line")]
    NoClosingFence,
    #[error("frontmatter is not valid YAML: {0}")]
    InvalidYaml(String),
    #[error("frontmatter is not a mapping of `key: value` lines")]
    NotAMapping,
    #[error("frontmatter has a non-string key")]
    NonStringKey,
    #[error(
        "line {line} holds a carriage return that does not end the line (a lone CR): a person \
         reads one line where the YAML parser reads two; use LF or CRLF line ends"
    )]
    LoneCarriageReturn { line: usize },
    #[error(
        "line {line} holds a {name}, which the YAML parser reads as a line break and an editor \
         does not; use LF line ends"
    )]
    UnicodeLineBreak { line: usize, name: &'static str },
}

/// Why a verdict field could not be read. Every variant means FAILED.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("field `{field}` is missing from the frontmatter")]
    Missing { field: String },
    #[error("field `{field}` must be a plain string, found {found}")]
    NotAString { field: String, found: &'static str },
    #[error("field `{field}` is `{value}`, not one of {allowed} (values are exact and uppercase)")]
    UnknownValue {
        field: String,
        value: String,
        allowed: String,
    },
    #[error(
        "field `{field}` must be written once, on one line of its own at the start of the line \
         as `{field}: VALUE` (plain or quoted, no alias, no multi-line value)"
    )]
    NotOnOneLine { field: String },
}

impl Frontmatter {
    /// Parses the frontmatter of an artifact's text. `None` means the file does not exist.
    pub fn parse(text: Option<&str>) -> Result<Self, FrontmatterError> {
        let text = text.ok_or(FrontmatterError::Missing)?;
        if text.starts_with('\u{feff}') {
            return Err(FrontmatterError::ByteOrderMark);
        }
        check_line_breaks(text)?;
        let normalized;
        let text = if text.contains('\r') {
            normalized = text.replace("\r\n", "\n");
            normalized.as_str()
        } else {
            text
        };
        let mut lines = text.split('\n');
        if lines.next() != Some("---") {
            return Err(FrontmatterError::NoOpeningFence);
        }
        let mut body = String::new();
        let mut block = Vec::new();
        let mut closed = false;
        for line in lines {
            if line == "---" {
                closed = true;
                break;
            }
            body.push_str(line);
            body.push('\n');
            block.push(line.to_owned());
        }
        if !closed {
            return Err(FrontmatterError::NoClosingFence);
        }
        // yaml_serde refuses duplicate keys in a mapping, which is what we want.
        let value: yaml_serde::Value = yaml_serde::from_str(&body)
            .map_err(|e| FrontmatterError::InvalidYaml(e.to_string()))?;
        let yaml_serde::Value::Mapping(map) = value else {
            return Err(FrontmatterError::NotAMapping);
        };
        let mut fields = BTreeMap::new();
        for (k, v) in map {
            let yaml_serde::Value::String(k) = k else {
                return Err(FrontmatterError::NonStringKey);
            };
            fields.insert(k, v);
        }
        Ok(Self {
            fields,
            lines: block,
        })
    }

    /// The raw value of a field, if present.
    pub fn get(&self, field: &str) -> Option<&yaml_serde::Value> {
        self.fields.get(field)
    }

    /// A string field, or an error naming why it is not one.
    pub fn string(&self, field: &str) -> Result<&str, FieldError> {
        match self.fields.get(field) {
            None => Err(FieldError::Missing {
                field: field.to_owned(),
            }),
            Some(yaml_serde::Value::String(s)) => Ok(s),
            Some(other) => Err(FieldError::NotAString {
                field: field.to_owned(),
                found: kind(other),
            }),
        }
    }

    /// A verdict: the field's string value, required to be exactly one of `allowed`.
    /// The field must also be written on one line of its own that shows this value (see the
    /// module's doc): what the parser read is then what a person reads.
    pub fn verdict<'a>(&self, field: &str, allowed: &'a [String]) -> Result<&'a str, FieldError> {
        let value = self.string(field)?;
        if !self.written_on_one_line(field, value) {
            return Err(FieldError::NotOnOneLine {
                field: field.to_owned(),
            });
        }
        allowed
            .iter()
            .find(|a| a.as_str() == value)
            .map(String::as_str)
            .ok_or_else(|| FieldError::UnknownValue {
                field: field.to_owned(),
                value: value.chars().take(60).collect(),
                allowed: allowed.join(", "),
            })
    }

    /// Whether exactly one line of the block starts with `field:`, and its value as written
    /// (after the colon, without surrounding blanks or a trailing comment, plain or in quotes
    /// without escapes) is `value`.
    fn written_on_one_line(&self, field: &str, value: &str) -> bool {
        let mut written = self
            .lines
            .iter()
            .filter_map(|l| l.strip_prefix(field)?.strip_prefix(':'));
        let (Some(rest), None) = (written.next(), written.next()) else {
            return false;
        };
        if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
            return false;
        }
        let rest = rest.trim_matches([' ', '\t']);
        let shown = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let inner = &rest[1..];
                match inner.find(q) {
                    // A quote, the value, the same quote, then nothing or a comment.
                    Some(end) if !inner[..end].contains('\\') => {
                        let after = inner[end + 1..].trim_start_matches([' ', '\t']);
                        if after.is_empty() || after.starts_with('#') {
                            &inner[..end]
                        } else {
                            return false;
                        }
                    }
                    _ => return false,
                }
            }
            _ => match rest.find(" #").or_else(|| rest.find("\t#")) {
                Some(i) => rest[..i].trim_end_matches([' ', '\t']),
                None => rest,
            },
        };
        shown == value
    }

    /// Every field with its raw value, sorted by name, for showing an artifact to people.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &yaml_serde::Value)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The body after the closing fence is not kept; this gives the number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

/// Refuses a CR that is not followed by LF, and the line breaks YAML 1.1 knows besides CR and
/// LF; `line` counts LF-ended lines from 1.
fn check_line_breaks(text: &str) -> Result<(), FrontmatterError> {
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '\r' if chars.peek() != Some(&'\n') => {
                return Err(FrontmatterError::LoneCarriageReturn { line });
            }
            '\u{85}' | '\u{2028}' | '\u{2029}' => {
                let name = match c {
                    '\u{85}' => "NEXT LINE (U+0085)",
                    '\u{2028}' => "LINE SEPARATOR (U+2028)",
                    _ => "PARAGRAPH SEPARATOR (U+2029)",
                };
                return Err(FrontmatterError::UnicodeLineBreak { line, name });
            }
            _ => {}
        }
    }
    Ok(())
}

fn kind(v: &yaml_serde::Value) -> &'static str {
    match v {
        yaml_serde::Value::Null => "nothing (null)",
        yaml_serde::Value::Bool(_) => "a boolean",
        yaml_serde::Value::Number(_) => "a number",
        yaml_serde::Value::String(_) => "a string",
        yaml_serde::Value::Sequence(_) => "a list",
        yaml_serde::Value::Mapping(_) => "a mapping",
        yaml_serde::Value::Tagged(_) => "a tagged value",
    }
}

/// Splits an artifact's body (the text after the frontmatter) off, for showing it to people.
pub fn body(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("---\n") else {
        return text;
    };
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => rest.strip_suffix("\n---").map(|_| "").unwrap_or(text),
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["APPROVE".to_owned(), "REQUEST_CHANGES".to_owned()]
    }

    /// One helper for every case: the artifact text and the exact outcome as a string.
    fn check(text: Option<&str>, expect: &str) {
        let got = match Frontmatter::parse(text) {
            Err(e) => format!("FAILED: {e}"),
            Ok(fm) => match fm.verdict("review_verdict", &allowed()) {
                Ok(v) => format!("VERDICT {v}"),
                Err(e) => format!("FAILED: {e}"),
            },
        };
        assert_eq!(got, expect, "for {text:?}");
    }

    #[test]
    fn valid_verdicts() {
        check(
            Some("---\nreview_verdict: APPROVE\n---\n# Review\n"),
            "VERDICT APPROVE",
        );
        check(
            Some("---\nreview_verdict: REQUEST_CHANGES\nnotes: x\n---\n"),
            "VERDICT REQUEST_CHANGES",
        );
        check(
            Some("---\nreview_verdict: \"APPROVE\"\n---"),
            "VERDICT APPROVE",
        );
    }

    #[test]
    fn crlf_line_ends_read_as_lf() {
        check(
            Some("---\r\nreview_verdict: APPROVE\r\n---\r\nbody\r\n"),
            "VERDICT APPROVE",
        );
    }

    #[test]
    fn fail_closed_cases() {
        check(None, "FAILED: artifact is missing");
        check(
            Some(""),
            "FAILED: artifact does not start with a `---` line (no frontmatter)",
        );
        check(
            Some("# Review\nreview_verdict: APPROVE\n"),
            "FAILED: artifact does not start with a `---` line (no frontmatter)",
        );
        check(
            Some(" ---\nreview_verdict: APPROVE\n---\n"),
            "FAILED: artifact does not start with a `---` line (no frontmatter)",
        );
        check(
            Some("\u{feff}---\nreview_verdict: APPROVE\n---\n"),
            "FAILED: artifact starts with a byte-order mark; write UTF-8 without BOM",
        );
        check(
            Some("---\nreview_verdict: APPROVE\n"),
            "FAILED: frontmatter has no closing `---` line",
        );
        check(
            Some("---\n---\n"),
            "FAILED: frontmatter is not a mapping of `key: value` lines",
        );
        check(
            Some("---\n- APPROVE\n---\n"),
            "FAILED: frontmatter is not a mapping of `key: value` lines",
        );
        check(
            Some("---\n1: APPROVE\n---\n"),
            "FAILED: frontmatter has a non-string key",
        );
        check(
            Some("---\nreview_verdict: approve\n---\n"),
            "FAILED: field `review_verdict` is `approve`, not one of APPROVE, REQUEST_CHANGES (values are exact and uppercase)",
        );
        check(
            Some("---\nreview_verdict: APPROVE \n---\n"),
            "VERDICT APPROVE",
        );
        check(
            Some("---\nreview_verdict: \"APPROVE \"\n---\n"),
            "FAILED: field `review_verdict` is `APPROVE `, not one of APPROVE, REQUEST_CHANGES (values are exact and uppercase)",
        );
        check(
            Some("---\nreview_verdict: true\n---\n"),
            "FAILED: field `review_verdict` must be a plain string, found a boolean",
        );
        check(
            Some("---\nreview_verdict:\n---\n"),
            "FAILED: field `review_verdict` must be a plain string, found nothing (null)",
        );
        check(
            Some("---\nreview_verdict: [APPROVE]\n---\n"),
            "FAILED: field `review_verdict` must be a plain string, found a list",
        );
        check(
            Some("---\nverdict: APPROVE\n---\n"),
            "FAILED: field `review_verdict` is missing from the frontmatter",
        );
    }

    #[test]
    fn duplicate_key_is_failed() {
        let got = Frontmatter::parse(Some(
            "---\nreview_verdict: REQUEST_CHANGES\nreview_verdict: APPROVE\n---\n",
        ));
        match got {
            Err(FrontmatterError::InvalidYaml(msg)) => assert!(msg.contains("duplicate"), "{msg}"),
            other => panic!("expected a duplicate-key error, got {other:?}"),
        }
    }

    #[test]
    fn bad_yaml_is_failed() {
        let got = Frontmatter::parse(Some("---\nreview_verdict: [APPROVE\n---\n"));
        assert!(
            matches!(got, Err(FrontmatterError::InvalidYaml(_))),
            "{got:?}"
        );
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused_not_expanded() {
        // "Billion laughs": nine levels of nine aliases each would expand to 9^9 strings.
        let mut text = String::from("---\na0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = format!("*a{}", i - 1);
            let list = [p.as_str(); 9].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{list}]\n"));
        }
        text.push_str("review_verdict: APPROVE\n---\n");
        match Frontmatter::parse(Some(&text)) {
            Err(FrontmatterError::InvalidYaml(msg)) => {
                assert!(msg.contains("repetition limit"), "{msg}")
            }
            other => panic!("expected the alias bomb to be refused, got {other:?}"),
        }
        // Nesting deeper than the parser's recursion limit is an error, not a stack overflow.
        let deep = format!(
            "---\nx: {}{}\nreview_verdict: APPROVE\n---\n",
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        match Frontmatter::parse(Some(&deep)) {
            Err(FrontmatterError::InvalidYaml(msg)) => {
                assert!(msg.contains("recursion limit"), "{msg}")
            }
            other => panic!("expected deep nesting to be refused, got {other:?}"),
        }
    }

    #[test]
    fn fence_inside_a_value_ends_the_block() {
        // The block scalar is cut at the inner `---`; what is left is a valid mapping whose
        // verdict field comes after the cut, so it is missing: FAILED, never a false APPROVE.
        check(
            Some("---\nnotes: |\n  first\n---\nreview_verdict: APPROVE\n---\n"),
            "FAILED: field `review_verdict` is missing from the frontmatter",
        );
        // `---` inside a quoted value on one line is just text.
        check(
            Some("---\nnotes: \"a --- b\"\nreview_verdict: APPROVE\n---\n"),
            "VERDICT APPROVE",
        );
    }

    #[test]
    fn a_lone_cr_is_refused_where_it_hides_a_line() {
        // A person (and `cat`, and most diffs) sees one line `note: x`; YAML sees two.
        check(
            Some("---\nnote: x\rreview_verdict: APPROVE\n---\n"),
            "FAILED: line 2 holds a carriage return that does not end the line (a lone CR): a \
             person reads one line where the YAML parser reads two; use LF or CRLF line ends",
        );
        // Also in the body, and a CR at the very end of the text.
        check(
            Some("---\nreview_verdict: APPROVE\n---\nbody\r"),
            "FAILED: line 4 holds a carriage return that does not end the line (a lone CR): a \
             person reads one line where the YAML parser reads two; use LF or CRLF line ends",
        );
        for (brk, name) in [
            ('\u{85}', "NEXT LINE (U+0085)"),
            ('\u{2028}', "LINE SEPARATOR (U+2028)"),
            ('\u{2029}', "PARAGRAPH SEPARATOR (U+2029)"),
        ] {
            check(
                Some(&format!("---\nnote: x{brk}review_verdict: APPROVE\n---\n")),
                &format!(
                    "FAILED: line 2 holds a {name}, which the YAML parser reads as a line break \
                     and an editor does not; use LF line ends"
                ),
            );
        }
    }

    #[test]
    fn a_verdict_must_be_written_on_its_own_line() {
        let refused = "FAILED: field `review_verdict` must be written once, on one line of its \
                       own at the start of the line as `review_verdict: VALUE` (plain or quoted, \
                       no alias, no multi-line value)";
        for text in [
            // The value on the next line: the verdict line shows nothing.
            "---\nreview_verdict:\n  APPROVE\n---\n",
            "---\nreview_verdict: >-\n  APPROVE\n---\n",
            // Built from an alias: the verdict line shows `*a`.
            "---\nx: &a APPROVE\nreview_verdict: *a\n---\n",
            // A flow mapping, an explicit key, a quoted key: no `review_verdict:` line.
            "---\n{review_verdict: APPROVE}\n---\n",
            "---\n? review_verdict\n: APPROVE\n---\n",
            "---\n\"review_verdict\": APPROVE\n---\n",
            // A tag, and a quoted value with escapes.
            "---\nreview_verdict: !!str APPROVE\n---\n",
            "---\nreview_verdict: \"APP\\x52OVE\"\n---\n",
            // A second line that looks like the verdict, inside a multi-line quoted value.
            "---\nnotes: \"a\nreview_verdict: REQUEST_CHANGES\"\nreview_verdict: APPROVE\n---\n",
        ] {
            check(Some(text), refused);
        }
        // Plain, quoted, with a comment or trailing blanks: one line, read as written.
        for text in [
            "---\nreview_verdict: APPROVE # looks good\n---\n",
            "---\nreview_verdict: 'APPROVE'\n---\n",
            "---\nreview_verdict:\t\"APPROVE\"  # ok\n---\n",
        ] {
            check(Some(text), "VERDICT APPROVE");
        }
    }

    #[test]
    fn body_is_split_off() {
        assert_eq!(body("---\na: B\n---\n# Title\n"), "# Title\n");
        assert_eq!(body("no frontmatter"), "no frontmatter");
    }
}
