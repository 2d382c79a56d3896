//! Who may receive a campaign: a recorded opt-in for its purpose and no opt-out, and,
//! for a session campaign, a customer-service window open now.

use rusqlite::Connection;

use crate::campaign::{Campaign, MessageKind};
use crate::consent::{ConsentIndex, Ledger};
use crate::exclusion::{ConsentGate, Exclusion};
use crate::identity::Bsuid;
use crate::phone::E164;
use crate::service_window::OpenWindows;
use crate::suppression::{Identity, Suppressions};

/// The ledger and the windows, loaded once for a whole plan.
#[derive(Debug, Clone)]
pub struct Gate {
    pub consent: ConsentIndex,
    /// `Some` for a session campaign: only these windows are open.
    pub windows: Option<OpenWindows>,
    /// The last ledger event the index includes; later ones are applied as a send
    /// claims rows, so an opt-out recorded while the ledger loads still wins.
    pub consent_seen: i64,
    /// People erased (`wacampaign erase`), left out before anything else.
    pub erased: Option<Suppressions>,
}

impl Gate {
    /// Loads what `campaign` needs from the database; without one, nobody has an
    /// opt-in or an open window.
    pub fn load(conn: Option<&Connection>, campaign: &Campaign) -> rusqlite::Result<Gate> {
        let purpose = campaign.purpose();
        let session = campaign.kind == MessageKind::Session;
        // Read the high-water mark first: an event written during the load is then
        // re-applied later rather than missed.
        let consent_seen = match conn {
            Some(conn) => Ledger::new(conn).head_id()?,
            None => 0,
        };
        let consent = match conn {
            Some(conn) => ConsentIndex::load(conn, purpose)?,
            None => ConsentIndex::empty(purpose),
        };
        let windows = match (session, conn) {
            (false, _) => None,
            (true, Some(conn)) => Some(OpenWindows::load(conn, crate::clock::now())?),
            (true, None) => Some(OpenWindows::default()),
        };
        Ok(Gate {
            consent,
            windows,
            consent_seen,
            erased: None,
        })
    }
}

impl ConsentGate for Gate {
    fn check_bsuid(&self, phone: Option<E164>, bsuid: &Bsuid) -> Result<(), Exclusion> {
        let identities = phone
            .map(Identity::Phone)
            .into_iter()
            .chain([Identity::from(bsuid)]);
        if let Some(erased) = self.erased.as_ref() {
            for identity in identities {
                if let Some(e) = erased.lookup(&identity) {
                    return Err(Exclusion::Erased {
                        date: crate::clock::date_part(&e.erased_at).to_owned(),
                    });
                }
            }
        }
        self.consent.check_contact(phone, Some(bsuid))?;
        // Windows are recorded by number: a contact without one has none open here.
        match (&self.windows, phone) {
            (Some(windows), Some(phone)) if !windows.is_open(phone) => Err(Exclusion::NoWindow),
            (Some(_), None) => Err(Exclusion::NoWindow),
            _ => Ok(()),
        }
    }

    fn person(&self, phone: Option<E164>, bsuid: Option<&Bsuid>) -> i64 {
        self.consent.person(phone, bsuid)
    }

    fn slots(&self) -> usize {
        self.consent.slots()
    }

    fn slot(&self, person: i64) -> Option<usize> {
        self.consent.slot(person)
    }

    fn check(&self, phone: E164) -> Result<(), Exclusion> {
        // An erased person first: nothing else about them is left to decide on.
        if let Some(erased) = self
            .erased
            .as_ref()
            .and_then(|s| s.lookup(&Identity::Phone(phone)))
        {
            return Err(Exclusion::Erased {
                date: crate::clock::date_part(&erased.erased_at).to_owned(),
            });
        }
        // Then consent: an opt-out is the reason that matters most.
        self.consent.check(phone)?;
        match &self.windows {
            Some(windows) if !windows.is_open(phone) => Err(Exclusion::NoWindow),
            _ => Ok(()),
        }
    }
}
