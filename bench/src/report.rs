//! The results: one row per figure, a column per runtime and the floor, berth's ratios to each;
//! the scaling of the N-item variants; as Markdown and as JSON.

use serde_json::{json, Map, Value};
use std::fmt::Write as _;

/// Column keys, in order. The runtimes' keys, then the floor.
pub const COLUMNS: [&str; 5] = ["berth", "runc", "crun", "youki", "floor"];

#[derive(Clone, Debug)]
pub enum Cell {
    Val(f64),
    Fail(String),
    /// The runtime is not installed (or cannot run on this host).
    Absent,
    /// Measured, but the figure was not there (e.g. a log record berth does not write yet).
    NotAvailable,
}

pub struct Row {
    pub key: String,
    pub name: String,
    pub unit: &'static str,
    pub cells: Vec<(&'static str, Cell)>,
    /// Whether berth's ratios to the others mean anything for this figure.
    pub ratios: bool,
}

impl Row {
    pub fn new(key: impl Into<String>, name: impl Into<String>, unit: &'static str) -> Row {
        Row {
            key: key.into(),
            name: name.into(),
            unit,
            cells: Vec::new(),
            ratios: true,
        }
    }

    pub fn set(&mut self, col: &'static str, cell: Cell) {
        self.cells.retain(|(c, _)| *c != col);
        self.cells.push((col, cell));
    }

    pub fn get(&self, col: &str) -> Option<&Cell> {
        self.cells.iter().find(|(c, _)| *c == col).map(|(_, v)| v)
    }

    pub fn val(&self, col: &str) -> Option<f64> {
        match self.get(col) {
            Some(Cell::Val(v)) => Some(*v),
            _ => None,
        }
    }
}

/// A family of N-item variants: its name, the keys of its rows for N and 2N, and the plain
/// run's time (ms) measured with it, per runtime.
pub struct Family {
    pub name: String,
    pub rows: [(usize, String); 2],
    pub base: Vec<(&'static str, f64)>,
}

#[derive(Default)]
pub struct Report {
    /// (what, value) lines printed above the table.
    pub machine: Vec<(String, String)>,
    /// Column headings for the runtimes' keys.
    pub labels: Vec<(&'static str, String)>,
    pub rows: Vec<Row>,
    pub families: Vec<Family>,
    pub footnotes: Vec<String>,
    pub failures: Vec<String>,
    /// How many of the failures are berth's (or the floor's): only those fail the benchmark.
    /// A peer that fails or hangs is listed and left out of the ratios.
    pub own_failures: usize,
    /// hyperfine's record of each measurement, with its row and runtime.
    pub raw: Vec<Value>,
    pub cleanup: Vec<String>,
}

impl Report {
    /// Lists a failure of `who` (a runtime's key, "floor", or "" for the benchmark itself).
    pub fn fail(&mut self, who: &str, msg: String) {
        if matches!(who, "berth" | "floor" | "") {
            self.own_failures += 1;
        }
        self.failures.push(msg);
    }
}

pub fn fmt(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v >= 100.0 => format!("{v:.1}"),
        "ms" | "MiB" => format!("{v:.2}"),
        "µs" | "µs/item" => format!("{v:.0}"),
        "count" => format!("{v:.0}"),
        _ => format!("{v:.3}"),
    }
}

fn cell_text(c: Option<&Cell>, unit: &str) -> String {
    match c {
        Some(Cell::Val(v)) => fmt(*v, unit),
        Some(Cell::Fail(_)) => "FAIL".into(),
        Some(Cell::Absent) => "—".into(),
        Some(Cell::NotAvailable) => "n/a".into(),
        None => String::new(),
    }
}

impl Report {
    fn label(&self, col: &str) -> String {
        self.labels
            .iter()
            .find(|(k, _)| *k == col)
            .map(|(_, l)| l.clone())
            .unwrap_or_else(|| col.to_string())
    }

    fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    /// (t(N) - t(plain)) / N for one runtime, in µs per item, against the family's baseline
    /// (or the plain run's row when it has none).
    fn per_item(&self, f: &Family, col: &str, key: &str, n: usize) -> Option<f64> {
        let plain = f
            .base
            .iter()
            .find(|(c, _)| *c == col)
            .map(|(_, v)| *v)
            .or_else(|| self.row("run:plain")?.val(col))?;
        let t = self.row(key)?.val(col)?;
        Some((t - plain) * 1000.0 / n as f64)
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# berth benchmark\n");
        for (k, v) in &self.machine {
            let _ = writeln!(s, "- {k}: {v}");
        }
        let _ = writeln!(s);
        let mut head = vec!["figure".to_string(), "unit".to_string()];
        head.extend(COLUMNS.iter().map(|c| self.label(c)));
        head.extend(COLUMNS[1..].iter().map(|c| format!("berth/{}", c)));
        let _ = writeln!(s, "| {} |", head.join(" | "));
        let align: Vec<&str> = head
            .iter()
            .enumerate()
            .map(|(i, _)| if i < 2 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(s, "| {} |", align.join(" | "));
        for r in &self.rows {
            let mut cols = vec![r.name.clone(), r.unit.to_string()];
            cols.extend(COLUMNS.iter().map(|c| cell_text(r.get(c), r.unit)));
            for c in &COLUMNS[1..] {
                let ratio = match (r.ratios, r.val("berth"), r.val(c)) {
                    (true, Some(b), Some(o)) if o > 0.0 => format!("{:.2}", b / o),
                    _ => String::new(),
                };
                cols.push(ratio);
            }
            let _ = writeln!(s, "| {} |", cols.join(" | "));
        }
        if !self.footnotes.is_empty() {
            let _ = writeln!(s);
            for f in &self.footnotes {
                let _ = writeln!(s, "- {f}");
            }
        }
        if !self.families.is_empty() {
            let _ = writeln!(
                s,
                "\n## Scaling: added cost per item over the plain run (µs/item)\n\n\
                 `(t(N) - t(plain)) / N` at N and at 2N, t(plain) being a plain run timed with \
                 each family; about equal values mean linear cost. Differences of a few ms are \
                 noise on a loaded host: read small per-item figures with care.\n"
            );
            let runtimes = &COLUMNS[..4];
            let mut head = vec!["variant".to_string(), "N".to_string()];
            head.extend(runtimes.iter().map(|c| self.label(c)));
            let _ = writeln!(s, "| {} |", head.join(" | "));
            let align: Vec<&str> = head
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 1 { "---" } else { "---:" })
                .collect();
            let _ = writeln!(s, "| {} |", align.join(" | "));
            for f in &self.families {
                for (n, key) in &f.rows {
                    let mut cols = vec![f.name.clone(), n.to_string()];
                    for c in runtimes {
                        cols.push(
                            self.per_item(f, c, key, *n)
                                .map(|v| format!("{v:.1}"))
                                .unwrap_or_default(),
                        );
                    }
                    let _ = writeln!(s, "| {} |", cols.join(" | "));
                }
            }
        }
        if !self.failures.is_empty() {
            let _ = writeln!(s, "\n## Failures\n");
            for f in &self.failures {
                let _ = writeln!(s, "- {f}");
            }
        }
        s
    }

    pub fn json(&self) -> Value {
        let machine: Map<String, Value> = self
            .machine
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let rows: Vec<Value> = self
            .rows
            .iter()
            .map(|r| {
                let cells: Map<String, Value> = r
                    .cells
                    .iter()
                    .map(|(c, v)| {
                        let v = match v {
                            Cell::Val(x) => json!(x),
                            Cell::Fail(m) => json!({ "failed": m }),
                            Cell::Absent => json!("not installed"),
                            Cell::NotAvailable => json!("n/a"),
                        };
                        (c.to_string(), v)
                    })
                    .collect();
                json!({"key": r.key, "figure": r.name, "unit": r.unit, "values": cells})
            })
            .collect();
        let scaling: Vec<Value> = self
            .families
            .iter()
            .flat_map(|f| {
                f.rows.iter().map(|(n, key)| {
                    let per: Map<String, Value> = COLUMNS[..4]
                        .iter()
                        .filter_map(|c| Some((c.to_string(), json!(self.per_item(f, c, key, *n)?))))
                        .collect();
                    let base: Map<String, Value> = f
                        .base
                        .iter()
                        .map(|(c, v)| (c.to_string(), json!(v)))
                        .collect();
                    json!({"variant": f.name, "n": n, "us_per_item": per, "plain_ms": base})
                })
            })
            .collect();
        json!({
            "machine": machine,
            "columns": labels,
            "rows": rows,
            "scaling": scaling,
            "notes": self.footnotes,
            "failures": self.failures,
            "cleanup": self.cleanup,
            "hyperfine": self.raw,
        })
    }
}
