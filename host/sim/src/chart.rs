//! The SVG chart of a run over time: CPU and memory reserved, memory
//! stranded, and tasks waiting, one line per policy (plotters' SVG backend, no fonts needed).

use plotters::prelude::*;

use crate::engine::RunResult;

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws `runs` (label, result) to `path`.
pub fn draw(path: &std::path::Path, runs: &[(String, &RunResult)]) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let root = SVGBackend::new(path, (960, 1160)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((4, 1));
    let end_s = runs
        .iter()
        .flat_map(|(_, r)| r.samples.last())
        .map(|s| s.time_ms as f64 / 1000.0)
        .fold(1.0, f64::max);
    type Pick = fn(&crate::engine::Sample) -> f64;
    let series: [(&str, &str, Pick); 4] = [
        ("CPU reserved", "%", |s| s.cpu * 100.0),
        ("memory reserved", "%", |s| s.memory * 100.0),
        (
            "memory stranded (free where no task's CPU fits)",
            "%",
            |s| s.stranded_memory * 100.0,
        ),
        ("tasks waiting", "tasks", |s| s.pending as f64),
    ];
    for (area, (title, unit, pick)) in panels.iter().zip(series) {
        let top = runs
            .iter()
            .flat_map(|(_, r)| r.samples.iter().map(pick))
            .fold(if unit == "%" { 100.0 } else { 1.0 }, f64::max);
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..end_s, 0f64..top * 1.05)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("virtual time (s)")
            .y_desc(unit)
            .draw()
            .map_err(|e| err(&e))?;
        for (k, (label, r)) in runs.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(
                    r.samples
                        .iter()
                        .map(|s| (s.time_ms as f64 / 1000.0, pick(s))),
                    colour.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
