//! The results as JSON (written by `--json`, read back by `--markdown-from`), and the
//! README table generated from them. A small JSON reader is here because the bench
//! has no JSON dependency and reads only what it writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    /// The member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.get(key),
            _ => None,
        }
    }

    pub(crate) fn num(&self) -> Option<f64> {
        match self {
            Json::Num(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    fn num_at(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Json::num)
    }

    fn str_at(&self, key: &str) -> &str {
        self.get(key).and_then(Json::str).unwrap_or("")
    }
}

/// Parses one JSON text.
pub(crate) fn parse(text: &str) -> Result<Json, String> {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.b.len() {
        return Err(format!("trailing characters at byte {}", p.i));
    }
    Ok(v)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            self.err(&format!("expected {lit}"))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'n') => self.eat("null").map(|()| Json::Null),
            Some(b't') => self.eat("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut v = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(v));
                }
                loop {
                    v.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(v));
                        }
                        _ => return self.err("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut m = BTreeMap::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(m));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected a key");
                    }
                    let k = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    let v = self.value()?;
                    m.insert(k, v);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(m));
                        }
                        _ => return self.err("expected , or }"),
                    }
                }
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let s = std::str::from_utf8(&self.b[start..self.i]).map_err(|e| e.to_string())?;
                s.parse::<f64>()
                    .map(Json::Num)
                    .or_else(|_| self.err("expected a value"))
            }
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.b.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return String::from_utf8(out).map_err(|e| e.to_string());
                }
                Some(b'\\') => {
                    let c = self.b.get(self.i + 1).copied();
                    self.i += 2;
                    match c {
                        Some(b'"') => out.push(b'"'),
                        Some(b'\\') => out.push(b'\\'),
                        Some(b'/') => out.push(b'/'),
                        Some(b'n') => out.push(b'\n'),
                        Some(b't') => out.push(b'\t'),
                        Some(b'r') => out.push(b'\r'),
                        Some(b'b') => out.push(8),
                        Some(b'f') => out.push(12),
                        Some(b'u') => {
                            let hex = self
                                .b
                                .get(self.i..self.i + 4)
                                .and_then(|h| std::str::from_utf8(h).ok())
                                .and_then(|h| u32::from_str_radix(h, 16).ok());
                            let Some(c) = hex.and_then(char::from_u32) else {
                                return self.err("bad \\u escape");
                            };
                            self.i += 4;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}

/// A JSON string literal.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number, `null` for none or a non-finite one.
pub(crate) fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".to_string(),
    }
}

/// A JSON array of numbers.
pub(crate) fn json_nums(v: &[f64]) -> String {
    let items: Vec<String> = v.iter().map(|x| json_num(Some(*x))).collect();
    format!("[{}]", items.join(", "))
}

/// `v` with three significant digits (five decimals at most).
fn sig3(v: f64) -> String {
    let a = v.abs();
    let d = match a {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        a if a >= 0.1 => 3,
        a if a >= 0.01 => 4,
        _ => 5,
    };
    format!("{v:.d$}")
}

/// A figure with three significant digits and a k/M suffix: 0.153, 5.72, 35.9, 885,
/// 61.3k, 8.52M.
pub(crate) fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".to_string()
    } else if a >= 1e6 {
        format!("{}M", sig3(v / 1e6))
    } else if a >= 1e4 {
        format!("{}k", sig3(v / 1e3))
    } else {
        sig3(v)
    }
}

/// "2.50x better" for a ratio of 2.5, "1.25x worse" for 0.8 (never "0.80× better").
pub(crate) fn verdict(ratio: f64) -> String {
    if ratio >= 1.0 {
        format!("{ratio:.2}x better")
    } else {
        format!("{:.2}x worse", 1.0 / ratio)
    }
}

/// How a variant is named in the tables.
pub(crate) fn variant_label(variant: &str) -> &'static str {
    match variant {
        "nospin" => "no spin",
        "loaded" => "loaded",
        "loaded_nospin" => "loaded, no spin",
        _ => "",
    }
}

