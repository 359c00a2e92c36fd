//! How the CLI prints results: aligned tables for people (the default) or JSON for scripts.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Rows of (column, value) pairs with the same columns.
pub struct Rows {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

impl Rows {
    pub fn new(columns: &[&'static str]) -> Rows {
        Rows {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.columns.len());
        self.rows.push(row);
    }

    pub fn print(&self, format: Format) {
        print!("{}", self.render(format));
    }

    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => {
                let list: Vec<Value> = self
                    .rows
                    .iter()
                    .map(|r| {
                        let obj: Map<String, Value> = self
                            .columns
                            .iter()
                            .zip(r)
                            .map(|(c, v)| (json_key(c), Value::String(v.clone())))
                            .collect();
                        Value::Object(obj)
                    })
                    .collect();
                serde_json::to_string_pretty(&list).expect("json") + "\n"
            }
            Format::Table => {
                let mut widths: Vec<usize> = self.columns.iter().map(|c| c.len()).collect();
                for r in &self.rows {
                    for (w, v) in widths.iter_mut().zip(r) {
                        *w = (*w).max(v.chars().count());
                    }
                }
                let line = |cells: Vec<&str>| {
                    let mut s = String::new();
                    for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
                        if i + 1 == cells.len() {
                            s.push_str(c);
                        } else {
                            s.push_str(&format!("{c:<w$}  ", w = *w));
                        }
                    }
                    s.trim_end().to_string() + "\n"
                };
                let mut out = line(self.columns.clone());
                for r in &self.rows {
                    out.push_str(&line(r.iter().map(String::as_str).collect()));
                }
                out
            }
        }
    }
}

/// `KEY ID` → `KeyId`, the JSON field name of a table column.
fn json_key(column: &str) -> String {
    column
        .split([' ', '_', '-'])
        .filter(|w| !w.is_empty())
        .map(|w| {
            let lower = w.to_lowercase();
            let mut cs = lower.chars();
            match cs.next() {
                Some(f) => f.to_uppercase().collect::<String>() + cs.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let mut r = Rows::new(&["NAME", "KEY ID"]);
        r.push(vec!["web".into(), "key-1".into()]);
        assert_eq!(r.render(Format::Table), "NAME  KEY ID\nweb   key-1\n");
        let v: Value = serde_json::from_str(&r.render(Format::Json)).unwrap();
        assert_eq!(v[0]["KeyId"], "key-1");
    }
}
