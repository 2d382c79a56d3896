//! The campaign report's figures, from the journal and what the webhook server
//! recorded: aggregates only (a count per stage, hour, code, group), so a
//! million-recipient campaign makes a report of a few kilobytes.
//!
//! The counts that `status` shows come from the same functions `status` calls, so
//! the two never disagree.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context as _;
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::campaign::Campaign;
use crate::journal::{self, Counts, State};
use crate::phone::E164;
use crate::pricing::Pricing;
use crate::pricing::billed::{self, Billed};
use crate::pricing::estimate::Estimate;
use crate::pricing::estimate::Estimator;
use crate::pricing::market::{LocateCache, MarketMap};
use crate::provider::Family;
use crate::webhook::history::{self, DeliveryCounts};

/// Everything the report shows about one campaign.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignFigures {
    pub campaign: String,
    pub description: Option<String>,
    pub template: String,
    pub language: String,
    pub category: String,
    pub provider: String,
    pub first_sent: String,
    /// When and why it halted, if it is halted now.
    pub halted: Option<(String, String)>,
    /// When the report was made (the one clock).
    pub generated_at: String,
    pub funnel: Vec<Stage>,
    /// The latest plan's figures, as `send` recorded them.
    pub plan: Option<PlanFigures>,
    pub counts: Counts,
    pub deliveries: DeliveryCounts,
    pub failures: Vec<Failure>,
    pub hourly: Vec<Hour>,
    pub time_to_read: TimeToRead,
    pub by_language: Vec<Group>,
    pub by_market: Vec<Group>,
    /// Breakdowns by kept contact columns (`--by city`): column → groups.
    pub by_column: BTreeMap<String, Vec<Group>>,
    pub cost: Cost,
    pub in_doubt: InDoubt,
    /// The template text as sent, per language.
    pub template_text: Vec<(String, String)>,
}

/// One step of the funnel.
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub stage: String,
    pub count: u64,
    /// What it counts, for the reader.
    pub note: String,
}

#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct PlanFigures {
    #[serde(default)]
    pub contacts_read: u64,
    #[serde(default)]
    pub eligible: u64,
    #[serde(default)]
    pub excluded: u64,
    #[serde(default)]
    pub excluded_by_reason: BTreeMap<String, u64>,
    /// Rows the campaign's audience filter left out (not exclusions).
    #[serde(default)]
    pub outside_audience: Option<u64>,
    /// Eligible contacts held by quiet hours or a frequency cap when planned.
    #[serde(default)]
    pub quiet_hours: u64,
    #[serde(default)]
    pub frequency_capped: u64,
}

/// Messages that failed with one code, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub code: String,
    pub count: u64,
    /// Refused when sent, or reported failed after it was accepted.
    pub when: &'static str,
    pub meaning: String,
    pub advice: String,
}

/// Sends, deliveries and reads in one hour (UTC, `2026-11-27T10`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Hour {
    pub hour: String,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
}

/// How long after the send people read it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TimeToRead {
    pub buckets: Vec<(String, u64)>,
    pub median_seconds: Option<u64>,
}

/// One group of a breakdown: its messages and how far they got.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Group {
    pub key: String,
    pub messages: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    pub failed: u64,
    pub read_rate: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    /// The card's price of the accepted messages, when the campaign has a rate card.
    pub estimated: Option<Estimate>,
    /// What Meta's status webhooks marked billable, priced by the card.
    pub billed: Billed,
}

#[derive(Debug, Clone, Serialize)]
pub struct InDoubt {
    pub count: u64,
    /// The first few, for the reader to look up.
    pub examples: Vec<journal::JournalRow>,
    pub advice: &'static str,
}

const IN_DOUBT_ADVICE: &str = "These requests may or may not have reached the provider (a crash, \
a timeout, a 5xx). A delivery status settles one by itself; to send the rest again, run \
`wacampaign send CAMPAIGN.toml --in-doubt resend` (a person may get it twice), or leave them.";

/// The ranks of `message_statuses`.
const DELIVERED: i64 = 2;
const READ: i64 = 3;
const FAILED: i64 = 4;

/// How many in-doubt rows the report names.
const IN_DOUBT_EXAMPLES: usize = 50;