/// The README block (between the markers) generated from a results file: a line
/// saying where it comes from, then the table.
pub(crate) fn markdown(results: &Json, path: &str) -> Result<String, String> {
    let meta = results.get("meta").ok_or("no \"meta\" in the results")?;
    let Some(Json::Arr(rows)) = results.get("rows") else {
        return Err("no \"rows\" array in the results".into());
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Generated from `{path}` (`cargo run --release -p procactor-bench -- --markdown-from {path}`): \
         the run of {} on {} ({} CPUs, Linux {}, {}), load average before the run {}; \
         command: `{}`; medians of {} rounds, the range over the rounds in brackets.",
        meta.str_at("date"),
        meta.str_at("machine"),
        meta.num_at("cpus").unwrap_or(0.0),
        meta.str_at("kernel"),
        meta.str_at("python"),
        meta.str_at("load_before"),
        meta.str_at("command"),
        meta.num_at("reps").unwrap_or(0.0),
    );
    if let Some(b) = meta.num_at("budget_s") {
        // results written before the budget existed have no such field (and no line)
        let _ = writeln!(
            out,
            "The measured loops of `lock_handoff_latency` and `actor_call_rtt` stop, on \
             both sides, once {} s have passed, and their figure is per iteration done \
             (the JSON's `*_ops` say how many).",
            fmt_value(b)
        );
    }
    out.push('\n');
    out.push_str(
        "| workload id | what | run | unit | procactor (range) | CPU µs/op | Python | CPU µs/op | procactor is |\n\
         |---|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let variant = r.str_at("variant");
        let what = if variant == "base" {
            r.str_at("label")
        } else {
            "″"
        };
        let range = match (r.num_at("procactor_min"), r.num_at("procactor_max")) {
            (Some(lo), Some(hi)) => format!(" ({}–{})", fmt_value(lo), fmt_value(hi)),
            _ => String::new(),
        };
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), fmt_value);
        // a side that has an error and no figure: killed (by the time limit) or failed
        let figure = |side: &str| match (r.num_at(side), r.get(&format!("{side}_error"))) {
            (None, Some(Json::Str(e))) if e.contains("SIGKILL") || e.contains("signal: 9") => {
                "did not finish".to_string()
            }
            (None, Some(Json::Str(_))) => "failed".to_string(),
            (v, _) => cell(v),
        };
        let py = figure("python");
        let py_same = r.get("python_from").and_then(Json::str).is_some();
        let (py, py_cpu) = if py_same {
            (format!("{py} (as above)"), "".to_string())
        } else {
            (py, cell(r.num_at("python_cpu_us")))
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {}{} | {} | {} | {} | {} |",
            r.str_at("workload"),
            what,
            variant_label(variant),
            r.str_at("unit").replace("us", "µs"),
            figure("procactor"),
            range,
            cell(r.num_at("procactor_cpu_us")),
            py,
            py_cpu,
            r.num_at("ratio").map_or_else(|| "-".to_string(), verdict),
        );
    }
    Ok(out)
}

/// The markers around the generated block in the README.
pub(crate) const BEGIN: &str = "<!-- bench-table: begin, generated from ";
pub(crate) const END: &str = "<!-- bench-table: end -->";

/// The generated block of a README and the results path its begin marker names.
#[cfg(test)]
pub(crate) fn readme_block(readme: &str) -> Result<(String, String), String> {
    let b = readme.find(BEGIN).ok_or("no begin marker in the README")?;
    let rest = &readme[b + BEGIN.len()..];
    let close = rest.find("-->").ok_or("unterminated begin marker")?;
    let path = rest[..close].trim().to_string();
    let body = &rest[close + 3..];
    let e = body.find(END).ok_or("no end marker in the README")?;
    Ok((path, body[..e].trim_start_matches('\n').to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips_what_we_write() {
        let text = format!(
            "{{\"a\": {}, \"b\": [1, -2.5e3, true, false, null], \"c\": {{}}, \"d\": []}}",
            json_str("x\"y\\z\n\u{e9}")
        );
        let v = parse(&text).expect("parse");
        assert_eq!(v.get("a").and_then(Json::str), Some("x\"y\\z\n\u{e9}"));
        assert_eq!(
            v.get("b"),
            Some(&Json::Arr(vec![
                Json::Num(1.0),
                Json::Num(-2500.0),
                Json::Bool(true),
                Json::Bool(false),
                Json::Null
            ]))
        );
        assert!(parse("{\"a\": 1,}").is_err());
        assert!(parse("[1 2]").is_err());
        assert!(parse("\"open").is_err());
        assert!(parse("1 x").is_err());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
        assert_eq!(json_num(Some(f64::NAN)), "null");
        assert_eq!(json_num(None), "null");
        assert_eq!(json_num(Some(1.5)), "1.5");
    }

    #[test]
    fn verdict_says_worse_below_one() {
        assert_eq!(verdict(2.5), "2.50x better");
        assert_eq!(verdict(1.0), "1.00x better");
        assert_eq!(verdict(0.8), "1.25x worse");
    }

    #[test]
    fn values_keep_three_significant_digits() {
        assert_eq!(fmt_value(8_520_000.0), "8.52M");
        assert_eq!(fmt_value(19_000_000.0), "19.0M");
        assert_eq!(fmt_value(61_300.0), "61.3k");
        assert_eq!(fmt_value(885.0), "885");
        assert_eq!(fmt_value(35.94), "35.9");
        assert_eq!(fmt_value(5.724), "5.72");
        assert_eq!(fmt_value(0.1534), "0.153");
        assert_eq!(fmt_value(0.0055), "0.00550");
        assert_eq!(fmt_value(f64::NAN), "-");
    }

    /// A results file that records a time budget says so above the table; one without
    /// (written before the budget existed) prints as before.
    #[test]
    fn the_time_budget_is_disclosed_when_recorded() {
        let with = parse("{\"meta\": {\"budget_s\": 20}, \"rows\": []}").unwrap();
        let text = markdown(&with, "x.json").unwrap();
        assert!(text.contains("once 20.0 s have passed"), "{text}");
        let without = parse("{\"meta\": {}, \"rows\": []}").unwrap();
        let text = markdown(&without, "x.json").unwrap();
        assert!(!text.contains("have passed"), "{text}");
    }

    /// The README's table is the one `--markdown-from` prints for the results file its
    /// marker names: nobody edits the figures by hand.
    #[test]
    fn the_readme_table_is_generated_from_the_committed_results() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        let (path, block) = readme_block(&readme).expect("the README's benchmark block");
        let text = std::fs::read_to_string(root.join(&path)).expect("the results file");
        let results = parse(&text).expect("the results file is JSON");
        let want = markdown(&results, &path).expect("markdown");
        assert_eq!(
            block.trim_end(),
            want.trim_end(),
            "the README table differs from `--markdown-from {path}`: regenerate it"
        );
    }
}
