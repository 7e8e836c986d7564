//! Server-rendered SVG charts for reports: no script, printable, labels escaped. Values are
//! integers (counts, or micros shown in pounds by the caller's label function).

use std::fmt::Write;

const WIDTH: i64 = 640;
const BAR_HEIGHT: i64 = 22;
const LABEL_WIDTH: i64 = 200;

/// Escapes text for SVG (XML) content and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A horizontal bar chart: one bar per `(label, value)`, values labelled with `show`.
pub fn bars(title: &str, items: &[(String, i64)], show: impl Fn(i64) -> String) -> String {
    let max = items.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let height = 40 + BAR_HEIGHT * items.len() as i64;
    let plot = WIDTH - LABEL_WIDTH - 90;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="0" y="16" font-family="sans-serif" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, (label, value)) in items.iter().enumerate() {
        let y = 30 + i as i64 * BAR_HEIGHT;
        let w = (*value).max(0) * plot / max;
        let _ = write!(
            svg,
            r##"<text x="0" y="{}" font-family="sans-serif" font-size="12">{}</text><rect x="{LABEL_WIDTH}" y="{}" width="{w}" height="{}" fill="#1d70b8"/><text x="{}" y="{}" font-family="sans-serif" font-size="12">{}</text>"##,
            y + 15,
            escape(label),
            y + 3,
            BAR_HEIGHT - 6,
            LABEL_WIDTH + w + 6,
            y + 15,
            escape(&show(*value))
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A line chart over ordered points `(label, value)`, such as spend per month.
pub fn line(title: &str, points: &[(String, i64)], show: impl Fn(i64) -> String) -> String {
    let height: i64 = 240;
    let (left, right, top, bottom) = (60_i64, 20_i64, 30_i64, 40_i64);
    let plot_w = WIDTH - left - right;
    let plot_h = height - top - bottom;
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let step = if points.len() > 1 {
        plot_w / (points.len() as i64 - 1)
    } else {
        0
    };
    let xy: Vec<(i64, i64)> = points
        .iter()
        .enumerate()
        .map(|(i, (_, v))| {
            (
                left + i as i64 * step,
                top + plot_h - (*v).max(0) * plot_h / max,
            )
        })
        .collect();
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"><title>{}</title>"#,
        escape(title)
    );
    let _ = write!(
        svg,
        r#"<text x="0" y="16" font-family="sans-serif" font-size="14" font-weight="bold">{}</text><text x="0" y="{}" font-family="sans-serif" font-size="11">{}</text>"#,
        escape(title),
        top + 10,
        escape(&show(max))
    );
    let path: Vec<String> = xy.iter().map(|(x, y)| format!("{x},{y}")).collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#1d70b8" stroke-width="3" points="{}"/>"##,
        path.join(" ")
    );
    for ((x, y), (label, _)) in xy.iter().zip(points) {
        let _ = write!(
            svg,
            r##"<circle cx="{x}" cy="{y}" r="3" fill="#1d70b8"/><text x="{x}" y="{}" font-family="sans-serif" font-size="11" text-anchor="middle">{}</text>"##,
            height - 15,
            escape(label)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let svg = bars(
            "Spend by region",
            &[("North East".into(), 200), ("<script>".into(), 100)],
            |v| format!("£{v}"),
        );
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        // Plot width 350: the largest bar is full, the half one half.
        assert!(
            svg.contains(r#"width="350""#) && svg.contains(r#"width="175""#),
            "{svg}"
        );
        assert!(svg.contains("&lt;script&gt;") && !svg.contains("<script>"));
        assert!(svg.contains("£200"));
    }

    #[test]
    fn a_line_passes_through_every_point() {
        let svg = line(
            "Spend per month",
            &[
                ("2026-10".into(), 0),
                ("2026-11".into(), 50),
                ("2026-12".into(), 100),
            ],
            |v| v.to_string(),
        );
        // x from 60 in steps of 280; y from 200 (zero) to 30 (max).
        assert!(svg.contains(r#"points="60,200 340,115 620,30""#), "{svg}");
        assert!(bars("empty", &[], |v| v.to_string()).ends_with("</svg>"));
        assert!(line("empty", &[], |v| v.to_string()).contains("points=\"\""));
    }
}