/// The campaign's figures; `by` names kept contact columns to break down by.
pub fn campaign_figures(
    conn: &Connection,
    campaign: &Campaign,
    by: &[String],
) -> anyhow::Result<CampaignFigures> {
    let Some((record, halted)) = journal::campaign_record(conn, &campaign.id)? else {
        anyhow::bail!(
            "campaign `{}` was never sent with this database",
            campaign.id
        );
    };
    let pricing = Pricing::of(campaign)?;
    let plan: Option<PlanFigures> = conn
        .query_row(
            "SELECT plan_stats FROM campaigns WHERE id = ?1",
            params![campaign.id],
            |r| r.get::<_, Option<String>>(0),
        )?
        .and_then(|text| serde_json::from_str(&text).ok());
    let family = match campaign.provider.kind() {
        "twilio" => Family::Twilio,
        _ => Family::Meta,
    };

    let by_sender = history::replies_by_sender(conn, &record.created_at)?;
    let mut pass = Pass::new(campaign, by, pricing.as_ref(), by_sender);
    pass.run(conn, &campaign.id, record.plan_run)?;
    // The same figures `status` shows, from the tallies of this one pass.
    let mut counts = std::mem::take(&mut pass.counts);
    journal::query::add_pruned(conn, &campaign.id, &mut counts)?;
    let pruned = |what| journal::query::pruned(conn, &campaign.id, what);
    let b = &pass.best;
    let deliveries = history::delivery_counts_from(
        conn,
        &campaign.id,
        (
            b.accepted + pruned("delivery:accepted")?,
            b.with_status + pruned("delivery:with_status")?,
            b.delivered + pruned("delivery:delivered")?,
            b.read + pruned("delivery:read")?,
            b.failed + pruned("delivery:failed")?,
        ),
        pass.replies,
    )?;
    let failures = failures(
        conn,
        &campaign.id,
        record.plan_run,
        family,
        &pass.failed_after,
    )?;
    let mut in_doubt = Vec::new();
    journal::rows(
        conn,
        &campaign.id,
        record.plan_run,
        Some(State::InDoubt),
        |row| {
            if in_doubt.len() < IN_DOUBT_EXAMPLES {
                in_doubt.push(row);
            }
            Ok(())
        },
    )?;
    let template_text = template_text(conn, campaign)?;

    let mut funnel = Vec::new();
    let mut stage = |stage: &str, count: u64, note: &str| {
        funnel.push(Stage {
            stage: stage.to_owned(),
            count,
            note: note.to_owned(),
        })
    };
    if let Some(plan) = &plan {
        stage(
            "contacts",
            plan.contacts_read,
            "rows of the contacts file at the latest plan",
        );
        if let Some(outside) = plan.outside_audience {
            stage(
                "outside the audience",
                outside,
                "rows the campaign's audience filter leaves out; not exclusions",
            );
        }
        for (reason, n) in &plan.excluded_by_reason {
            let label = reason.replace('_', " ").replace("opt in", "opt-in");
            stage(&format!("excluded: {label}"), *n, "left out before sending");
        }
        if plan.quiet_hours > 0 {
            stage(
                "held: quiet hours",
                plan.quiet_hours,
                "in quiet hours in their own zone when planned; sent once it opens",
            );
        }
        if plan.frequency_capped > 0 {
            stage(
                "held: frequency cap",
                plan.frequency_capped,
                "at a frequency cap when planned; sent once under it",
            );
        }
    }
    stage("planned", counts.total(), "messages in the journal");
    stage(
        "deferred",
        counts.deferred,
        "waiting for a later run (a rule or a limit)",
    );
    stage("sent", counts.accepted, "accepted by the provider");
    stage(
        "delivered",
        deliveries.delivered,
        "reported delivered (or read)",
    );
    stage(
        "read",
        deliveries.read,
        "reported read; people with read receipts off never are",
    );
    stage(
        "replied",
        deliveries.replied,
        "people who wrote back since the first send",
    );
    stage(
        "failed",
        counts.failed + deliveries.failed_after_accept,
        "refused when sent, or failed after acceptance",
    );
    stage(
        "opted out",
        counts.opted_out,
        "the provider said they stopped these messages",
    );
    stage("in doubt", counts.in_doubt, "may have been sent: see below");

    let in_doubt_count = counts.in_doubt;
    Ok(CampaignFigures {
        campaign: campaign.id.clone(),
        description: campaign.description.clone(),
        template: campaign.template.name.clone(),
        language: campaign.template.language.clone(),
        category: campaign.category.to_string(),
        provider: campaign.provider.kind().to_owned(),
        first_sent: record.created_at,
        halted,
        generated_at: crate::clock::now_string(),
        funnel,
        plan,
        counts,
        deliveries,
        failures,
        hourly: pass
            .hours
            .into_iter()
            .map(|(hour, mut figures)| {
                figures.hour = chrono::DateTime::from_timestamp(hour * 3600, 0)
                    .map(|t| t.format("%Y-%m-%dT%H").to_string())
                    .unwrap_or_default();
                figures
            })
            .collect(),
        time_to_read: pass.reads.finish(),
        by_language: finish_groups(pass.by_language),
        by_market: finish_groups(pass.by_market),
        by_column: pass
            .by_column
            .into_iter()
            .map(|(column, groups)| (column, finish_groups(groups)))
            .collect(),
        cost: Cost {
            estimated: pass
                .estimator
                .map(crate::pricing::estimate::Estimator::finish),
            billed: pass.billed.finish(),
        },
        in_doubt: InDoubt {
            count: in_doubt_count,
            examples: in_doubt,
            advice: IN_DOUBT_ADVICE,
        },
        template_text,
    })
}

