//! The campaign report as one self-contained HTML file: minijinja fills
//! `report.html.j2` (autoescaped), and the charts are inline SVG from [`super::chart`].
//! Nothing is fetched when the file is opened: no script, font, image or stylesheet
//! from anywhere, so it reads the same offline and as an e-mail attachment.

use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::chart::{self, hex};
use super::figures::{CampaignFigures, Comparison};

const TEMPLATE: &str = include_str!("report.html.j2");

/// An inline chart and the colours of its data marks (`#1F77B4,#2CA02C`).
#[derive(Debug, Clone, Serialize, Default)]
struct Chart {
    svg: String,
    marks: String,
}

/// The charts of one campaign; an empty chart is left out by the template.
#[derive(Debug, Clone, Serialize, Default)]
struct Charts {
    funnel: Chart,
    failures: Chart,
    hourly: Chart,
    reads: Chart,
}

/// The page for one or more campaigns, and the side-by-side comparison if any.
pub fn render(
    reports: &[CampaignFigures],
    comparison: Option<(&str, &[Comparison])>,
) -> anyhow::Result<String> {
    let charts = reports
        .iter()
        .map(charts_of)
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow::anyhow!("drawing a chart: {e}"))?;
    let comparison_chart = match comparison {
        Some((_, rows)) if !rows.is_empty() => {
            let labels: Vec<String> = rows.iter().map(|c| c.campaign.clone()).collect();
            let reads: Vec<u64> = rows
                .iter()
                .map(|c| (c.read_rate.unwrap_or(0.0) * 1000.0).round() as u64 / 10)
                .collect();
            Chart {
                svg: chart::bars("read rate, %", &labels, &reads, chart::READ)
                    .map_err(|e| anyhow::anyhow!("drawing a chart: {e}"))?,
                marks: hex(chart::READ),
            }
        }
        _ => Chart::default(),
    };
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_function("pct", |rate: Option<f64>| {
        rate.map_or_else(String::new, |r| format!("{:.1}%", r * 100.0))
    });
    env.add_function("duration", |seconds: u64| {
        crate::ui::human_duration(seconds)
    });
    env.add_function("breakdowns", breakdowns);
    env.add_template("report.html", TEMPLATE)?;
    let title = match reports {
        [one] => format!("{}: campaign report", one.campaign),
        _ => "wacampaign: campaigns compared".to_owned(),
    };
    let reports: Vec<serde_json::Value> = reports.iter().map(with_money_text).collect();
    let page = env.get_template("report.html")?.render(context! {
        title,
        version => env!("CARGO_PKG_VERSION"),
        reports => Value::from(Serde(&reports)),
        charts => Value::from(Serde(&charts)),
        comparison => Value::from(Serde(comparison.map(|(_, rows)| rows))),
        since => comparison.map(|(since, _)| since),
        comparison_chart => Value::from(Serde(&comparison_chart)),
    })?;
    Ok(page)
}

/// The figures as the template reads them, with each cost's total spelled with
/// its currency (`8.0215 USD`).
fn with_money_text(figures: &CampaignFigures) -> serde_json::Value {
    let mut value = serde_json::to_value(figures).unwrap_or_default();
    if let Some(estimate) = &figures.cost.estimated {
        value["cost"]["estimated"]["total_text"] = estimate.total_money().to_string().into();
    }
    if let Some(estimate) = &figures.cost.billed.estimated_cost {
        value["cost"]["billed"]["estimated_cost"]["total_text"] =
            estimate.total_money().to_string().into();
    }
    value
}

/// The breakdown tables of a report: language, market, then each `--by` column.
fn breakdowns(report: Value) -> Result<Value, minijinja::Error> {
    let mut out = Vec::new();
    for (name, key) in [("language", "by_language"), ("market", "by_market")] {
        out.push(context! { name, groups => report.get_attr(key)? });
    }
    let by_column = report.get_attr("by_column")?;
    if let Ok(columns) = by_column.try_iter() {
        for column in columns {
            let groups = by_column.get_item(&column)?;
            out.push(context! { name => column, groups });
        }
    }
    Ok(Value::from(out))
}

fn charts_of(r: &CampaignFigures) -> Result<Charts, String> {
    let mut charts = Charts::default();
    let (labels, values): (Vec<String>, Vec<u64>) = r
        .funnel
        .iter()
        .filter(|s| !s.stage.starts_with("excluded") && s.stage != "contacts")
        .map(|s| (s.stage.clone(), s.count))
        .unzip();
    if values.iter().any(|v| *v > 0) {
        charts.funnel = Chart {
            svg: chart::bars("messages by stage", &labels, &values, chart::SENT)?,
            marks: hex(chart::SENT),
        };
    }
    if !r.failures.is_empty() {
        let labels: Vec<String> = r
            .failures
            .iter()
            .map(|f| {
                format!(
                    "{} ({})",
                    f.code,
                    if f.when == "when sent" {
                        "send"
                    } else {
                        "later"
                    }
                )
            })
            .collect();
        let values: Vec<u64> = r.failures.iter().map(|f| f.count).collect();
        charts.failures = Chart {
            svg: chart::bars("failures by code", &labels, &values, chart::FAILED)?,
            marks: hex(chart::FAILED),
        };
    }
    if !r.hourly.is_empty() {
        let labels: Vec<String> = r
            .hourly
            .iter()
            .map(|h| {
                h.hour
                    .get(11..13)
                    .map_or_else(|| h.hour.clone(), |hh| format!("{hh}h"))
            })
            .collect();
        // A single hour is drawn as a flat line two points wide, so it has a length.
        let series = |f: fn(&super::figures::Hour) -> u64| -> Vec<u64> {
            let mut v: Vec<u64> = r.hourly.iter().map(f).collect();
            if v.len() == 1 {
                v.push(v[0]);
            }
            v
        };
        let mut hour_labels = labels.clone();
        if hour_labels.len() == 1 {
            hour_labels.push(String::new());
        }
        charts.hourly = Chart {
            svg: chart::lines(
                "per hour (UTC)",
                &hour_labels,
                &[
                    ("sent", chart::SENT, series(|h| h.sent)),
                    ("delivered", chart::DELIVERED, series(|h| h.delivered)),
                    ("read", chart::READ, series(|h| h.read)),
                ],
            )?,
            marks: [chart::SENT, chart::DELIVERED, chart::READ]
                .map(hex)
                .join(","),
        };
    }
    if r.time_to_read.median_seconds.is_some() {
        let (labels, values): (Vec<String>, Vec<u64>) =
            r.time_to_read.buckets.iter().cloned().unzip();
        charts.reads = Chart {
            svg: chart::bars("time from send to read", &labels, &values, chart::READ)?,
            marks: hex(chart::READ),
        };
    }
    Ok(charts)
}
