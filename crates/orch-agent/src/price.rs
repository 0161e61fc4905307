//! Token prices, to give a run a cost when its CLI reports none (Codex; aider, the Gemini CLI and
//! OpenCode for models they have no price for).
//!
//! Prices come from `.orch/agents.toml`: a `[prices]` table keyed by model name, or a `price` on
//! one agent (which wins). A cost computed here is marked `cost_estimated` on the usage record; a
//! model without a price, or a count the computation needs that the CLI did not report, leaves the
//! cost unknown.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::Usage;

/// US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenPrice {
    pub input_per_mtok: f64,
    /// Input read from the provider's cache; the input price when not given.
    #[serde(alias = "cached_input_per_mtok")]
    pub cache_read_per_mtok: Option<f64>,
    /// Reasoning tokens are output tokens and priced as such.
    pub output_per_mtok: f64,
}

/// The `[prices]` table of `.orch/agents.toml`: a price per model name, as the model is named to
/// the CLI (the agent's `model`, else the role file's).
pub type PriceTable = BTreeMap<String, TokenPrice>;

/// Whether a CLI's input token count includes the input read from cache (Codex, Gemini, aider)
/// or not (Claude Code, OpenCode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InputCount {
    IncludesCacheRead,
    ExcludesCacheRead,
}

/// Where a CLI agent finds the price of a run: its own `price`, else the table's entry for the
/// model the run used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    pub price: Option<TokenPrice>,
    pub table: PriceTable,
}

impl Pricing {
    fn for_model(&self, model: Option<&str>) -> Option<&TokenPrice> {
        self.price
            .as_ref()
            .or_else(|| model.and_then(|m| self.table.get(m)))
    }

    /// Fills `usage.cost_usd` from the price of `model` when the CLI reported no cost, marking it
    /// estimated. Leaves it unknown when there is no price or a needed count is unknown. Records
    /// the CLI's input convention on the usage either way: spend sums need it.
    pub(crate) fn estimate(&self, usage: &mut Usage, model: Option<&str>, count: InputCount) {
        usage.input_includes_cache = matches!(count, InputCount::IncludesCacheRead);
        if usage.cost_usd.is_some() {
            return;
        }
        let Some(price) = self.for_model(model) else {
            return;
        };
        if let Some(cost) = price.cost(usage, count) {
            usage.cost_usd = Some(cost);
            usage.cost_estimated = true;
        }
    }
}