/// Failures by code, refused at send and failed after acceptance apart, each with
/// the classification table's meaning and advice.
fn failures(
    conn: &Connection,
    campaign_id: &str,
    plan_run: i64,
    family: Family,
    failed_after: &BTreeMap<String, u64>,
) -> anyhow::Result<Vec<Failure>> {
    let mut out = Vec::new();
    let describe = |code: &str| -> (String, String) {
        match code.parse::<i64>() {
            Ok(n) => crate::provider::classify::explain(family, n).map_or_else(
                || {
                    (
                        "a code the classification table does not know".to_owned(),
                        "Look it up in the provider's error reference; it was retried a few times, then failed."
                            .to_owned(),
                    )
                },
                |(meaning, advice)| (meaning.to_owned(), advice.to_owned()),
            ),
            Err(_) => (
                "no error code: a transport failure or a local rule".to_owned(),
                "See the detail in `wacampaign status --csv`.".to_owned(),
            ),
        }
    };
    for (code, count) in journal::failures_by_code(conn, campaign_id, plan_run)? {
        let (meaning, advice) = describe(&code);
        out.push(Failure {
            code,
            count,
            when: "when sent",
            meaning,
            advice,
        });
    }
    let mut after: Vec<(&String, &u64)> = failed_after.iter().collect();
    after.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    for (code, count) in after {
        let (meaning, advice) = describe(code);
        out.push(Failure {
            code: code.clone(),
            count: *count,
            when: "after acceptance",
            meaning,
            advice,
        });
    }
    Ok(out)
}

/// The template text as sent: what `send` recorded per language, else the campaign
/// file's body with its placeholders.
fn template_text(conn: &Connection, campaign: &Campaign) -> anyhow::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare(
        "SELECT language, text FROM campaign_template_texts t WHERE campaign_id = ?1
           AND id = (SELECT max(id) FROM campaign_template_texts u
                     WHERE u.campaign_id = t.campaign_id AND u.language = t.language)
         ORDER BY language",
    )?;
    let texts: Vec<(String, String)> = stmt
        .query_map(params![campaign.id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if !texts.is_empty() {
        return Ok(texts);
    }
    let body = &campaign.template.body;
    let shown: Vec<String> = body
        .placeholders()
        .iter()
        .map(|k| format!("{{{{{}}}}}", k.as_variable_name()))
        .collect();
    Ok(vec![(
        campaign.template.language.clone(),
        body.render(&shown),
    )])
}

/// One pass over the campaign's journal rows, each with its statuses as folded
/// onto it (`journal::fold`): every figure of the report but the failures refused
/// at send and the rows held in doubt (a few, read through their index).
struct Pass<'a> {
    campaign: &'a Campaign,
    by: &'a [String],
    markets: MarketMap,
    located: LocateCache,
    estimator: Option<Estimator<'a>>,
    /// Rows by state, as `journal::counts` counts them.
    counts: Counts,
    /// The accepted messages by the best status each reached.
    best: BestStatus,
    /// What Meta's webhooks said the messages bill as.
    billed: billed::Tally<'a>,
    /// Inbound messages by sender not yet matched to a person the campaign messaged.
    by_sender: HashMap<u64, u64>,
    /// Replies from the campaign's people, and how many people sent them.
    replies: (u64, u64),
    /// Accepted messages reported failed, by the failed status's code.
    failed_after: BTreeMap<String, u64>,
    /// By hours since the epoch.
    hours: BTreeMap<i64, Hour>,
    reads: Reads,
    by_language: BTreeMap<String, Group>,
    by_market: BTreeMap<String, Group>,
    by_column: BTreeMap<String, BTreeMap<String, Group>>,
}

