//! Path patterns for write allowlists and doc-gates: `*` matches within one path segment,
//! `**` matches any number of whole segments. Paths are `/`-separated and relative.

/// True when `path` matches `pattern`.
pub fn matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').collect();
    let segs: Vec<&str> = path.split('/').collect();
    match_segments(&pat, &segs)
}

/// True when `path` matches any of `patterns`.
pub fn matches_any<S: AsRef<str>>(patterns: &[S], path: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), path))
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| match_segments(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_segment(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_segment(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_segment(rest, &s[i..])),
        Some((c, rest)) => s
            .split_first()
            .is_some_and(|(d, srest)| c == d && match_segment(rest, srest)),
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn patterns() {
        let cases = [
            ("**", "a/b/c.rs", true),
            ("docs/**", "docs/x.md", true),
            ("docs/**", "docs/a/b.md", true),
            ("docs/**", "src/docs.rs", false),
            ("CHANGELOG.md", "CHANGELOG.md", true),
            ("CHANGELOG.md", "x/CHANGELOG.md", false),
            (
                "docs/work-items/*/14-deploy-log.md",
                "docs/work-items/DEMO-1/14-deploy-log.md",
                true,
            ),
            (
                "docs/work-items/*/14-deploy-log.md",
                "docs/work-items/DEMO-1/x/14-deploy-log.md",
                false,
            ),
            ("docs/work-items/*/14-deploy-log.md", "src/main.rs", false),
            ("src/*.rs", "src/main.rs", true),
            ("src/*.rs", "src/a/main.rs", false),
            ("**/*.md", "a/b/c.md", true),
            ("**/*.md", "c.md", true),
        ];
        for (p, path, want) in cases {
            assert_eq!(matches(p, path), want, "{p} vs {path}");
        }
    }
}
