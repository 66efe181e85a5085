//! `X-Hub-Signature-256`: the HMAC-SHA256 of the raw body under the app secret (reference §2.2),
//! made for the simulator and checked in constant time for every POST.
//!
//! *Does not touch*: the body's contents.

use axum::http::HeaderValue;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::*;

/// The `X-Hub-Signature-256` value for `body`: `sha256=<hex HMAC-SHA256(app_secret, body)>`.
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(mac(app_secret, body).finalize().into_bytes())
    )
}

pub(super) fn mac(app_secret: &str, body: &[u8]) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    m.update(body);
    m
}

/// Checks a signature header against the raw body, in constant time.
pub fn verify_signature(
    app_secret: &str,
    header: Option<&HeaderValue>,
    body: &[u8],
) -> Result<(), WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?;
    let text = header
        .to_str()
        .map_err(|_| WebhookError::MalformedSignature {
            reason: "not ASCII",
        })?;
    let hex_part = text
        .trim()
        .strip_prefix("sha256=")
        .ok_or(WebhookError::MalformedSignature {
            reason: "no sha256= prefix",
        })?;
    if hex_part.len() != 64 {
        return Err(WebhookError::MalformedSignature {
            reason: "not 64 hex digits",
        });
    }
    let expected = hex::decode(hex_part)
        .map_err(|_| WebhookError::MalformedSignature { reason: "not hex" })?;
    mac(app_secret, body)
        .verify_slice(&expected)
        .map_err(|_| WebhookError::SignatureMismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_round_trip_and_rejections() {
        let body = br#"{"object":"x"}"#;
        let good = sign("s3cret", body);
        let hv = |s: &str| HeaderValue::from_str(s).unwrap();
        verify_signature("s3cret", Some(&hv(&good)), body).unwrap();
        verify_signature(
            "s3cret",
            Some(&hv(&good.to_uppercase().replace("SHA256=", "sha256="))),
            body,
        )
        .unwrap();
        assert_eq!(
            verify_signature("s3cret", None, body),
            Err(WebhookError::MissingSignature)
        );
        assert_eq!(
            verify_signature("other", Some(&hv(&good)), body),
            Err(WebhookError::SignatureMismatch)
        );
        assert_eq!(
            verify_signature("s3cret", Some(&hv(&good)), b"{\"object\":\"y\"}"),
            Err(WebhookError::SignatureMismatch)
        );
        for bad in [
            good.replace("sha256=", "sha1="),
            good[..good.len() - 2].to_owned(),
            good.replace(&good[7..9], "zz"),
            "sha256=".to_owned(),
        ] {
            assert!(
                matches!(
                    verify_signature("s3cret", Some(&hv(&bad)), body),
                    Err(WebhookError::MalformedSignature { .. })
                ),
                "{bad}"
            );
        }
    }
}
