//! Pagination of the API's lists: `?offset=&limit=` in, a JSON array out, with the total in
//! `X-Total-Count` and the next page in `Link: <…>; rel="next"` (RFC 8288), as GitHub's API
//! does. A list asked for without a limit holds the first [`DEFAULT_LIMIT`] items.
//!
//! Owns: those query parameters and headers. Must not touch: what is listed.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::ApiError;

/// Items in a page when no limit is given.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest page.
pub const MAX_LIMIT: u32 = 1000;

/// `?offset=&limit=`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams,
)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items to skip (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
    /// Items in the page (default 100, at most 1000).
    #[serde(default)]
    pub limit: Option<u32>,
}

impl Page {
    /// The offset and limit in effect.
    ///
    /// # Errors
    /// A limit of 0 or above [`MAX_LIMIT`].
    pub fn bounds(&self) -> Result<(u64, u32), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("limit must be from 1 to {MAX_LIMIT}"),
            ));
        }
        Ok((self.offset.unwrap_or(0), limit))
    }
}

/// One page of `items` (the whole list, in order), as the answer.
pub fn paged<T: Serialize>(
    items: Vec<T>,
    page: &Page,
    path: &str,
    query: Option<&str>,
) -> Response {
    let (offset, limit) = match page.bounds() {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let total = items.len() as u64;
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(items.len());
    let page: Vec<T> = items.into_iter().skip(start).take(limit as usize).collect();
    paged_slice(page, offset, limit, total, path, query)
}

/// A page already cut (`items` starts at `offset`), out of `total`, as the answer.
pub fn paged_slice<T: Serialize>(
    items: Vec<T>,
    offset: u64,
    limit: u32,
    total: u64,
    path: &str,
    query: Option<&str>,
) -> Response {
    let shown = items.len() as u64;
    let mut resp = Json(items).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&total.to_string()) {
        h.insert("x-total-count", v);
    }
    let next = offset.saturating_add(shown);
    if shown > 0 && next < total {
        let link = format!("<{}>; rel=\"next\"", page_url(path, query, next, limit));
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(axum::http::header::LINK, v);
        }
    }
    resp
}

/// `path?query` with offset and limit replaced.
fn page_url(path: &str, query: Option<&str>, offset: u64, limit: u32) -> String {
    let mut pairs: Vec<(String, String)> = query
        .map(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default())
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| k != "offset" && k != "limit")
        .collect();
    pairs.push(("offset".into(), offset.to_string()));
    pairs.push(("limit".into(), limit.to_string()));
    let q = serde_urlencoded::to_string(&pairs).unwrap_or_default();
    format!("{path}?{q}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_keeps_the_filters() {
        assert_eq!(
            page_url("/api/v1/audit", Some("actor=ann&offset=0&limit=2"), 2, 2),
            "/api/v1/audit?actor=ann&offset=2&limit=2"
        );
    }

    #[test]
    fn limits_are_bounded() {
        assert!(
            Page {
                offset: None,
                limit: Some(0)
            }
            .bounds()
            .is_err()
        );
        assert!(
            Page {
                offset: None,
                limit: Some(1001)
            }
            .bounds()
            .is_err()
        );
        assert_eq!(Page::default().bounds().ok(), Some((0, 100)));
    }
}
