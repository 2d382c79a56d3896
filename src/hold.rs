//! Holds: contacts who may be messaged, but not now. Quiet hours in the contact's
//! time zone and frequency caps defer a message (the journal writes the hold:
//! `journal::hold`), never fail it.
//!
//! Both are judged when the plan is made, for the report and the journal, and again
//! when a row is claimed for sending, so a long run that crosses 21:00 stops
//! messaging those contacts and two campaigns running at once share a cap.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rusqlite::Connection;

use crate::campaign::{Campaign, Category};
use crate::frequency_cap::{self, Cap, CapIndex};
use crate::phone::E164;
use crate::quiet_hours::{self, QuietHours};

/// Why and until when a contact waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub until: DateTime<Utc>,
    pub kind: HoldKind,
    /// "quiet hours until 09:00 America/Monterrey".
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    QuietHours,
    FrequencyCap,
}

/// A campaign's rules that hold contacts back.
#[derive(Debug, Clone)]
pub struct Rules {
    quiet_hours: Option<QuietHours>,
    caps: Vec<Cap>,
    category: Category,
    campaign_id: String,
    /// For contacts whose number gives no zone.
    zone: Tz,
}

impl Rules {
    /// `None` when the campaign has neither quiet hours nor caps.
    pub fn of(campaign: &Campaign) -> Option<Rules> {
        let caps: Vec<Cap> = campaign
            .frequency_caps
            .iter()
            .filter(|c| c.applies_to(campaign.category))
            .cloned()
            .collect();
        if campaign.quiet_hours.is_none() && caps.is_empty() {
            return None;
        }
        Some(Rules {
            quiet_hours: campaign.quiet_hours.clone(),
            caps,
            category: campaign.category,
            campaign_id: campaign.id.clone(),
            zone: campaign.timezone,
        })
    }

    pub fn has_caps(&self) -> bool {
        !self.caps.is_empty()
    }

    pub fn caps(&self) -> &[Cap] {
        &self.caps
    }

    pub fn category(&self) -> Category {
        self.category
    }

    /// A person known only by a BSUID has no number to place them: the campaign's
    /// zone stands in, as for a number libphonenumber has no zone for.
    fn quiet(
        &self,
        phone: Option<E164>,
        zone: Option<Tz>,
        now: DateTime<Utc>,
        mut memo: Option<&mut PlanMemo>,
    ) -> Option<Hold> {
        let quiet = self.quiet_hours.as_ref()?;
        let own;
        // At planning `now` is fixed, so each zone set's answer is the same for
        // every contact: worked out once per set, not once per contact.
        let (zones, key): (&[Tz], MemoKey) = match zone {
            Some(z) => {
                own = [z];
                (&own, MemoKey::Zone(z))
            }
            None => match phone.map_or(&[][..], crate::timezone::of_phone) {
                [] => {
                    own = [self.zone];
                    (&own, MemoKey::Zone(self.zone))
                }
                zones => (zones, MemoKey::Prefix(zones.as_ptr() as usize)),
            },
        };
        let key = memo.is_some().then_some(key);
        if let (Some(key), Some(memo)) = (&key, memo.as_deref_mut())
            && let Some(hit) = memo.quiet.get(key)
        {
            return hit.clone();
        }
        let hold = quiet.closed(zones, now).map(|(until, zone)| Hold {
            until,
            kind: HoldKind::QuietHours,
            detail: quiet_hours::describe(until, zone, now),
        });
        if let (Some(key), Some(memo)) = (key, memo) {
            memo.quiet.insert(key, hold.clone());
        }
        hold
    }

    /// When the plan is made: quiet hours, then the caps as read before planning.
    pub fn at_plan(
        &self,
        phone: Option<E164>,
        person: i64,
        zone: Option<Tz>,
        caps: &CapIndex,
        now: DateTime<Utc>,
        memo: &mut PlanMemo,
    ) -> Option<Hold> {
        let capped = if self.caps.is_empty() {
            None
        } else {
            caps.over(person).map(|o| Hold {
                until: o.until,
                kind: HoldKind::FrequencyCap,
                detail: o.detail.clone(),
            })
        };
        later(self.quiet(phone, zone, now, Some(memo)), capped)
    }

    /// When a journal row is claimed for sending, inside the claim's transaction.
    pub fn at_claim(
        &self,
        conn: &Connection,
        person: i64,
        phone: Option<E164>,
        // The row's own zone, as the claim read it with the row.
        zone: Option<&str>,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<Option<Hold>> {
        let quiet = if self.quiet_hours.is_some() {
            self.quiet(
                phone,
                zone.and_then(|z| crate::timezone::parse(z).ok()),
                now,
                None,
            )
        } else {
            None
        };
        let capped = frequency_cap::check(
            conn,
            &self.caps,
            self.category,
            person,
            &self.campaign_id,
            now,
        )?
        .map(|o| Hold {
            until: o.until,
            kind: HoldKind::FrequencyCap,
            detail: o.detail,
        });
        Ok(later(quiet, capped))
    }
}

/// Quiet-hours answers already worked out during one plan.
#[derive(Debug, Default)]
pub struct PlanMemo {
    quiet: HashMap<MemoKey, Option<Hold>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MemoKey {
    /// A prefix's zone set, by its address in the static table.
    Prefix(usize),
    /// One zone (from the contacts file, or the campaign's).
    Zone(Tz),
}

fn later(a: Option<Hold>, b: Option<Hold>) -> Option<Hold> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b.until > a.until { b } else { a }),
        (a, b) => a.or(b),
    }
}
