//! A reader of the Prometheus text format, enough for the kubelet's `/metrics/resource`:
//! `name{label="value",...} value [timestamp_ms]` lines, comments skipped.

use std::borrow::Cow;

/// One sample line, borrowed from the text (a label value is copied only when it has escapes):
/// a scrape of a node with a hundred pods is read without a string per label.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// The samples of `text`, a line at a time (lines that do not parse are skipped).
pub fn parse(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter_map(|l| parse_line(l.trim()))
}

fn parse_line(line: &str) -> Option<Sample<'_>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut at = 0;
        loop {
            at += r[at..].len()
                - r[at..]
                    .trim_start_matches(|c: char| c == ',' || c.is_whitespace())
                    .len();
            if r[at..].starts_with('}') {
                at += 1;
                break;
            }
            let eq = r[at..].find('=')? + at;
            let key = r[at..eq].trim();
            let open = eq + 1 + (r[eq + 1..].len() - r[eq + 1..].trim_start().len());
            if !r[open..].starts_with('"') {
                return None;
            }
            // The value up to the closing quote; escapes (`\"`, `\\`, `\n`) make a copy.
            let body = &r[open + 1..];
            let mut end = None;
            let mut escaped = false;
            let mut chars = body.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    '\\' => {
                        escaped = true;
                        chars.next()?;
                    }
                    _ => {}
                }
            }
            let end = end?;
            let raw = &body[..end];
            let value = if escaped {
                let mut v = String::with_capacity(raw.len());
                let mut cs = raw.chars();
                while let Some(c) = cs.next() {
                    match c {
                        '\\' => match cs.next()? {
                            'n' => v.push('\n'),
                            other => v.push(other),
                        },
                        other => v.push(other),
                    }
                }
                Cow::Owned(v)
            } else {
                Cow::Borrowed(raw)
            };
            labels.push((key, value));
            at = open + 1 + end + 1;
        }
        rest = &r[at..];
    }
    let mut fields = rest.split_whitespace();
    let value = match fields.next()? {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let timestamp_ms = fields.next().and_then(|t| t.parse().ok());
    Some(Sample {
        name,
        labels,
        value,
        timestamp_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubelet_resource_metrics() {
        let text = "# HELP x y\n# TYPE x counter\ncontainer_cpu_usage_seconds_total{container=\"c\",namespace=\"default\",pod=\"p\\\"q\"} 0.5 2000\nnode_memory_working_set_bytes 4.096e+03 3000\nscrape_error 0\n";
        let s: Vec<Sample> = parse(text).collect();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].label("pod"), Some("p\"q"));
        assert_eq!(s[0].label("container"), Some("c"));
        assert_eq!(s[0].name, "container_cpu_usage_seconds_total");
        assert_eq!(s[0].value, 0.5);
        assert_eq!(s[0].timestamp_ms, Some(2000));
        assert_eq!(s[1].value, 4096.0);
        assert_eq!(s[2].timestamp_ms, None);
        let escaped: Vec<Sample> = parse("m{a=\"x\\\\y\\n\", b = \"\"} 1").collect();
        assert_eq!(escaped[0].label("a"), Some("x\\y\n"));
        assert_eq!(escaped[0].label("b"), Some(""));
        assert_eq!(escaped[0].value, 1.0);
        assert!(parse("m{a=\"unterminated} 1\nm{a=x} 2").next().is_none());
    }
}
