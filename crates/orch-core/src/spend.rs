//! Spend: what an item's agent runs cost, summed, and the limits that cap it.
//!
//! Money is counted in micro-dollars (millionths of a USD) so sums are exact and limits compare
//! without rounding. A run whose tokens or cost its agent did not report adds nothing to the
//! sum but is counted as unknown: spend is never invented. A cost limit that has to judge an
//! unknown cost fails closed (see [`SpendLimit::check`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::StageName;
use crate::pipeline::Pipeline;

/// Millionths of a US dollar.
pub type MicroUsd = u64;

/// Converts a USD amount as written by people or CLIs (`0.0123`) to micro-dollars. Negative,
/// NaN or infinite amounts are `None`: an amount that cannot be right is unknown.
pub fn usd_to_micro(usd: f64) -> Option<MicroUsd> {
    if !usd.is_finite() || usd < 0.0 || usd > (u64::MAX / 2) as f64 / 1e6 {
        return None;
    }
    Some((usd * 1_000_000.0).round() as u64)
}

/// Renders micro-dollars as `$1.234567` with trailing zeros trimmed to cents at least.
pub fn format_usd(micro: MicroUsd) -> String {
    let whole = micro / 1_000_000;
    let frac = format!("{:06}", micro % 1_000_000);
    let frac = frac.trim_end_matches('0');
    let frac = if frac.len() < 2 {
        format!("{frac:0<2}")
    } else {
        frac.to_owned()
    };
    format!("${whole}.{frac}")
}

/// Whether an agent reports what a run spent. A model CLI does, so a figure it left out is
/// unknown; the built-in scripted agent (unless its scenario gives figures) and `command`
/// agents report none by design, so their runs are shown as "—", not as unknown.
///
/// Only what is shown depends on it: a limit still judges a run without a cost as unknown
/// (fail-closed, see [`first_overrun`]), whatever the reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reporting {
    /// The agent reports its spend: a missing figure is unknown.
    #[default]
    Reports,
    /// The agent reports no spend, by design.
    NoneByDesign,
}

/// What one run spent, as far as its agent reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSpend {
    /// Every token the model processed for the run: input (cached or not) plus output.
    pub tokens: Option<u64>,
    pub cost: Option<MicroUsd>,
    pub reporting: Reporting,
}

/// The sum of some runs' spend, with a count of what was not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spend {
    pub tokens: u64,
    pub cost: MicroUsd,
    pub runs: u32,
    /// Runs whose agent reported no token counts.
    pub runs_without_tokens: u32,
    /// Runs whose agent reported no cost (and no price table gave one).
    pub runs_without_cost: u32,
    /// Runs whose agent reports no spend by design and reported none (counted in
    /// `runs_without_tokens` and `runs_without_cost` too, which limits judge).
    #[serde(default)]
    pub runs_not_reporting: u32,
}

impl Spend {
    pub fn add(&mut self, run: RunSpend) {
        self.runs += 1;
        if run.reporting == Reporting::NoneByDesign && run.tokens.is_none() && run.cost.is_none() {
            self.runs_not_reporting += 1;
        }
        match run.tokens {
            Some(t) => self.tokens = self.tokens.saturating_add(t),
            None => self.runs_without_tokens += 1,
        }
        match run.cost {
            Some(c) => self.cost = self.cost.saturating_add(c),
            None => self.runs_without_cost += 1,
        }
    }

    /// This spend with a run that is still going: what it reported so far adds up, and what it
    /// has not reported yet is not counted as unknown (it may arrive with the run's end). Used to
    /// stop a run live; the run's final record is added with [`Spend::add`].
    pub fn with_running(mut self, run: RunSpend) -> Self {
        if let Some(t) = run.tokens {
            self.tokens = self.tokens.saturating_add(t);
        }
        if let Some(c) = run.cost {
            self.cost = self.cost.saturating_add(c);
        }
        self
    }

    /// This spend with one more finished run.
    pub fn with(mut self, run: RunSpend) -> Self {
        self.add(run);
        self
    }

    pub fn sum(runs: impl IntoIterator<Item = RunSpend>) -> Self {
        let mut total = Self::default();
        for run in runs {
            total.add(run);
        }
        total
    }

    /// `12.3k tokens, $0.04` with `+?` marking sums that miss runs whose agent should have
    /// reported and did not; `—` when every run's agent reports no spend by design.
    pub fn describe(&self) -> String {
        let reporting = self.runs - self.runs_not_reporting.min(self.runs);
        if self.runs > 0 && reporting == 0 {
            return NOT_REPORTED.to_owned();
        }
        let missing = |n: u32| n.saturating_sub(self.runs_not_reporting);
        let unknown = |n: u32| if missing(n) > 0 { " (+?)" } else { "" };
        let cost = if reporting > 0 && missing(self.runs_without_cost) == reporting {
            "cost unknown".to_owned()
        } else {
            format!(
                "{}{}",
                format_usd(self.cost),
                unknown(self.runs_without_cost)
            )
        };
        format!(
            "{} tokens{}, {cost}",
            self.tokens,
            unknown(self.runs_without_tokens)
        )
    }
}

