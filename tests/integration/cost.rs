//! The cost estimate: `check` and `send` price a plan from the shipped example rate
//! card by market and category, `--max-cost` refuses a run above it, and a bad card
//! is located. Amounts are compared with sums done by hand on the card's rates.

use serde_json::Value;

use crate::support::{CAMPAIGN, Fixture, edit, shipped_campaigns, stdout};

const CARD: &str = "meta-rate-card-EXAMPLE-rates-not-current-prices.csv";

/// Two Mexican numbers, one each in Brazil, the US, Nicaragua (Rest of Latin
/// America) and Germany.
const MIXED: &str = "name,phone,date\n\
    Ana,5512345678,lunes\n\
    Beto,+52 55 8765 4321,martes\n\
    Caio,+55 11 98765 4321,lunes\n\
    Dana,+1 415 555 0123,lunes\n\
    Elsa,+505 8812 3456,lunes\n\
    Fritz,+49 151 23456789,lunes\n";

fn priced(contacts: &str, card: &str, provider_simulator: bool) -> Fixture {
    let mut campaign = format!("{CAMPAIGN}\n[pricing]\nrate_card = \"{card}\"\n");
    if provider_simulator {
        campaign = edit(
            &campaign,
            "kind = \"cloud_api\"\nphone_number_id = \"106540352242922\"\n",
            "kind = \"simulator\"\nlatency_ms = 1\nundeliverable_rate = 0.0\nopt_out_rate = 0.0\n",
        );
    }
    let fx = Fixture::with_contacts(contacts);
    fx.write("campaign.toml", campaign);
    fx
}

fn shipped_card() -> String {
    shipped_campaigns().join(CARD).display().to_string()
}

fn json_data(out: &str, kind: &str) -> Value {
    out.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {out}"))["data"]
        .clone()
}

