use super::*;

fn check_err(toml: &str, expect: &str) {
    match Pipeline::from_toml(toml) {
        Ok(p) => panic!("expected an error, got {p:?}"),
        Err(e) => assert_eq!(e.to_string(), expect),
    }
}

#[test]
fn default_pipeline_parses_and_is_pinned() {
    let p = Pipeline::from_toml(DEFAULT_PIPELINE_TOML).expect("the default pipeline is valid");
    insta::assert_snapshot!(p.graph());
}

#[test]
fn gate_registry_is_pinned() {
    let names: Vec<&str> = GateKind::ALL.iter().map(|g| g.name()).collect();
    insta::assert_snapshot!(names.join("\n"));
}

#[test]
fn spend_limits_parse_per_item_and_per_stage() {
    let stage = "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\n";
    let p = Pipeline::from_toml(&format!(
        "[spend]\nmax_usd = 2.5\n{stage}spend = {{ max_tokens = 1000 }}\n"
    ))
    .expect("valid");
    assert_eq!(
        p.spend_limit(),
        SpendLimit {
            max_tokens: None,
            max_cost: Some(2_500_000)
        }
    );
    assert_eq!(
        p.first().spend,
        SpendLimit {
            max_tokens: Some(1000),
            max_cost: None
        }
    );
    let unlimited = Pipeline::from_toml(stage).expect("valid");
    assert!(unlimited.spend_limit().is_unlimited());
    check_err(
        &format!("[spend]\nmax_usd = -1.0\n{stage}"),
        "field `spend.max_usd`: must be a positive amount of USD",
    );
    check_err(
        &format!("{stage}spend = {{ max_tokens = 0 }}\n"),
        "stage `a`, field `spend.max_tokens`: must be at least 1",
    );
    check_err(
        &format!("[spend]\nmax_dollars = 1.0\n{stage}"),
        "pipeline file: line 2 (`max_dollars = 1.0`): unknown field `max_dollars`, expected `max_tokens` or `max_usd`",
    );
}

#[test]
fn symlinks_are_refused_unless_the_project_allows_them_inside_the_tree() {
    let stage = "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\n";
    assert!(!Pipeline::from_toml(stage).expect("valid").links_inside());
    let refuse = format!("symlinks = \"refuse\"\n{stage}");
    assert!(!Pipeline::from_toml(&refuse).expect("valid").links_inside());
    let inside = format!("symlinks = \"inside-tree\"\n{stage}");
    assert!(Pipeline::from_toml(&inside).expect("valid").links_inside());
    check_err(
        &format!("symlinks = \"anywhere\"\n{stage}"),
        "field `symlinks`: must be \"refuse\" (the default) or \"inside-tree\"",
    );
}

#[test]
fn validation_names_stage_and_field() {
    check_err(
        "",
        "pipeline has no stages; add at least one [[stages]] table",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"nowhere\"\n",
        "stage `a`, field `on_pass`: no stage is named `nowhere`",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\non_fail = { to = \"a\", budget = 0 }\n",
        "stage `a`, field `on_fail.budget`: a fail edge needs a budget of at least 1",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\non_pass = \"done\"\n",
        "stage `a`, field `verdict`: agent and action stages need a verdict field",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"ok\"] }\non_pass = \"done\"\n",
        "stage `a`, field `verdict`: value `ok` must be uppercase with no spaces",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"robot\"\non_pass = \"done\"\n",
        "stage `a`, field `kind`: unknown kind `robot`; known: agent, action, approval",
    );
    check_err(
        "[[stages]]\nname = \"A\"\nkind = \"approval\"\non_pass = \"done\"\n",
        "stage #1: invalid stage name `A`: may hold only lowercase letters, digits and `-`",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"../x.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\n",
        "stage `a`, field `artifact`: must be a plain `.md` file name such as 01-analysis.md",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\nartifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\ngates = [{ kind = \"command\" }]\non_pass = \"done\"\n",
        "stage `a`, field `gates.run`: command gate #1 needs `run`",
    );
    check_err(
        "[[stages]]\nname = \"a\"\nkind = \"approval\"\non_pass = \"done\"\nbogus = 1\n",
        "pipeline file: line 5 (`bogus = 1`): unknown field `bogus`, expected one of `name`, `kind`, `role`, `action`, `artifact`, `verdict`, `gates`, `on_pass`, `on_fail`, `timeout_secs`, `spend`",
    );
}