/// How spend reads when no run's agent reports any, by design.
pub const NOT_REPORTED: &str = "—";

/// A cap on spend: for one item in total, or for one stage of an item (all its attempts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendLimit {
    pub max_tokens: Option<u64>,
    pub max_cost: Option<MicroUsd>,
}

/// Which limit an overrun broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitScope {
    Item,
    Stage(String),
}

/// A limit that the spend reached, or could not be checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overrun {
    Tokens {
        scope: LimitScope,
        limit: u64,
        spent: u64,
    },
    Cost {
        scope: LimitScope,
        limit: MicroUsd,
        spent: MicroUsd,
    },
    /// A cost limit is set but some run's cost is unknown: it cannot be shown to hold.
    CostUnknown { scope: LimitScope, runs: u32 },
}

impl fmt::Display for LimitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Item => f.write_str("the item's"),
            Self::Stage(s) => write!(f, "stage {s}'s"),
        }
    }
}

impl fmt::Display for Overrun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tokens {
                scope,
                limit,
                spent,
            } => write!(
                f,
                "{scope} token budget of {limit} is spent ({spent} tokens used)"
            ),
            Self::Cost {
                scope,
                limit,
                spent,
            } => write!(
                f,
                "{scope} cost budget of {} is spent ({} used)",
                format_usd(*limit),
                format_usd(*spent)
            ),
            Self::CostUnknown { scope, runs } => write!(
                f,
                "{scope} cost budget cannot be checked: {runs} run(s) reported no cost \
                 (configure a price table for the agent's model)"
            ),
        }
    }
}

impl SpendLimit {
    pub fn is_unlimited(&self) -> bool {
        self.max_tokens.is_none() && self.max_cost.is_none()
    }

    /// The first limit `spent` reaches. Reaching a limit exactly counts as spent: the next run
    /// would go over. Unknown token counts are not treated as over (tokens are reported by every
    /// adapter that can), but a cost limit with any unknown cost fails closed.
    pub fn check(&self, scope: LimitScope, spent: &Spend) -> Option<Overrun> {
        if let Some(limit) = self.max_tokens
            && spent.tokens >= limit
        {
            return Some(Overrun::Tokens {
                scope,
                limit,
                spent: spent.tokens,
            });
        }
        if let Some(limit) = self.max_cost {
            if spent.runs_without_cost > 0 {
                return Some(Overrun::CostUnknown {
                    scope,
                    runs: spent.runs_without_cost,
                });
            }
            if spent.cost >= limit {
                return Some(Overrun::Cost {
                    scope,
                    limit,
                    spent: spent.cost,
                });
            }
        }
        None
    }
}