impl TokenPrice {
    /// The cost of `usage`, or `None` when a count it needs is unknown.
    ///
    /// When the input count includes cached input and the CLI did not say how much was cached,
    /// all of it is priced as uncached input: that is what the count says was sent. When the
    /// input count excludes cached input, an unknown cached count makes the cost unknown.
    fn cost(&self, usage: &Usage, count: InputCount) -> Option<f64> {
        let input = usage.input_tokens?;
        let output = usage.output_tokens?;
        let (uncached, cached) = match count {
            InputCount::IncludesCacheRead => {
                let cached = usage.cache_read_tokens.unwrap_or(0).min(input);
                (input - cached, cached)
            }
            InputCount::ExcludesCacheRead => (input, usage.cache_read_tokens?),
        };
        let per_token = |price_per_mtok: f64, tokens: u64| price_per_mtok * tokens as f64 / 1e6;
        let cached_price = self.cache_read_per_mtok.unwrap_or(self.input_per_mtok);
        Some(
            per_token(self.input_per_mtok, uncached)
                + per_token(cached_price, cached)
                + per_token(self.output_per_mtok, output),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICE: TokenPrice = TokenPrice {
        input_per_mtok: 2.0,
        cache_read_per_mtok: Some(0.5),
        output_per_mtok: 10.0,
    };

    fn usage(input: Option<u64>, cached: Option<u64>, output: Option<u64>) -> Usage {
        Usage {
            input_tokens: input,
            cache_read_tokens: cached,
            output_tokens: output,
            ..Usage::default()
        }
    }

    fn estimated(pricing: &Pricing, mut usage: Usage, model: &str, count: InputCount) -> Usage {
        pricing.estimate(&mut usage, Some(model), count);
        usage
    }

    #[test]
    fn a_table_entry_prices_the_run_and_marks_the_cost_estimated() {
        let pricing = Pricing {
            price: None,
            table: PriceTable::from([("gpt-x".to_owned(), PRICE)]),
        };
        let includes = estimated(
            &pricing,
            usage(Some(1_000_000), Some(400_000), Some(100_000)),
            "gpt-x",
            InputCount::IncludesCacheRead,
        );
        // 600k uncached × 2 + 400k cached × 0.5 + 100k output × 10, per million.
        assert_eq!(includes.cost_usd, Some(1.2 + 0.2 + 1.0));
        assert!(includes.cost_estimated);
        let excludes = estimated(
            &pricing,
            usage(Some(1_000_000), Some(400_000), Some(100_000)),
            "gpt-x",
            InputCount::ExcludesCacheRead,
        );
        assert_eq!(excludes.cost_usd, Some(2.0 + 0.2 + 1.0));
        // Without a cached count, an input count that includes it is all priced as input.
        let no_cache_count = estimated(
            &pricing,
            usage(Some(1_000_000), None, Some(0)),
            "gpt-x",
            InputCount::IncludesCacheRead,
        );
        assert_eq!(no_cache_count.cost_usd, Some(2.0));
    }

    #[test]
    fn no_price_or_an_unknown_count_leaves_the_cost_unknown() {
        let pricing = Pricing {
            price: None,
            table: PriceTable::from([("gpt-x".to_owned(), PRICE)]),
        };
        for (usage, model, count) in [
            (
                usage(Some(1), Some(0), Some(1)),
                "other-model",
                InputCount::IncludesCacheRead,
            ),
            (
                usage(None, Some(0), Some(1)),
                "gpt-x",
                InputCount::IncludesCacheRead,
            ),
            (
                usage(Some(1), Some(0), None),
                "gpt-x",
                InputCount::IncludesCacheRead,
            ),
            (
                usage(Some(1), None, Some(1)),
                "gpt-x",
                InputCount::ExcludesCacheRead,
            ),
        ] {
            let after = estimated(&pricing, usage, model, count);
            assert_eq!((after.cost_usd, after.cost_estimated), (None, false));
        }
    }

    #[test]
    fn a_reported_cost_is_kept_and_an_agents_own_price_wins() {
        let pricing = Pricing {
            price: Some(TokenPrice {
                input_per_mtok: 1.0,
                cache_read_per_mtok: None,
                output_per_mtok: 1.0,
            }),
            table: PriceTable::from([("gpt-x".to_owned(), PRICE)]),
        };
        let reported = Usage {
            cost_usd: Some(0.25),
            ..usage(Some(1_000_000), Some(0), Some(0))
        };
        let kept = estimated(&pricing, reported, "gpt-x", InputCount::IncludesCacheRead);
        assert_eq!((kept.cost_usd, kept.cost_estimated), (Some(0.25), false));
        let own = estimated(
            &pricing,
            usage(Some(1_000_000), Some(500_000), Some(0)),
            "gpt-x",
            InputCount::IncludesCacheRead,
        );
        // The agent's price has no cache price: cached input costs the input price.
        assert_eq!(own.cost_usd, Some(1.0));
    }

    #[test]
    fn old_usage_records_without_the_new_fields_are_read() {
        let old = r#"{"input_tokens":1,"output_tokens":2,"cache_read_tokens":null,"cache_write_tokens":null,"cost_usd":null,"turns":1,"duration_ms":5}"#;
        let usage: Usage = serde_json::from_str(old).expect("an old record is readable");
        assert_eq!(
            (
                usage.cost_estimated,
                usage.session_id,
                usage.reasoning_tokens
            ),
            (false, None, None)
        );
    }
}
