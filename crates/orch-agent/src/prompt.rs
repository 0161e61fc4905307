//! Renders a role's prompt for one run: the role's own text, the work item, the task of this
//! stage with its artifact contract, the feedback of the last failure, and earlier artifacts.

use std::fmt::Write;

use orch_core::pipeline::VerdictSpec;
use orch_core::role::Role;

/// What a prompt is made of; the engine gathers it.
#[derive(Debug, Clone)]
pub struct PromptContext<'a> {
    pub role: &'a Role,
    pub item_id: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub stage: &'a str,
    pub attempt: u32,
    pub artifact_dir: &'a str,
    pub artifact: Option<&'a str>,
    pub verdict: Option<&'a VerdictSpec>,
    /// Reasons of the failure that led to this run; empty on a first attempt.
    pub feedback: &'a [String],
    /// Earlier artifacts of this item: file name and text.
    pub earlier: &'a [(String, String)],
}

/// Longest earlier artifact copied into a prompt; longer ones are cut with a note.
const MAX_ARTIFACT_CHARS: usize = 6_000;

pub fn render(c: &PromptContext<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", c.role.prompt.trim_end());
    let _ = writeln!(out, "\n---\n\n# Work item {}: {}\n", c.item_id, c.title);
    let body = c.body.trim();
    let _ = writeln!(
        out,
        "{}\n",
        if body.is_empty() {
            "(no description)"
        } else {
            body
        }
    );
    let _ = writeln!(out, "# Your task now\n");
    let _ = writeln!(
        out,
        "You are the `{}` for stage `{}`, attempt {}.",
        c.role.name, c.stage, c.attempt
    );
    if let (Some(file), Some(v)) = (c.artifact, c.verdict) {
        let _ = writeln!(
            out,
            "Write `{}{}` starting with YAML frontmatter between `---` lines. Its field `{}` decides \
             the stage and must be exactly one of: {}. Nothing else is read as a verdict.",
            c.artifact_dir,
            file,
            v.field,
            v.allowed().join(", ")
        );
    }
    let _ = writeln!(
        out,
        "You may write only these paths: {}.",
        c.role.writes.join(", ")
    );
    if !c.feedback.is_empty() {
        let _ = writeln!(out, "\n# Why the last attempt did not pass\n");
        for line in c.feedback {
            let _ = writeln!(out, "- {}", line.trim_end().replace('\n', "\n  "));
        }
    }
    if !c.earlier.is_empty() {
        let _ = writeln!(out, "\n# Earlier artifacts of this item\n");
        for (name, text) in c.earlier {
            let _ = writeln!(out, "## {name}\n");
            let cut: String = text.chars().take(MAX_ARTIFACT_CHARS).collect();
            let _ = writeln!(out, "{}", cut.trim_end());
            if cut.len() < text.len() {
                let _ = writeln!(
                    out,
                    "[cut at {MAX_ARTIFACT_CHARS} characters; read the file for the rest]"
                );
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use orch_core::RoleName;

    #[test]
    fn rendered_prompt_is_pinned() {
        let role = Role::parse(
            &RoleName::parse("developer").expect("valid"),
            "---\nname: developer\ndescription: Writes code.\nwrites: [\"**\"]\n---\n# Developer\n\nMake the change.\n",
        )
        .expect("valid role");
        let verdict = VerdictSpec {
            field: "dev_status".into(),
            pass: vec!["DONE".into()],
            fail: vec![],
            needs_info: vec![],
        };
        let feedback = vec![
            "stage review (attempt 1) failed:".to_owned(),
            "verdict: 04-review.md: review_verdict is REQUEST_CHANGES".to_owned(),
        ];
        let earlier = vec![(
            "04-review.md".to_owned(),
            "---\nreview_verdict: REQUEST_CHANGES\n---\nAdd a CHANGELOG entry.\n".to_owned(),
        )];
        let text = render(&PromptContext {
            role: &role,
            item_id: "DEMO-1",
            title: "Change the greeting",
            body: "Say hello from orch.",
            stage: "development",
            attempt: 2,
            artifact_dir: "docs/work-items/DEMO-1/",
            artifact: Some("03-dev-notes.md"),
            verdict: Some(&verdict),
            feedback: &feedback,
            earlier: &earlier,
        });
        insta::assert_snapshot!(text);
    }
}