/// The first limit a run of `stage` has reached, given what the item spent in all (`item`) and
/// in that stage (`stage_spent`, all attempts): the item's limit is checked first, then the
/// stage's. `None` means the run may go on (or start).
pub fn first_overrun(
    pipeline: &Pipeline,
    stage: &StageName,
    item: &Spend,
    stage_spent: &Spend,
) -> Option<Overrun> {
    pipeline
        .spend_limit()
        .check(LimitScope::Item, item)
        .or_else(|| {
            pipeline.stage(stage).and_then(|s| {
                s.spend
                    .check(LimitScope::Stage(stage.to_string()), stage_spent)
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(tokens: Option<u64>, cost: Option<MicroUsd>) -> RunSpend {
        RunSpend {
            tokens,
            cost,
            reporting: Reporting::Reports,
        }
    }

    #[test]
    fn usd_conversion_rejects_amounts_that_cannot_be_right() {
        assert_eq!(usd_to_micro(0.00356), Some(3560));
        assert_eq!(usd_to_micro(5.0), Some(5_000_000));
        assert_eq!(usd_to_micro(-0.01), None);
        assert_eq!(usd_to_micro(f64::NAN), None);
        assert_eq!(usd_to_micro(f64::INFINITY), None);
        assert_eq!(format_usd(3560), "$0.00356");
        assert_eq!(format_usd(5_000_000), "$5.00");
        assert_eq!(format_usd(1_250_000), "$1.25");
    }

    #[test]
    fn sums_count_unknowns_instead_of_inventing_them() {
        let s = Spend::sum([
            run(Some(100), Some(10)),
            run(None, None),
            run(Some(5), None),
        ]);
        assert_eq!(s.tokens, 105);
        assert_eq!(s.cost, 10);
        assert_eq!(s.runs, 3);
        assert_eq!(s.runs_without_tokens, 1);
        assert_eq!(s.runs_without_cost, 2);
        assert_eq!(s.describe(), "105 tokens (+?), $0.00001 (+?)");
        assert_eq!(
            Spend::sum([run(Some(7), None)]).describe(),
            "7 tokens, cost unknown"
        );
    }

    #[test]
    fn agents_that_report_nothing_by_design_read_as_a_dash_not_as_unknown() {
        let silent = RunSpend {
            reporting: Reporting::NoneByDesign,
            ..RunSpend::default()
        };
        assert_eq!(Spend::sum([silent, silent]).describe(), NOT_REPORTED);
        // Beside a CLI that reported, they add nothing and mark nothing as missing.
        assert_eq!(
            Spend::sum([silent, run(Some(1200), Some(40_000))]).describe(),
            "1200 tokens, $0.04"
        );
        // A CLI that should have reported and did not stays unknown.
        assert_eq!(
            Spend::sum([silent, run(None, None)]).describe(),
            "0 tokens (+?), cost unknown"
        );
        assert_eq!(
            Spend::sum([silent, run(Some(7), None)]).describe(),
            "7 tokens, cost unknown"
        );
        assert_eq!(Spend::default().describe(), "0 tokens, $0.00");
        // Limits still judge a run without a cost as unknown, whatever the reason.
        let limit = SpendLimit {
            max_tokens: None,
            max_cost: Some(1_000),
        };
        assert!(
            limit
                .check(LimitScope::Item, &Spend::sum([silent]))
                .is_some()
        );
    }

    #[test]
    fn limits_trip_at_the_limit_and_fail_closed_on_unknown_cost() {
        let limit = SpendLimit {
            max_tokens: Some(100),
            max_cost: Some(1_000),
        };
        let under = Spend::sum([run(Some(99), Some(999))]);
        assert_eq!(limit.check(LimitScope::Item, &under), None);

        let at_tokens = Spend::sum([run(Some(100), Some(1))]);
        assert_eq!(
            limit.check(LimitScope::Item, &at_tokens),
            Some(Overrun::Tokens {
                scope: LimitScope::Item,
                limit: 100,
                spent: 100
            })
        );

        let over_cost = Spend::sum([run(Some(1), Some(600)), run(Some(1), Some(600))]);
        let overrun = limit
            .check(LimitScope::Stage("development".into()), &over_cost)
            .map(|o| o.to_string());
        assert_eq!(
            overrun.as_deref(),
            Some("stage development's cost budget of $0.001 is spent ($0.0012 used)")
        );

        let unknown_cost = Spend::sum([run(Some(1), None)]);
        assert!(matches!(
            limit.check(LimitScope::Item, &unknown_cost),
            Some(Overrun::CostUnknown { runs: 1, .. })
        ));
        // Without a cost limit an unknown cost is only reported, never a reason to stop.
        let tokens_only = SpendLimit {
            max_tokens: Some(100),
            max_cost: None,
        };
        assert_eq!(tokens_only.check(LimitScope::Item, &unknown_cost), None);
        assert!(SpendLimit::default().is_unlimited());
    }

    #[test]
    fn a_running_run_adds_what_it_reported_and_nothing_unknown() {
        let before = Spend::sum([run(Some(10), Some(5))]);
        let live = before.with_running(run(Some(90), None));
        assert_eq!((live.tokens, live.cost, live.runs), (100, 5, 1));
        assert_eq!(live.runs_without_cost, 0);
        // The same run, finished without a cost, is unknown cost.
        let done = before.with(run(Some(90), None));
        assert_eq!(
            (done.tokens, done.runs, done.runs_without_cost),
            (100, 2, 1)
        );
    }

    #[test]
    fn the_items_limit_is_checked_before_the_stages() {
        let pipeline = Pipeline::from_toml(
            "[spend]\nmax_tokens = 100\n[[stages]]\nname = \"a\"\nkind = \"agent\"\nrole = \"dev\"\n\
             artifact = \"a.md\"\nverdict = { field = \"s\", pass = [\"OK\"] }\non_pass = \"done\"\n\
             spend = { max_usd = 0.5 }\n",
        )
        .expect("valid");
        let a = StageName::parse("a").expect("valid");
        let spent = |tokens, cost| Spend::sum([run(Some(tokens), Some(cost))]);
        let say = |item: Spend, stage: Spend| {
            first_overrun(&pipeline, &a, &item, &stage).map(|o| o.to_string())
        };
        assert_eq!(say(spent(99, 0), spent(99, 499_999)), None);
        assert_eq!(
            say(spent(100, 0), spent(99, 600_000)).as_deref(),
            Some("the item's token budget of 100 is spent (100 tokens used)")
        );
        assert_eq!(
            say(spent(99, 0), spent(99, 500_000)).as_deref(),
            Some("stage a's cost budget of $0.50 is spent ($0.50 used)")
        );
        // A stage the pipeline no longer has answers to the item's limit only.
        let gone = StageName::parse("gone").expect("valid");
        assert_eq!(
            first_overrun(&pipeline, &gone, &spent(1, 0), &spent(1, 9_000_000)),
            None
        );
    }
}
