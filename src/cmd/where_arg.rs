//! `--where`: a one-off audience for `check`, `preview` and `send`.

use crate::audience::AudienceSpec;
use crate::campaign::Campaign;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct WhereArg {
    /// Only the rows this CEL expression is true for, in place of the campaign's
    /// `[audience] where` for this run (its `[audience.columns]` types still apply).
    /// Columns are strings: compare numbers with number(col) and dates with
    /// date(col), e.g. --where 'city == "Monterrey" && date(bought_at) >= today() -
    /// days(90)'. Rows outside it are counted apart from exclusions.
    #[arg(long = "where", value_name = "EXPRESSION")]
    pub expression: Option<String>,
}

impl WhereArg {
    /// Puts the expression in the campaign; a parse error names `--where` and the
    /// position.
    pub fn apply(&self, campaign: &mut Campaign) -> anyhow::Result<()> {
        let Some(expression) = &self.expression else {
            return Ok(());
        };
        let columns = campaign
            .audience
            .as_ref()
            .map(|a| a.columns.clone())
            .unwrap_or_default();
        let spec = AudienceSpec::new(expression, "--where".into(), columns)
            .map_err(|m| anyhow::anyhow!("--where: {m}"))?;
        campaign.audience = Some(spec);
        Ok(())
    }
}

/// Reads who is at the campaign's frequency caps, when it has caps and the
/// database exists (a database that does not exist holds no earlier messages).
pub fn with_caps<'a>(
    ctx: &crate::cmd::Context,
    planner: crate::plan::Planner<'a>,
) -> anyhow::Result<crate::plan::Planner<'a>> {
    use anyhow::Context as _;
    if !planner.has_caps() {
        return Ok(planner);
    }
    match crate::db::Db::open_existing(&ctx.db)? {
        Some(db) => planner
            .with_caps(&db.conn)
            .with_context(|| format!("reading earlier messages from {}", ctx.db.display())),
        None => Ok(planner),
    }
}
