//! `{name}` placeholders in configured commands (`{artifact}`, `{port}`, `{base_url}`).
//!
//! Only lowercase names in braces are placeholders, so shell text such as `${HOME}` or
//! `awk '{print $1}'` passes through untouched. An unknown lowercase name is an error rather than
//! a literal: a typo like `{prot}` must not reach a running command.

/// Replaces every placeholder with its value; `Err` carries the first unknown name.
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        let is_placeholder = name_len > 0 && after[name_len..].starts_with('}');
        if !is_placeholder {
            out.push('{');
            rest = after;
            continue;
        }
        let name = &after[..name_len];
        let value = values
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| name.to_owned())?;
        out.push_str(value);
        rest = &after[name_len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn fills_known_names_and_leaves_shell_braces_alone() {
        let values = [("port", "8511"), ("base_url", "http://127.0.0.1:8511")];
        let cases = [
            ("{port}", Ok("8511")),
            (
                "curl {base_url}/x --port={port}",
                Ok("curl http://127.0.0.1:8511/x --port=8511"),
            ),
            ("echo ${HOME} {A} { } {}", Ok("echo ${HOME} {A} { } {}")),
            ("awk '{print $1}'", Ok("awk '{print $1}'")),
            ("trailing {", Ok("trailing {")),
            ("{prot}", Err("prot")),
        ];
        for (template, expected) in cases {
            let got = fill(template, &values);
            assert_eq!(
                got.as_deref(),
                expected.map_err(str::to_owned).as_deref(),
                "{template}"
            );
        }
    }
}
