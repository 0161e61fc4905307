//! Property tests of the frontmatter reader: no input panics, and no input passes whose
//! line-based reading (what a person sees in an editor or a diff) shows no pass value.

use proptest::prelude::*;

use super::Frontmatter;

const FIELD: &str = "analysis_status";
const PASS: &str = "READY";

fn allowed() -> Vec<String> {
    vec![PASS.to_owned(), "NEEDS_INFO".to_owned(), "FAIL".to_owned()]
}

/// What a person reads: the text split at LF (a CR before it dropped), the lines between the
/// first line and the next `---` line; true when one of them starts with the field, a colon,
/// and shows the pass value.
fn a_person_sees_the_pass_value(text: &str) -> bool {
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    if lines.next() != Some("---") {
        return false;
    }
    lines
        .take_while(|l| *l != "---")
        .filter_map(|l| l.strip_prefix(FIELD)?.strip_prefix(':'))
        .any(|rest| rest.contains(PASS))
}

fn passes(text: &str) -> bool {
    Frontmatter::parse(Some(text))
        .ok()
        .and_then(|fm| fm.verdict(FIELD, &allowed()).ok().map(str::to_owned))
        .is_some_and(|v| v == PASS)
}

/// Pieces an attacker would combine: fences, the verdict in many spellings, YAML features that
/// move a value away from its line, and every kind of line break.
fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("---".to_owned()),
        Just(format!("{FIELD}: {PASS}")),
        Just(format!("{FIELD}: FAIL")),
        Just(format!("{FIELD}:")),
        Just(format!("  {PASS}")),
        Just(format!("{FIELD}: \"{PASS}\"")),
        Just(format!("{FIELD}: '{PASS}'")),
        Just(format!("{FIELD}: *a")),
        Just(format!("x: &a {PASS}")),
        Just(format!("{{{FIELD}: {PASS}}}")),
        Just(format!("? {FIELD}")),
        Just(format!(": {PASS}")),
        Just("notes: |".to_owned()),
        Just("notes: \"".to_owned()),
        Just("\"".to_owned()),
        Just("note: x".to_owned()),
        Just(format!("{FIELD}: >-")),
        Just(format!("{FIELD}: !!str {PASS}")),
        Just("# comment".to_owned()),
        "[ -~]{0,12}".prop_map(|s| s),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("\n"),
        1 => Just("\r\n"),
        1 => Just("\r"),
        1 => Just("\u{85}"),
        1 => Just("\u{2028}"),
        1 => Just("\u{2029}"),
        1 => Just(" "),
        1 => Just("\t"),
    ]
}

/// Mostly a frontmatter block (an opening fence, pieces, a closing fence), so that the
/// verdict's parser is reached; sometimes pieces alone.
fn document() -> impl Strategy<Value = String> {
    let pieces = proptest::collection::vec((piece(), separator()), 0..6).prop_map(|parts| {
        parts
            .into_iter()
            .fold(String::new(), |mut out, (piece, sep)| {
                out.push_str(&piece);
                out.push_str(sep);
                out
            })
    });
    (any::<bool>(), pieces).prop_map(|(fenced, pieces)| {
        if fenced {
            format!("---\n{pieces}\n---\n")
        } else {
            pieces
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_input_panics(text in any::<String>()) {
        let _ = passes(&text);
        let _ = super::body(&text);
    }

    #[test]
    fn no_document_passes_unless_a_person_sees_the_pass_value(text in document()) {
        if passes(&text) {
            prop_assert!(a_person_sees_the_pass_value(&text), "{text:?} passes");
        }
    }

    #[test]
    fn any_bytes_passing_show_the_pass_value(
        head in document(),
        bytes in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let text = format!("{head}{}", String::from_utf8_lossy(&bytes));
        if passes(&text) {
            prop_assert!(a_person_sees_the_pass_value(&text), "{text:?} passes");
        }
    }
}

#[test]
fn the_generator_reaches_passing_documents() {
    // The property above would hold vacuously if no generated document ever passed.
    let text = format!("---\n{FIELD}: {PASS}\n---\n");
    assert!(passes(&text));
    assert!(a_person_sees_the_pass_value(&text));
}
