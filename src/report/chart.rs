//! The report's charts, drawn by plotters into SVG strings that go inline in the
//! page: no script, no network, and readable in a mail client that shows HTML.
//!
//! Each data series has its own colour, written on the chart's `<figure>` too
//! (`data-marks`), so the browser test can find the marks that carry data.

use plotters::prelude::*;

/// The data colours, distinct from the axes' black and the grid's greys.
pub const SENT: RGBColor = RGBColor(0x1f, 0x77, 0xb4);
pub const DELIVERED: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
pub const READ: RGBColor = RGBColor(0x94, 0x67, 0xbd);
pub const FAILED: RGBColor = RGBColor(0xd6, 0x27, 0x28);

/// A colour as the SVG writes it (`#1F77B4`), for `data-marks`.
pub fn hex(color: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", color.0, color.1, color.2)
}

const WIDTH: u32 = 640;
const HEIGHT: u32 = 300;

/// A bar per label.
pub fn bars(
    title: &str,
    labels: &[String],
    values: &[u64],
    color: RGBColor,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top = values.iter().copied().max().unwrap_or(0).max(1);
        let n = labels.len().max(1) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d((0u32..n).into_segmented(), 0u64..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len())
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(color.filled())
                    .margin(6)
                    .data(values.iter().enumerate().map(|(i, v)| (i as u32, *v))),
            )
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// One line per series over the same labels (hours). The legend is the page's (HTML
/// beside the chart), so every mark in a series' colour is data.
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[(&str, RGBColor, Vec<u64>)],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let top = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .max()
            .unwrap_or(0)
            .max(1);
        let last = labels.len().saturating_sub(1).max(1) as u32;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0u32..last, 0u64..top + top / 10 + 1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_labels(labels.len().min(8))
            .x_label_formatter(&|x| labels.get(*x as usize).cloned().unwrap_or_default())
            .draw()
            .map_err(|e| e.to_string())?;
        for (_, color, values) in series {
            let color = *color;
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, v)| (i as u32, *v)),
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_their_data_colour() {
        let svg = bars("t", &["a".into(), "b".into()], &[3, 5], SENT).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains(&hex(SENT)), "{svg}");
        let svg = lines(
            "t",
            &["10".into(), "11".into()],
            &[("sent", READ, vec![1, 4])],
        )
        .unwrap();
        assert!(
            svg.contains("<polyline") && svg.contains(&hex(READ)),
            "{svg}"
        );
    }
}