#[test]
fn the_estimate_of_a_mixed_country_list_is_the_sum_by_hand_on_the_shipped_card() {
    let header = std::fs::read_to_string(shipped_campaigns().join(CARD)).unwrap();
    assert!(
        header.starts_with("# EXAMPLE RATES, NOT CURRENT PRICES."),
        "the shipped card says its rates are examples"
    );
    // Utility rates from the shipped card, by hand:
    //   Mexico 2 × 0.0085 = 0.0170, Brazil 0.0068, North America 0.0034,
    //   Rest of Latin America 0.0113, Germany 0.0550: 0.0935 USD.
    let fx = priced(MIXED, &shipped_card(), false);
    let out = stdout(&fx.check(&["--json"]).assert().code(0));
    let cost = &json_data(&out, "check")["cost"];
    assert_eq!(cost["currency"], "USD");
    assert_eq!(cost["total"], "0.0935");
    assert_eq!(cost["priced_messages"], 6);
    assert_eq!(cost["unpriced_messages"], 0);
    let lines: Vec<(String, String, u64, String)> = cost["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["market"].as_str().unwrap().to_owned(),
                l["category"].as_str().unwrap().to_owned(),
                l["messages"].as_u64().unwrap(),
                l["cost"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let line = |m: &str, n: u64, c: &str| (m.to_owned(), "utility".to_owned(), n, c.to_owned());
    assert_eq!(
        lines,
        [
            line("Brazil", 1, "0.0068"),
            line("Germany", 1, "0.055"),
            line("Mexico", 2, "0.017"),
            line("North America", 1, "0.0034"),
            line("Rest of Latin America", 1, "0.0113"),
        ]
    );
    let leaves_out = cost["leaves_out"].to_string();
    assert!(leaves_out.contains("volume tiers"), "{leaves_out}");

    let text = stdout(&fx.check(&[]).assert().code(0));
    assert!(text.contains("0.0935 USD for 6 messages"), "{text}");
    assert!(
        text.contains("Rest of Latin America") && text.contains("leaves out: volume tiers"),
        "{text}"
    );
}

#[test]
fn max_cost_below_the_estimate_sends_nothing_and_above_it_sends() {
    let fx = priced(MIXED, &shipped_card(), true);
    fx.check(&[]).assert().code(0);
    let refused = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes", "--max-cost", "0.09USD"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(
        stderr.contains("estimated at 0.0935 USD, above --max-cost 0.09 USD: nothing was sent"),
        "{stderr}"
    );
    let accepted = |fx: &Fixture| {
        let conn = rusqlite::Connection::open(fx.path("wacampaign.db")).unwrap();
        conn.query_row(
            "SELECT count(*) FROM journal WHERE state NOT IN ('planned')",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    assert_eq!(accepted(&fx), 0, "nothing left the planned state");
    // Another currency than the card's is refused, whatever the amount.
    let other = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes", "--max-cost", "1000 EUR"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&other.get_output().stderr).into_owned();
    assert!(
        stderr.contains("--max-cost is in EUR, but the rate card") && stderr.contains("is in USD"),
        "{stderr}"
    );
    assert_eq!(accepted(&fx), 0);
    // An amount without its currency is a usage error that says how to write it.
    let bare = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes", "--max-cost", "25"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&bare.get_output().stderr).into_owned();
    assert!(stderr.contains("`25USD`"), "{stderr}");
    assert_eq!(accepted(&fx), 0);
    // A dry run is refused the same way.
    fx.wacampaign()
        .args([
            "send",
            "campaign.toml",
            "--dry-run",
            "--max-cost",
            "0.05USD",
        ])
        .assert()
        .code(2);
    // A limit that fits: the first three rows (MX, MX, BR) cost 0.0238.
    let sent = fx
        .wacampaign()
        .args([
            "--json",
            "send",
            "campaign.toml",
            "--yes",
            "--limit",
            "3",
            "--max-cost",
            "0.0238 USD",
        ])
        .assert()
        .code(0);
    let summary = json_data(&stdout(&sent), "send_summary");
    assert_eq!(summary["cost"]["total"], "0.0238", "{summary}");
    assert_eq!(accepted(&fx), 3);
    // The rest, estimated on what is left to send.
    let rest = fx
        .wacampaign()
        .args([
            "--json",
            "send",
            "campaign.toml",
            "--yes",
            "--max-cost",
            "25USD",
        ])
        .assert()
        .code(0);
    let summary = json_data(&stdout(&rest), "send_summary");
    assert_eq!(summary["cost"]["total"], "0.0697", "{summary}");
    assert_eq!(accepted(&fx), 6);
}

#[test]
fn a_market_missing_from_the_card_is_reported_with_its_count_never_as_zero() {
    let fx = priced(MIXED, "card.csv", true);
    fx.write(
        "card.csv",
        "market,currency,marketing,utility,authentication\n\
         Mexico,USD,0.0305,0.0085,0.0085\n\
         Brazil,USD,0.0625,,0.0068\n",
    );
    let text = stdout(&fx.check(&[]).assert().code(0));
    assert!(text.contains("0.017 USD for 2 messages"), "{text}");
    for missing in [
        "no rate for 1 messages to market Brazil (utility: no utility rate in the card)",
        "no rate for 1 messages to market Germany (utility: no market row in the card)",
        "no rate for 1 messages to market North America",
        "no rate for 1 messages to market Rest of Latin America",
    ] {
        assert!(text.contains(missing), "{missing}\n{text}");
    }
    // The estimate is incomplete, so a limit cannot be checked against it.
    let refused = fx
        .wacampaign()
        .args(["send", "campaign.toml", "--yes", "--max-cost", "100USD"])
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&refused.get_output().stderr).into_owned();
    assert!(stderr.contains("has no rate for 4"), "{stderr}");
}

#[test]
fn a_non_numeric_rate_is_refused_where_it_is() {
    let fx = priced(MIXED, "card.csv", false);
    fx.write(
        "card.csv",
        "market,currency,marketing,utility,authentication\n\
         Mexico,USD,0.0305,0.0085,0.0085\n\
         Brazil,USD,0.0625,ask sales,0.0068\n",
    );
    fx.check(&[]).assert().code(2).stdout("").stderr(
        "error: card.csv:3:19: the utility rate for Brazil is `ask sales`, not a number; write it \
         as 0.0250 (or leave it empty when the market has none)\n",
    );
}
