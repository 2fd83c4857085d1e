//! Laying out one trace as a Gantt chart: which span goes on which row, how deep it sits,
//! and where the time axis has its ticks. Pure, so it is tested natively; `traces.rs`
//! draws the result as SVG.

/// What the chart needs of a span (times in Unix microseconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub span_id: String,
    pub parent: Option<String>,
    pub name: String,
    pub start_us: i64,
    /// `None` while the span is still open.
    pub end_us: Option<i64>,
    pub error: bool,
}

/// A bar placed on its row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub bar: Bar,
    /// 0 for the trace's root spans, one more per parent.
    pub depth: usize,
    /// Where it ends on the chart: its end, or `now` while open.
    pub end_us: i64,
}

/// Rows in tree order: each span right under its parent, siblings by start time. Spans
/// whose parent is not in the set (not stored yet, or trimmed) start a tree of their own.
pub fn layout(bars: &[Bar], now_us: i64) -> Vec<Row> {
    let known: std::collections::HashSet<&str> = bars.iter().map(|b| b.span_id.as_str()).collect();
    let mut children: std::collections::HashMap<Option<&str>, Vec<&Bar>> = std::collections::HashMap::new();
    for bar in bars {
        let parent = bar.parent.as_deref().filter(|p| known.contains(p) && *p != bar.span_id);
        children.entry(parent).or_default().push(bar);
    }
    for list in children.values_mut() {
        list.sort_unstable_by(|a, b| a.start_us.cmp(&b.start_us).then_with(|| a.span_id.cmp(&b.span_id)));
    }
    let mut rows = Vec::with_capacity(bars.len());
    let mut stack: Vec<(&Bar, usize)> =
        children.get(&None).map(|roots| roots.iter().rev().map(|b| (*b, 0)).collect()).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    while let Some((bar, depth)) = stack.pop() {
        if !seen.insert(bar.span_id.as_str()) {
            continue;
        }
        let end_us = bar.end_us.unwrap_or(now_us).max(bar.start_us);
        rows.push(Row { bar: bar.clone(), depth, end_us });
        if let Some(kids) = children.get(&Some(bar.span_id.as_str())) {
            stack.extend(kids.iter().rev().map(|kid| (*kid, depth + 1)));
        }
    }
    rows
}

/// Round tick positions (multiples of 1, 2 or 5 times a power of ten, about `target` of
/// them) inside the window `[from_us, from_us + span_us]`, as offsets like `from_us`.
pub fn ticks(from_us: i64, span_us: i64, target: usize) -> Vec<i64> {
    if span_us <= 0 || target == 0 {
        return vec![from_us];
    }
    let raw = span_us as f64 / target as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power);
    let step = (step as i64).max(1);
    let first = (from_us + step - 1).div_euclid(step) * step;
    (0..).map(|i| first + i * step).take_while(|t| *t <= from_us + span_us).collect()
}

/// A duration for people: `850 µs`, `12.3 ms`, `4.20 s`, `2 min 5 s`. Integer arithmetic
/// only: formatting floats would pull about 40 KB of code into the page.
pub fn duration(us: i64) -> String {
    let us = us.max(0);
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        let tenths = (us + 50) / 100;
        format!("{}.{} ms", tenths / 10, tenths % 10)
    } else if us < 60_000_000 {
        let hundredths = (us + 5_000) / 10_000;
        format!("{}.{:02} s", hundredths / 100, hundredths % 100)
    } else {
        format!("{} min {} s", us / 60_000_000, (us / 1_000_000) % 60)
    }
}

/// A percentage for an SVG attribute (`12.345%`), without float formatting (see
/// [`duration`]).
pub fn percent(value: f64) -> String {
    let thousandths = (value * 1000.0).round() as i64;
    let sign = if thousandths < 0 { "-" } else { "" };
    let magnitude = thousandths.abs();
    format!("{sign}{}.{:03}%", magnitude / 1000, magnitude % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(id: &str, parent: Option<&str>, start: i64, end: Option<i64>) -> Bar {
        Bar {
            span_id: id.into(),
            parent: parent.map(Into::into),
            name: id.into(),
            start_us: start,
            end_us: end,
            error: false,
        }
    }

    #[test]
    fn children_sit_under_their_parent_in_start_order() {
        let bars = [
            bar("tool", Some("turn"), 50, Some(80)),
            bar("turn", None, 0, Some(100)),
            bar("llm2", Some("turn"), 80, Some(95)),
            bar("llm1", Some("turn"), 5, Some(50)),
            bar("wait", Some("tool"), 52, Some(70)),
        ];
        let rows = layout(&bars, 1000);
        let order: Vec<(&str, usize)> = rows.iter().map(|r| (r.bar.span_id.as_str(), r.depth)).collect();
        assert_eq!(order, [("turn", 0), ("llm1", 1), ("tool", 1), ("wait", 2), ("llm2", 1)]);
    }

    #[test]
    fn open_spans_reach_now_and_orphans_start_their_own_tree() {
        let rows = layout(&[bar("a", None, 10, None), bar("b", Some("gone"), 20, Some(30))], 500);
        assert_eq!(rows[0].end_us, 500);
        assert_eq!((rows[1].bar.span_id.as_str(), rows[1].depth), ("b", 0));
        // A span naming itself as parent cannot loop.
        assert_eq!(layout(&[bar("x", Some("x"), 0, Some(1))], 5).len(), 1);
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(ticks(0, 1_000, 5), vec![0, 200, 400, 600, 800, 1000]);
        assert_eq!(ticks(0, 7_300_000, 4)[1], 2_000_000);
        // A zoomed window starting mid-way: ticks stay on round offsets.
        assert_eq!(ticks(483_900, 1_450_000, 3), vec![500_000, 1_000_000, 1_500_000]);
        assert_eq!(ticks(5, 0, 5), vec![5]);
    }

    #[test]
    fn percentages_are_exact_enough() {
        assert_eq!(percent(12.3456), "12.346%");
        assert_eq!(percent(-0.5), "-0.500%");
        assert_eq!(percent(100.0), "100.000%");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(duration(850), "850 µs");
        assert_eq!(duration(12_340), "12.3 ms");
        assert_eq!(duration(4_200_000), "4.20 s");
        assert_eq!(duration(125_000_000), "2 min 5 s");
    }
}
