//! A reader of the Prometheus text format, enough for the kubelet's `/metrics/resource`:
//! `name{label="value",...} value [timestamp_ms]` lines, comments skipped.

use std::collections::HashMap;

/// One sample line.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

/// The samples of `text`; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(|l| parse_line(l.trim())).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = HashMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut chars = r.char_indices().peekable();
        let end;
        loop {
            // key
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            let &(start, c) = chars.peek()?;
            if c == '}' {
                end = start + 1;
                break;
            }
            let eq = r[start..].find('=')? + start;
            let key = r[start..eq].trim().to_string();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
        rest = &r[end..];
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
        let s = parse(text);
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].labels["pod"], "p\"q");
        assert_eq!(s[0].value, 0.5);
        assert_eq!(s[0].timestamp_ms, Some(2000));
        assert_eq!(s[1].value, 4096.0);
        assert_eq!(s[2].timestamp_ms, None);
    }
}
