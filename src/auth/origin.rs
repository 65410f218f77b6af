//! Cross-site request forgery and framing: a state-changing request (any method but
//! GET, HEAD and OPTIONS — every server function is a POST) must come from this site's
//! own pages, and no other site may frame them.
//!
//! Browsers say where a request comes from: `Sec-Fetch-Site` (every current browser)
//! and `Origin` (on every cross-origin POST). A request that says it is cross-site, or
//! names an origin other than the host it was sent to, is refused with 403 before any
//! server function runs — so a page elsewhere can neither act with a visitor's session
//! nor sign the visitor into another account. A request that says neither comes from
//! no browser, and so carries no visitor's cookie by accident.
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};

/// Refuses state-changing requests that a browser says come from another site.
pub async fn same_site_only(req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || from_this_site(req.headers())
    {
        return next.run(req).await;
    }
    (
        StatusCode::FORBIDDEN,
        "cross-site requests are refused: use this site's own pages",
    )
        .into_response()
}

/// Whether the request's own headers place it on this site (or say nothing of it).
fn from_this_site(headers: &HeaderMap) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// The content security policy of an HTML page whose inline scripts carry `nonce`:
/// scripts only from this site or with the nonce (no `eval`; WebAssembly may be
/// compiled), styles only from this site (plus `style` attributes, which the run
/// timeline sets), every fetch and stream to this site only, no plugins, no framing.
pub fn page_policy(nonce: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; \
         connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; \
         frame-ancestors 'none'"
    ))
    .ok()
}

/// Gives the page being rendered its policy, with the nonce Leptos put on its
/// hydration scripts (call while rendering the shell).
pub fn set_page_policy() {
    let nonce = leptos::nonce::use_nonce();
    let response = leptos::prelude::use_context::<leptos_axum::ResponseOptions>();
    if let (Some(nonce), Some(response)) = (nonce, response) {
        if let Some(policy) = page_policy(&nonce) {
            response.insert_header(header::CONTENT_SECURITY_POLICY, policy);
        }
    }
}

/// Headers every response carries: no framing by other sites, no MIME sniffing, no
/// full URLs leaked to other sites, and — unless a page set its own (`page_policy`) —
/// a policy that allows nothing to run or load.
pub fn security_headers() -> [(header::HeaderName, HeaderValue); 4] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn requests_are_told_apart_by_what_the_browser_says() {
        assert!(from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-origin"
        )])));
        assert!(from_this_site(&headers(&[("sec-fetch-site", "none")])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "cross-site"
        )])));
        assert!(!from_this_site(&headers(&[(
            "sec-fetch-site",
            "same-site"
        )])));
        assert!(from_this_site(&headers(&[
            ("origin", "http://127.0.0.1:3000"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(!from_this_site(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(!from_this_site(&headers(&[
            ("origin", "null"),
            ("host", "127.0.0.1:3000")
        ])));
        assert!(
            from_this_site(&headers(&[])),
            "no browser, no ambient cookie"
        );
    }
}