impl<'a> Pass<'a> {
    fn new(
        campaign: &'a Campaign,
        by: &'a [String],
        pricing: Option<&'a Pricing>,
        by_sender: HashMap<u64, u64>,
    ) -> Self {
        Pass {
            campaign,
            by,
            markets: pricing.map_or_else(MarketMap::builtin, |p| p.markets.clone()),
            located: LocateCache::default(),
            estimator: pricing.map(Pricing::estimator),
            counts: Counts::default(),
            best: BestStatus::default(),
            billed: billed::Tally::new(pricing),
            by_sender,
            replies: (0, 0),
            failed_after: BTreeMap::new(),
            hours: BTreeMap::new(),
            reads: Reads::default(),
            by_language: BTreeMap::new(),
            by_market: BTreeMap::new(),
            by_column: by.iter().map(|c| (c.clone(), BTreeMap::new())).collect(),
        }
    }

    fn run(&mut self, conn: &Connection, campaign_id: &str, plan_run: i64) -> anyhow::Result<()> {
        let language_column = self.campaign.template.language_column.is_some();
        // Every row of the campaign, test sends and earlier plans' rows included:
        // replies and billing count them, the other figures skip them below.
        let mut stmt = conn.prepare(concat!(
            "SELECT ",
            crate::journal::claims::effective_state_of!("j", "c"),
            ", j.phone, j.outcome_at, j.contact,
                    CASE WHEN ?2 THEN j.params END,
                    j.status_rank, j.delivered_ts, j.read_ts,
                    coalesce(CAST(j.status_error_code AS TEXT), 'none'),
                    j.plan_run, j.occurrence GLOB 'test:*', j.person_id,
                    j.billable, j.pricing_category, j.pricing_type, j.wa_id
             FROM campaigns c CROSS JOIN journal j WHERE c.id = ?1 AND j.campaign_id = ?1"
        ))?;
        let mut rows = stmt.query(params![campaign_id, language_column])?;
        while let Some(r) = rows.next()? {
            let state: State = r.get(0)?;
            let phone: Option<String> = r.get(1)?;
            let billable: Option<bool> = r.get(12)?;
            let category: Option<String> = r.get(13)?;
            if billable.is_some() || category.is_some() {
                let wa_id: Option<String> = r.get(15)?;
                self.billed.add(
                    phone.as_deref().or(wa_id.as_deref()),
                    billable,
                    category,
                    r.get(14)?,
                );
            }
            let person: i64 = r.get(11)?;
            if person > 0
                && journal::query::may_have_reached(state)
                && let Some(n) = self.by_sender.remove(&(person as u64))
            {
                self.replies.0 += n;
                self.replies.1 += 1;
            }
            let test: bool = r.get(10)?;
            let earlier_plan = r.get::<_, i64>(9)? != plan_run
                && matches!(state, State::Planned | State::Deferred);
            // Test sends (`send --to`) went to the marketer, not to the audience.
            if test || earlier_plan {
                continue;
            }
            self.counts.add(state, 1);
            let outcome_at: Option<String> = r.get(2)?;
            let best: Option<i64> = r.get(5)?;
            let delivered_at: Option<i64> = r.get(6)?;
            let read_at: Option<i64> = r.get(7)?;
            let accepted = state == State::Accepted;
            if accepted {
                self.best.add(best);
                if best == Some(FAILED) {
                    let code: String = r.get(8)?;
                    *self.failed_after.entry(code).or_default() += 1;
                }
                let sent_at = outcome_at.as_deref().and_then(seconds);
                if let Some(at) = sent_at {
                    self.hour(at).sent += 1;
                }
                // A read implies a delivery, even when the delivered status never came.
                if let Some(at) = delivered_at.or(read_at) {
                    self.hour(at).delivered += 1;
                }
                if let Some(at) = read_at {
                    self.hour(at).read += 1;
                    if let Some(sent) = sent_at {
                        self.reads.add(sent, at);
                    }
                }
            }
            let outcome = Outcome {
                accepted,
                delivered: accepted && best.is_some_and(|b| b == DELIVERED || b == READ),
                read: accepted && best == Some(READ),
                failed: state == State::Failed || (accepted && best == Some(FAILED)),
            };
            let e164 = phone.as_deref().and_then(E164::from_digits);
            if let Some(e164) = e164 {
                let market = self.market(e164);
                add(&mut self.by_market, &market, &outcome);
                if accepted && let Some(estimator) = &mut self.estimator {
                    estimator.add(e164);
                }
            } else if accepted && let Some(estimator) = &mut self.estimator {
                estimator.add_unknown(1);
            }
            let language = match r.get::<_, Option<String>>(4)? {
                Some(params) => serde_json::from_str::<Vec<String>>(&params)
                    .ok()
                    .and_then(|v| v.last().cloned())
                    .unwrap_or_else(|| self.campaign.template.language.clone()),
                None => self.campaign.template.language.clone(),
            };
            add(&mut self.by_language, &language, &outcome);
            if !self.by.is_empty() {
                let contact: Option<String> = r.get(3)?;
                let contact: serde_json::Map<String, serde_json::Value> = contact
                    .and_then(|c| serde_json::from_str(&c).ok())
                    .unwrap_or_default();
                for (column, groups) in &mut self.by_column {
                    let key = match contact.get(column) {
                        Some(serde_json::Value::String(v)) if !v.trim().is_empty() => v.trim(),
                        Some(_) => "(empty)",
                        None => "(not kept)",
                    };
                    add(groups, key, &outcome);
                }
            }
        }
        Ok(())
    }

