//! One way every TOML file orch reads (orch.toml, `.orch/pipeline.toml`, `.orch/deploy.toml`,
//! `.orch/agents.toml`, the scenario) words a refusal: on one line, where it is (line and the
//! line's text, which names the key), what is wrong (an unknown key, a wrong type, a missing
//! key) and, for an unknown key, the accepted key it most likely meant.
//!
//! It only words errors; it never accepts anything the parser refused.

/// Parses `text` as `T`, a refusal worded by [`describe`]: what every orch TOML reader uses.
pub fn parse<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, String> {
    toml::from_str(text).map_err(|e| describe(text, &e))
}

/// `e` on one line: `line 3 (max_paralel = 2): unknown field `max_paralel`, expected one of
/// ... (did you mean `max_parallel`?)`.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    let hint = did_you_mean(&message)
        .map(|name| format!(" (did you mean `{name}`?)"))
        .unwrap_or_default();
    let place = e.span().map(|span| {
        let start = span.start.min(text.len());
        let line_no = text[..start].matches('\n').count() + 1;
        let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
        let shown: String = line.chars().take(80).collect();
        format!("line {line_no} (`{shown}`): ")
    });
    format!("{}{message}{hint}", place.unwrap_or_default())
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a` or `b`", or
/// "unknown variant" for a word that must be one of a set, such as an agent's `kind`), from
/// any format (TOML, JSON): the accepted name closest to `x`, when it is close enough to be a
/// typo.
pub fn did_you_mean(message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("unknown field ")
        .or_else(|| message.strip_prefix("unknown variant "))?;
    let mut names = rest.split('`').skip(1).step_by(2);
    let unknown = names.next()?;
    let (best, distance) = names
        .map(|name| (name, distance(unknown, name)))
        .min_by_key(|(_, d)| *d)?;
    (distance <= (unknown.chars().count() / 3).max(2)).then(|| best.to_owned())
}

/// The edit distance (insertions, deletions, substitutions) between two short names.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Engine {
        max_parallel: Option<usize>,
        lease_secs: Option<u64>,
    }

    fn refusal(text: &str) -> String {
        let e = toml::from_str::<Engine>(text).expect_err("refused");
        describe(text, &e)
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line_and_the_key_it_likely_meant() {
        let said = refusal("lease_secs = 3\nmax_paralel = 2\n");
        assert!(
            said.starts_with("line 2 (`max_paralel = 2`): unknown field `max_paralel`"),
            "{said}"
        );
        assert!(said.ends_with("(did you mean `max_parallel`?)"), "{said}");
        assert!(!said.contains('\n'), "{said}");
        let far = refusal("colour = 1\n");
        assert!(!far.contains("did you mean"), "{far}");
    }

    #[test]
    fn a_misspelled_word_of_a_set_gets_the_word_it_likely_meant() {
        assert_eq!(
            did_you_mean(
                "unknown variant `cluade`, expected one of `scripted`, `command`, `claude`"
            )
            .as_deref(),
            Some("claude")
        );
    }

    #[test]
    fn a_wrong_type_shows_the_line_that_names_the_key() {
        let said = refusal("max_parallel = \"four\"\n");
        assert!(
            said.starts_with("line 1 (`max_parallel = \"four\"`): invalid type"),
            "{said}"
        );
    }

    #[test]
    fn distances_count_edits() {
        assert_eq!(distance("max_paralel", "max_parallel"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "ab"), 2);
    }
}
