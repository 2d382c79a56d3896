//! The built-in simulator: a provider with no network, for trying a campaign end to
//! end without a Meta account. It answers like the Cloud API would, with realistic
//! latency and a seeded mix of outcomes, so a run is repeatable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{Departure, Message, Provider, Response, SendFuture};
use crate::campaign::{Category, SimulatorConfig};

/// Requests answered normally before the throttling burst starts.
const THROTTLE_AFTER: u64 = 20;

pub struct Simulator {
    config: SimulatorConfig,
    marketing: bool,
    requests: AtomicU64,
    /// Mixed into message ids, so two campaigns run with the same seed do not
    /// hand out the same ids (a status would then find the wrong campaign's row).
    campaign: u64,
}

impl Simulator {
    pub fn new(config: SimulatorConfig, category: Category, campaign_id: &str) -> Simulator {
        // FNV-1a: stable across builds and runs, unlike the standard library's hasher.
        let campaign = campaign_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Simulator {
            config,
            marketing: category == Category::Marketing,
            requests: AtomicU64::new(0),
            campaign,
        }
    }

    async fn answer(&self, message: &Message, mut departure: Departure) -> Response {
        departure.depart().await;
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(
            self.config.seed ^ (message.to.person() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let latency = self.config.latency_ms as f64 * (0.5 + rng.f64());
        tokio::time::sleep(Duration::from_micros((latency * 1000.0) as u64)).await;

        let burst = u64::from(self.config.throttle_burst);
        if (THROTTLE_AFTER..THROTTLE_AFTER + burst).contains(&n) {
            return rejected(
                429,
                130429,
                "(#130429) Rate limit hit: Cloud API message throughput has been reached.",
            );
        }
        if rng.f64() < self.config.undeliverable_rate {
            return rejected(
                400,
                131026,
                "(#131026) Message undeliverable: the number is not on WhatsApp.",
            );
        }
        if self.marketing && rng.f64() < self.config.opt_out_rate {
            return rejected(
                400,
                131050,
                "(#131050) Unable to deliver the message: the user has stopped marketing messages.",
            );
        }
        Response::Accepted {
            message_id: Some(format!(
                "wamid.SIM{:016X}{:08X}",
                rng.u64(..) ^ self.campaign,
                n
            )),
            wa_id: message.to.phone().map(|p| p.digits().to_string()),
            status: Some("accepted".to_owned()),
        }
    }
}

fn rejected(http_status: u16, code: i64, detail: &str) -> Response {
    Response::Rejected {
        family: super::Family::Meta,
        http_status,
        code: Some(code),
        detail: detail.to_owned(),
        retry_after: None,
    }
}

impl Provider for Simulator {
    fn send<'a>(&'a self, message: &'a Message, departure: Departure) -> SendFuture<'a> {
        Box::pin(self.answer(message, departure))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::provider::To;
    use crate::provider::departure::Pace;

    struct Unpaced;

    impl Pace for Unpaced {
        fn depart(&self) -> Result<(), Duration> {
            Ok(())
        }
        fn abandon(&self) {}
    }

    fn config() -> SimulatorConfig {
        SimulatorConfig {
            seed: 7,
            latency_ms: 0,
            undeliverable_rate: 0.0,
            opt_out_rate: 0.0,
            throttle_burst: 0,
            templates: None,
        }
    }

    /// The id the simulator of `campaign` gives its first message, to one person.
    fn first_id(campaign: &str) -> Option<String> {
        let simulator = Simulator::new(config(), Category::Utility, campaign);
        let message = Message {
            to: To::Phone(crate::phone::E164::normalize("+525512345678", None).expect("a number")),
            values: Vec::new(),
            occurrence: String::new(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        match runtime.block_on(simulator.answer(&message, Departure::paced(Arc::new(Unpaced)))) {
            Response::Accepted { message_id, .. } => message_id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_campaigns_with_one_seed_give_different_message_ids_and_a_rerun_the_same() {
        let promo = first_id("promo");
        assert!(
            promo
                .as_deref()
                .is_some_and(|id| id.starts_with("wamid.SIM"))
        );
        assert_ne!(
            promo,
            first_id("notice"),
            "a status must find one campaign's row"
        );
        assert_eq!(promo, first_id("promo"), "a run is repeatable");
    }
}