    fn hour(&mut self, at: i64) -> &mut Hour {
        self.hours.entry(at.div_euclid(3600)).or_default()
    }

    fn market(&mut self, phone: E164) -> String {
        self.markets.locate_cached(phone, &mut self.located).1
    }
}

/// Accepted messages by the best status each reached, as `status` counts them.
#[derive(Default)]
struct BestStatus {
    accepted: u64,
    with_status: u64,
    delivered: u64,
    read: u64,
    failed: u64,
}

impl BestStatus {
    fn add(&mut self, best: Option<i64>) {
        self.accepted += 1;
        self.with_status += u64::from(best.is_some());
        self.delivered += u64::from(matches!(best, Some(DELIVERED | READ)));
        self.read += u64::from(best == Some(READ));
        self.failed += u64::from(best == Some(FAILED));
    }
}

/// How far one message got, for the breakdowns.
struct Outcome {
    accepted: bool,
    delivered: bool,
    read: bool,
    failed: bool,
}

fn add(groups: &mut BTreeMap<String, Group>, key: &str, o: &Outcome) {
    let group = groups.entry(key.to_owned()).or_insert_with(|| Group {
        key: key.to_owned(),
        ..Group::default()
    });
    group.messages += 1;
    group.sent += u64::from(o.accepted);
    group.delivered += u64::from(o.delivered);
    group.read += u64::from(o.read);
    group.failed += u64::from(o.failed);
}

/// Largest first; the read rate of what was sent.
fn finish_groups(groups: BTreeMap<String, Group>) -> Vec<Group> {
    let mut groups: Vec<Group> = groups
        .into_values()
        .map(|mut g| {
            g.read_rate = (g.sent > 0).then(|| g.read as f64 / g.sent as f64);
            g
        })
        .collect();
    groups.sort_by(|a, b| b.messages.cmp(&a.messages).then(a.key.cmp(&b.key)));
    groups
}

