//! What a benchmark reports: for each measured figure, the baseline measured in the same run,
//! their ratio and whether the goal is met; rendered as an aligned table or as JSON.
//!
//! Owns: the [`Report`] and [`Row`] types and their two renderings. Must not touch: how the
//! figures are measured (the runners) or where the text goes (the caller prints it).

use serde::Serialize;

use crate::machine::Machine;

/// One benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The benchmark's name (`seal`, `relay`).
    pub bench: String,
    /// Whether it ran at the small `--quick` size (figures are then rough).
    pub quick: bool,
    /// The machine it ran on.
    pub machine: Machine,
    /// The measured figures, each against its baseline.
    pub rows: Vec<Row>,
    /// What the reader should know to judge the figures (sizes, limits raised, caveats).
    pub notes: Vec<String>,
}

/// One figure, its baseline, their ratio and the goal.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// The measured value.
    pub figure: f64,
    /// Its unit (`msg/s`, `frames/s`, `µs`, `×`).
    pub unit: String,
    /// The baseline, measured in the same run on the same machine.
    pub baseline: Baseline,
    /// `figure / baseline.figure`.
    pub ratio: f64,
    /// The goal, in words (`>= 0.90 × zstd-1`, `informational`).
    pub goal: String,
    /// Whether the goal is met; `None` for an informational row.
    pub goal_met: Option<bool>,
}

/// The baseline a figure is compared with.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    /// What it is (`zstd level 1 alone`, `NATS 2.15 pub/sub`).
    pub name: String,
    /// Its value, in the row's unit.
    pub figure: f64,
}

impl Row {
    /// A row whose ratio is `figure / baseline`, its goal met when `met(figure, ratio)`.
    pub fn new(
        name: impl Into<String>,
        figure: f64,
        unit: impl Into<String>,
        baseline_name: impl Into<String>,
        baseline: f64,
        goal: impl Into<String>,
        met: Option<bool>,
    ) -> Row {
        let ratio = if baseline > 0.0 {
            figure / baseline
        } else {
            0.0
        };
        Row {
            name: name.into(),
            figure,
            unit: unit.into(),
            baseline: Baseline {
                name: baseline_name.into(),
                figure: baseline,
            },
            ratio,
            goal: goal.into(),
            goal_met: met,
        }
    }
}

/// A number with three significant figures at most and thousands separated by commas
/// (`1,234,567`, `12.3`, `0.0412`).
pub fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let rounded = v.round() as i64;
        let digits = rounded.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if rounded < 0 {
            out.insert(0, '-');
        }
        out
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    /// The report as an aligned text table, with its machine line and notes.
    pub fn table(&self) -> String {
        let header = ["figure", "value", "baseline", "ratio", "goal", "met"];
        let rows: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    format!("{} {}", number(r.figure), r.unit),
                    format!(
                        "{}: {} {}",
                        r.baseline.name,
                        number(r.baseline.figure),
                        r.unit
                    ),
                    format!("{:.2}×", r.ratio),
                    r.goal.clone(),
                    match r.goal_met {
                        Some(true) => "yes".to_owned(),
                        Some(false) => "NO".to_owned(),
                        None => "-".to_owned(),
                    },
                ]
            })
            .collect();
        let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[&str]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i].saturating_sub(c.chars().count());
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad + 2));
                }
            }
            s.trim_end().to_owned()
        };
        let mut out = format!(
            "bramble bench {}{} on {}\n",
            self.bench,
            if self.quick { " --quick" } else { "" },
            self.machine
        );
        out.push_str(&line(&header));
        out.push('\n');
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        out.push_str(&line(&rule.iter().map(String::as_str).collect::<Vec<_>>()));
        out.push('\n');
        for r in &rows {
            out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str("note: ");
            out.push_str(n);
            out.push('\n');
        }
        out
    }

    /// The report as pretty JSON.
    ///
    /// # Errors
    /// Never in practice (every field serialises); kept for the caller's `?`.
    pub fn json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// Whether every row with a goal meets it.
    pub fn goals_met(&self) -> bool {
        self.rows.iter().all(|r| r.goal_met != Some(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        Report {
            bench: "seal".into(),
            quick: true,
            machine: Machine {
                cores: 2,
                cpu: "Test CPU".into(),
                ram_gib: 24.0,
            },
            rows: vec![
                Row::new(
                    "seal rate",
                    90_000.0,
                    "msg/s",
                    "zstd-1",
                    100_000.0,
                    ">= 0.90",
                    Some(true),
                ),
                Row::new("p99", 12.5, "µs", "NATS", 25.0, "informational", None),
            ],
            notes: vec!["a note".into()],
        }
    }

    #[test]
    fn table_is_aligned_and_json_has_the_numbers() {
        let r = report();
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].contains("bramble bench seal --quick on 2 cores"));
        let col = lines[1].find("value").expect("header");
        assert_eq!(lines[3].find("90,000 msg/s"), Some(col), "{t}");
        assert!(t.contains("0.90×"), "{t}");
        assert!(t.contains("note: a note"));
        let v: serde_json::Value = serde_json::from_str(&r.json().expect("json")).expect("parses");
        assert_eq!(v["rows"][0]["ratio"], 0.9);
        assert_eq!(v["rows"][0]["baseline"]["figure"], 100_000.0);
        assert_eq!(v["rows"][1]["goal_met"], serde_json::Value::Null);
        assert!(r.goals_met());
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.4), "1,234,567");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(3.456), "3.46");
        assert_eq!(number(0.04123), "0.041");
    }
}
