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
}

impl Simulator {
    pub fn new(config: SimulatorConfig, category: Category) -> Simulator {
        Simulator {
            config,
            marketing: category == Category::Marketing,
            requests: AtomicU64::new(0),
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
            message_id: Some(format!("wamid.SIM{:016X}{:08X}", rng.u64(..), n)),
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