/// An RFC 3339 time as seconds since the epoch.
fn seconds(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

/// The time from send to read, in buckets a marketer thinks in.
#[derive(Default)]
struct Reads {
    seconds: Vec<u32>,
}

const READ_BUCKETS: [(&str, u64); 6] = [
    ("under 5 min", 5 * 60),
    ("5 to 15 min", 15 * 60),
    ("15 to 60 min", 3600),
    ("1 to 6 h", 6 * 3600),
    ("6 to 24 h", 24 * 3600),
    ("over 24 h", u64::MAX),
];

impl Reads {
    fn add(&mut self, sent: i64, read: i64) {
        let seconds = (read - sent).max(0);
        self.seconds
            .push(u32::try_from(seconds).unwrap_or(u32::MAX));
    }

    fn finish(mut self) -> TimeToRead {
        let mut counts = [0u64; READ_BUCKETS.len()];
        for s in &self.seconds {
            let i = READ_BUCKETS
                .iter()
                .position(|(_, below)| u64::from(*s) < *below)
                .unwrap_or(READ_BUCKETS.len() - 1);
            counts[i] += 1;
        }
        let median_seconds = if self.seconds.is_empty() {
            None
        } else {
            let mid = self.seconds.len() / 2;
            let (_, median, _) = self.seconds.select_nth_unstable(mid);
            Some(u64::from(*median))
        };
        TimeToRead {
            buckets: READ_BUCKETS
                .iter()
                .zip(counts)
                .map(|((label, _), n)| ((*label).to_owned(), n))
                .collect(),
            median_seconds,
        }
    }
}

/// A campaign's key rates, for `report --all`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub campaign: String,
    pub first_sent: String,
    pub sent: u64,
    pub delivery_rate: Option<f64>,
    pub read_rate: Option<f64>,
    pub reply_rate: Option<f64>,
    /// Opted out (by the provider's answer, or since the first send) per message sent.
    pub opt_out_rate: Option<f64>,
    /// Estimated cost per message read, with a rate card.
    pub cost_per_read: Option<String>,
}

/// The comparison row of every campaign first sent since `since` (RFC 3339);
/// `files` gives rate cards for the campaigns they name.
pub fn compare(
    conn: &Connection,
    since: &str,
    files: &[Campaign],
) -> anyhow::Result<Vec<Comparison>> {
    let mut stmt = conn.prepare(
        "SELECT id, created_at, plan_run FROM campaigns WHERE created_at >= ?1 ORDER BY created_at",
    )?;
    let campaigns: Vec<(String, String, i64)> = stmt
        .query_map(params![since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::new();
    for (id, first_sent, plan_run) in campaigns {
        let counts = journal::counts(conn, &id, Some(plan_run))?;
        let d = history::delivery_counts(conn, &id, &first_sent)?;
        let opted_out_since = journal::query::accepted_then_opted_out(conn, &id, &first_sent)?;
        let attempted = counts.accepted + counts.opted_out;
        let rate = |n: u64, of: u64| (of > 0).then(|| n as f64 / of as f64);
        let cost_per_read = match files.iter().find(|c| c.id == id) {
            Some(campaign) if d.read > 0 => {
                let pricing = Pricing::of(campaign)
                    .with_context(|| format!("the rate card of {}", campaign.file.display()))?;
                match pricing {
                    None => None,
                    Some(p) => {
                        let mut estimator = p.estimator();
                        journal::rows(conn, &id, plan_run, Some(State::Accepted), |row| {
                            match E164::from_digits(&row.phone) {
                                Some(phone) => estimator.add(phone),
                                None => estimator.add_unknown(1),
                            }
                            Ok(())
                        })?;
                        let estimate = estimator.finish();
                        Some(format!(
                            "{:.4} {}",
                            estimate.total.as_f64() / d.read as f64,
                            estimate.currency
                        ))
                    }
                }
            }
            _ => None,
        };
        out.push(Comparison {
            campaign: id,
            first_sent,
            sent: counts.accepted,
            delivery_rate: rate(d.delivered, d.accepted),
            read_rate: rate(d.read, d.accepted),
            reply_rate: rate(d.replied, d.accepted),
            opt_out_rate: rate(counts.opted_out + opted_out_since, attempted),
            cost_per_read,
        });
    }
    Ok(out)
}
