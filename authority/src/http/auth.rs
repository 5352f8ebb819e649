//! The `Authorization` header, parsed as RFC 9110 section 11 says.
//!
//! `credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]`; the scheme
//! is case-insensitive (section 11.1), so `bearer`, `Bearer` and `BEARER` are
//! the same; the field value's leading and trailing whitespace is not part of
//! it (section 5.5). The field is a singleton: two of them are a bad request,
//! not a choice. Messages never echo what was presented: a credential sent
//! without a scheme would otherwise be logged or shown back.

use warp::http::HeaderMap;
use warp::http::header::AUTHORIZATION;

use super::models::{Refusal, RefusalCode};

/// The Bearer credential of a request: `Ok(None)` when the header is absent.
///
/// # Errors
///
/// [`RefusalCode::BadRequest`] for a repeated header or one that is not
/// visible ASCII; [`RefusalCode::Unauthorized`] for another scheme or an
/// empty credential.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refusal::new(
            RefusalCode::BadRequest,
            "more than one Authorization header",
        ));
    }
    let value = value.to_str().map_err(|_| {
        Refusal::new(
            RefusalCode::BadRequest,
            "the Authorization header is not visible ASCII",
        )
    })?;
    let value = value.trim_matches([' ', '\t']);
    let (scheme, credential) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Refusal::new(
            RefusalCode::Unauthorized,
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let credential = credential.trim_start_matches([' ', '\t']);
    if credential.is_empty() {
        return Err(Refusal::new(
            RefusalCode::Unauthorized,
            "missing Authorization: Bearer credential",
        ));
    }
    Ok(Some(credential))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use warp::http::HeaderValue;

    use super::*;

    fn parse(values: &[&[u8]]) -> Result<Option<String>, Refusal> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).unwrap());
        }
        bearer(&h).map(|c| c.map(str::to_string))
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for v in [
            "Bearer tsk_x",
            "bearer tsk_x",
            "BEARER tsk_x",
            "bEaReR tsk_x",
        ] {
            assert_eq!(
                parse(&[v.as_bytes()]).unwrap().as_deref(),
                Some("tsk_x"),
                "{v}"
            );
        }
    }

    #[test]
    fn whitespace_around_and_between_is_not_part_of_the_credential() {
        for v in [
            "Bearer  tsk_x",
            "Bearer tsk_x ",
            " Bearer tsk_x",
            "Bearer\ttsk_x",
        ] {
            assert_eq!(
                parse(&[v.as_bytes()]).unwrap().as_deref(),
                Some("tsk_x"),
                "{v:?}"
            );
        }
    }

    #[test]
    fn no_header_is_no_credential() {
        assert_eq!(parse(&[]).unwrap(), None);
    }

    #[test]
    fn other_schemes_and_empty_credentials_are_unauthorized_without_echo() {
        for v in [
            "Basic dXNlcjpwYXNz",
            "tsk_secret",
            "Bearer",
            "Bearer ",
            "Bearertsk_x",
            "",
        ] {
            let r = parse(&[v.as_bytes()]).unwrap_err();
            assert_eq!(r.kind(), RefusalCode::Unauthorized, "{v:?}");
            assert!(
                !r.message().contains("tsk_secret"),
                "{v:?}: {}",
                r.message()
            );
            assert!(!r.message().contains("dXNl"), "{v:?}: {}", r.message());
        }
    }

    #[test]
    fn two_authorization_fields_or_non_ascii_are_bad_requests() {
        let r = parse(&[b"Bearer a", b"Bearer b"]).unwrap_err();
        assert_eq!(r.kind(), RefusalCode::BadRequest);
        let r = parse(&[b"Bearer tsk_\xff"]).unwrap_err();
        assert_eq!(r.kind(), RefusalCode::BadRequest);
    }
}
