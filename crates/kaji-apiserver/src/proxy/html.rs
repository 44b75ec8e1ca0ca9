//! Upstream's `rewriteHTML` (`apimachinery/pkg/util/proxy/transport.go`): in a proxied
//! `text/html` page, the URL-valued attributes of the tags upstream lists (`a href`, `img src`,
//! `form action`, ...) go through the same rewriting as a redirect, so that a page's links to
//! its own absolute paths stay inside `.../proxy/`. A small scanner, not a parser: start tags
//! and their attributes are found (quotes respected; comments, declarations and the contents of
//! raw-text elements such as `<script>` left alone) and only the values that change are replaced;
//! every other byte is copied as it came.

/// The URL-valued attributes of each tag (upstream's `atomsToAttrs`).
fn url_attributes(tag: &str) -> &'static [&'static str] {
    match tag {
        "a" | "area" | "base" | "link" => &["href"],
        "applet" => &["codebase"],
        "audio" | "embed" | "script" | "source" => &["src"],
        "blockquote" | "del" | "ins" | "q" => &["cite"],
        "body" => &["background"],
        "button" => &["formaction"],
        "command" => &["icon"],
        "form" => &["action"],
        "frame" | "iframe" => &["longdesc", "src"],
        "head" => &["profile"],
        "html" => &["manifest"],
        "img" => &["longdesc", "src", "usemap"],
        "input" => &["src", "usemap", "formaction"],
        "object" => &["classid", "codebase", "data", "usemap"],
        "video" => &["poster", "src"],
        _ => &[],
    }
}

/// Elements whose content is text up to their end tag (HTML's raw text and RCDATA elements).
const RAW_TEXT: [&str; 10] = [
    "iframe",
    "noembed",
    "noframes",
    "noscript",
    "plaintext",
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
];

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
        .map(|p| p + from)
}

/// Rewrites the URL attributes of `page` with `rewrite`.
pub fn rewrite(page: &[u8], rewrite: impl Fn(&str) -> String) -> Vec<u8> {
    let mut out = Vec::with_capacity(page.len() + page.len() / 8);
    let mut i = 0;
    while let Some(lt) = memchr::memchr(b'<', &page[i..]).map(|p| p + i) {
        out.extend_from_slice(&page[i..lt]);
        let rest = &page[lt..];
        // Comments, declarations, processing instructions and end tags: copied as they are.
        if rest.starts_with(b"<!--") {
            let end = find(page, lt + 4, b"-->").map_or(page.len(), |e| e + 3);
            out.extend_from_slice(&page[lt..end]);
            i = end;
            continue;
        }
        let starts_tag = rest.get(1).is_some_and(u8::is_ascii_alphabetic);
        if !starts_tag {
            let closes = matches!(rest.get(1), Some(b'!' | b'?' | b'/'));
            let end = if closes {
                memchr::memchr(b'>', &page[lt..]).map_or(page.len(), |e| lt + e + 1)
            } else {
                lt + 1
            };
            out.extend_from_slice(&page[lt..end]);
            i = end;
            continue;
        }
        let (end, name) = start_tag(page, lt, &rewrite, &mut out);
        i = end;
        if RAW_TEXT.contains(&name.as_str()) {
            let close = format!("</{name}");
            let stop = find(page, i, close.as_bytes()).unwrap_or(page.len());
            out.extend_from_slice(&page[i..stop]);
            i = stop;
        }
    }
    out.extend_from_slice(&page[i..]);
    out
}

/// Copies the start tag at `lt` into `out` with its URL attributes rewritten; returns where it
/// ends and its lower-cased name.
fn start_tag(
    page: &[u8],
    lt: usize,
    rewrite: &impl Fn(&str) -> String,
    out: &mut Vec<u8>,
) -> (usize, String) {
    let is_space = |b: u8| b.is_ascii_whitespace();
    let mut i = lt + 1;
    while i < page.len() && !is_space(page[i]) && page[i] != b'>' && page[i] != b'/' {
        i += 1;
    }
    let name = String::from_utf8_lossy(&page[lt + 1..i]).to_ascii_lowercase();
    let wanted = url_attributes(&name);
    let mut copied = lt;
    loop {
        while i < page.len() && (is_space(page[i]) || page[i] == b'/') {
            i += 1;
        }
        if i >= page.len() || page[i] == b'>' {
            break;
        }
        let name_start = i;
        while i < page.len() && !is_space(page[i]) && !matches!(page[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let attribute = String::from_utf8_lossy(&page[name_start..i]).to_ascii_lowercase();
        let mut j = i;
        while j < page.len() && is_space(page[j]) {
            j += 1;
        }
        if page.get(j) != Some(&b'=') {
            continue;
        }
        j += 1;
        while j < page.len() && is_space(page[j]) {
            j += 1;
        }
        let (value_start, value_end, after) = match page.get(j) {
            Some(&q @ (b'"' | b'\'')) => {
                let end = memchr::memchr(q, &page[j + 1..]).map_or(page.len(), |e| j + 1 + e);
                (j + 1, end, (end + 1).min(page.len()))
            }
            _ => {
                let mut end = j;
                while end < page.len() && !is_space(page[end]) && page[end] != b'>' {
                    end += 1;
                }
                (j, end, end)
            }
        };
        i = after;
        if !wanted.contains(&attribute.as_str()) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(&page[value_start..value_end]) else {
            continue;
        };
        let new = rewrite(value);
        if new != value {
            out.extend_from_slice(&page[copied..value_start]);
            // The value keeps its quoting; a rewritten one only gains a path prefix.
            out.extend_from_slice(new.replace('"', "&#34;").as_bytes());
            copied = value_end;
        }
    }
    let end = if i < page.len() { i + 1 } else { page.len() };
    out.extend_from_slice(&page[copied..end]);
    (end, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefixed(u: &str) -> String {
        if u.starts_with('/') {
            format!("/p/proxy{u}")
        } else {
            u.to_string()
        }
    }

    #[test]
    fn rewrites_url_attributes_of_listed_tags_only() {
        let page = r#"<!DOCTYPE html><html><head><link rel=stylesheet href=/s.css></head>
<body><A HREF="/a?x=1&amp;y=2">a</A> <img alt='/no' src='/i.png'/> <p title="/t">p</p>
<a href="rel/x">r</a><a href="http://other/x">o</a><form action = "/f"></form>
<!-- <a href="/c"> --><script src="/j.js">if (a<b) { x = '<a href="/s">'; }</script>
<div data-x="a>b"><a href=/last>l</a></div>"#;
        let got = String::from_utf8(rewrite(page.as_bytes(), prefixed)).unwrap();
        let want = r#"<!DOCTYPE html><html><head><link rel=stylesheet href=/p/proxy/s.css></head>
<body><A HREF="/p/proxy/a?x=1&amp;y=2">a</A> <img alt='/no' src='/p/proxy/i.png'/> <p title="/t">p</p>
<a href="rel/x">r</a><a href="http://other/x">o</a><form action = "/p/proxy/f"></form>
<!-- <a href="/c"> --><script src="/p/proxy/j.js">if (a<b) { x = '<a href="/s">'; }</script>
<div data-x="a>b"><a href=/p/proxy/last>l</a></div>"#;
        assert_eq!(got, want);
    }

    #[test]
    fn survives_truncated_markup() {
        for page in [
            "<a href=\"/x",
            "<a href=",
            "<",
            "<a",
            "a < b",
            "<!--",
            "<script>x",
        ] {
            let _ = rewrite(page.as_bytes(), prefixed);
        }
        assert_eq!(rewrite(b"a < b", prefixed), b"a < b");
    }
}
