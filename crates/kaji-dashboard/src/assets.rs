//! The front end's files, embedded (`build.rs` makes the table from `ui/dist/**`), answered for
//! paths under `/dashboard/`: `index.html` for `/dashboard/` and for any other path that names
//! no file (the single-page app routes itself; `assets/` excepted, where a missing file is a
//! 404), `/dashboard` redirected to `/dashboard/`, content types by extension, `no-cache` (with
//! an ETag) for pages and long caching for Vite's content-hashed `assets/`, and a precompressed
//! `x.gz` beside `x` sent when the browser accepts gzip.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full, combinators::BoxBody};
use std::convert::Infallible;

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Where the dashboard is served.
pub const PREFIX: &str = "/dashboard";

/// A response body, the API server's type.
pub type Body = BoxBody<Bytes, Infallible>;

/// Pages may run only what came from here and talk only to here: no CDN, nothing leaves the
/// cluster (`'self'` covers same-origin WebSockets too).
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'self'; frame-ancestors 'none'";

/// One embedded file.
#[derive(Clone, Copy, Debug)]
pub struct File {
    pub path: &'static str,
    pub bytes: &'static [u8],
    pub content_type: &'static str,
    pub etag: &'static str,
}

/// The embedded file at `path` (relative to `/dashboard/`).
pub fn file(path: &str) -> Option<File> {
    FILES
        .binary_search_by(|(p, ..)| (*p).cmp(path))
        .ok()
        .map(|i| {
            let (path, bytes, content_type, etag) = FILES[i];
            File {
                path,
                bytes,
                content_type,
                etag,
            }
        })
}

/// Every embedded path (for tests and diagnostics).
pub fn paths() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(p, ..)| *p)
}

/// Answers `GET <path>` for a path relative to `/dashboard/` (no leading slash): the status,
/// the headers and the bytes, or None when nothing is served there (a missing `assets/` file).
pub fn serve(path: &str, accept_gzip: bool) -> Option<(StatusCode, HeaderMap, Bytes)> {
    let path = if path.is_empty() { "index.html" } else { path };
    let (found, fallback) = match file(path) {
        Some(f) => (f, false),
        None if path.starts_with("assets/") => return None,
        None => (file("index.html")?, true),
    };
    let gz = (accept_gzip && !fallback)
        .then(|| file(&format!("{}.gz", found.path)))
        .flatten();
    let sent = gz.unwrap_or(found);
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(found.content_type),
    );
    let immutable = found.path.starts_with("assets/");
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if let Ok(etag) = HeaderValue::from_str(sent.etag) {
        h.insert(header::ETAG, etag);
    }
    if gz.is_some() {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    if file(&format!("{}.gz", found.path)).is_some() {
        h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if found.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    Some((StatusCode::OK, h, Bytes::from_static(sent.bytes)))
}

/// Whether an `Accept-Encoding` accepts gzip (`gzip` or `*`, not at `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !zero
        })
}

fn plain(code: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed());
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers a request for `/dashboard` or a path under `/dashboard/`; None for any other path.
/// Needs no credentials: the page it serves is the login page.
pub fn respond(req: &http::request::Parts) -> Option<Response<Body>> {
    let path = req.uri.path();
    if path == PREFIX {
        let location = match req.uri.query() {
            Some(q) => format!("{PREFIX}/?{q}"),
            None => format!("{PREFIX}/"),
        };
        let mut r = plain(StatusCode::MOVED_PERMANENTLY, "");
        if let Ok(l) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(header::LOCATION, l);
        }
        return Some(r);
    }
    let rel = path.strip_prefix(PREFIX)?.strip_prefix('/')?;
    if req.method != Method::GET && req.method != Method::HEAD {
        let mut r = plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "the dashboard's files are read with GET\n",
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Some(r);
    }
    let Some((code, headers, bytes)) = serve(rel, accepts_gzip(&req.headers)) else {
        return Some(plain(StatusCode::NOT_FOUND, "404 page not found\n"));
    };
    let unchanged = req
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .zip(headers.get(header::ETAG).and_then(|v| v.to_str().ok()))
        .is_some_and(|(wanted, etag)| {
            wanted
                .split(',')
                .any(|w| w.trim() == etag || w.trim() == "*")
        });
    let (code, body) = if unchanged {
        (StatusCode::NOT_MODIFIED, Empty::new().boxed())
    } else if req.method == Method::HEAD {
        (code, Empty::new().boxed())
    } else {
        (code, Full::new(bytes.clone()).boxed())
    };
    let mut r = Response::new(body);
    *r.status_mut() = code;
    *r.headers_mut() = headers;
    if code == StatusCode::OK {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, headers: &[(&str, &str)]) -> Option<Response<Body>> {
        let mut b = http::Request::get(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let (parts, ()) = b.body(()).unwrap().into_parts();
        respond(&parts)
    }

    #[test]
    fn index_and_spa_fallback() {
        let r = get("/dashboard/", &[]).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-cache");
        let r = get("/dashboard/namespaces/default/pods/web-1.2", &[]).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert_eq!(
            get("/dashboard/assets/missing-1234.js", &[])
                .unwrap()
                .status(),
            404
        );
        assert!(get("/api/v1/pods", &[]).is_none());
        assert!(get("/dashboardx/", &[]).is_none());
    }

    #[test]
    fn redirects_the_bare_prefix() {
        let r = get("/dashboard?x=1", &[]).unwrap();
        assert_eq!(r.status(), 301);
        assert_eq!(r.headers()[header::LOCATION], "/dashboard/?x=1");
    }

    #[test]
    fn assets_have_types_and_long_caching() {
        let js = paths()
            .find(|p| p.starts_with("assets/") && p.ends_with(".js"))
            .expect("a script in ui/dist/assets");
        let r = get(&format!("/dashboard/{js}"), &[]).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert!(
            r.headers()[header::CACHE_CONTROL]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
    }

    #[test]
    fn etag_revalidation_and_methods() {
        let r = get("/dashboard/", &[]).unwrap();
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(
            get("/dashboard/", &[("if-none-match", &etag)])
                .unwrap()
                .status(),
            304
        );
        let (parts, ()) = http::Request::post("/dashboard/")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(respond(&parts).unwrap().status(), 405);
    }

    #[test]
    fn gzip_accepted_unless_refused() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            accepts_gzip(&m)
        };
        assert!(h("gzip, deflate, br"));
        assert!(h("br;q=1.0, gzip;q=0.8"));
        assert!(!h("gzip;q=0, br"));
        assert!(!h("br"));
    }
}
