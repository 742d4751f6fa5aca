//! The console's static files, compiled into the binary: htmx (committed
//! unchanged, no build step), one stylesheet and one small script. Each is
//! linked with its content hash (`?v=`) and served immutable, with an
//! `ETag`.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

const FILES: &[(&str, &str, &[u8])] = &[
    ("htmx-2.0.11.min.js", "text/javascript; charset=utf-8", include_bytes!("../static/htmx-2.0.11.min.js")),
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../static/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../static/console.css")),
];

/// Each file's content hash (16 hex digits of its SHA-256).
#[derive(Debug)]
pub struct Versions {
    pub htmx: String,
    pub js: String,
    pub css: String,
}

fn hash(bytes: &[u8]) -> String {
    clearway_core::crypto::sha256_hex(bytes)[..16].to_string()
}

/// The files' content hashes, computed once.
pub fn versions() -> &'static Versions {
    static V: std::sync::OnceLock<Versions> = std::sync::OnceLock::new();
    V.get_or_init(|| Versions { htmx: hash(FILES[0].2), js: hash(FILES[1].2), css: hash(FILES[2].2) })
}

/// `GET /console/static/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some((_, mime, bytes)) = FILES.iter().find(|(n, _, _)| *n == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{}\"", hash(bytes));
    let cache = [(header::ETAG, etag.clone()), (header::CACHE_CONTROL, "public, max-age=31536000, immutable".into())];
    if headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes()) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, mime.to_string())], cache, *bytes).into_response()
}
