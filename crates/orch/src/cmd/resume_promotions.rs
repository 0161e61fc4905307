//! `orch resume-promotions`: after prod was restored, a project's promotions pause until a
//! person has looked; this lets them run again and prints why they had paused.

use crate::cli::ResumePromotionsArgs;
use crate::context::Context;

pub fn run(ctx: &Context, a: &ResumePromotionsArgs) -> anyhow::Result<i32> {
    let id = ctx.project_id(a.project.as_deref())?;
    let project = ctx.engine.project(&id)?;
    let root = project.settings.data_dir.join("deploy").join(id.as_str());
    match orch_deploy::resume_promotions(&root)? {
        Some(reason) => {
            println!("{id}: promotions resumed; they had paused because: {reason}");
        }
        None => println!("{id}: promotions were not paused; nothing to do"),
    }
    if root.join("prod/FROZEN").exists() {
        println!(
            "{id}: note: prod is FROZEN ({}); that needs fixing by hand (see docs/deploy.md)",
            root.join("prod/FROZEN").display()
        );
    }
    Ok(0)
}
