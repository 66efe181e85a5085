//! The HTTP edge: assembles the axum router (Meta's webhook, and in the sandbox the controls of
//! the simulator) and turns errors into responses.
//!
//! *Owns*: routes and the mapping of errors to status codes. *Does not touch*: any state of its
//! own; handlers hold handles to the components that own state.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::media::ogg::OggError;
use crate::whatsapp::simulator::{CallSpec, CallerAudio, SimError, Simulator};
use crate::whatsapp::webhook::{self, WebhookState};

/// Errors of the HTTP edge, each with its status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The simulator could not place the call.
    #[error("simulator: {0}")]
    Simulator(#[from] SimError),
    /// A request field is out of range.
    #[error("invalid request: {0}")]
    Invalid(&'static str),
    /// The audio sent is not a usable Ogg/Opus file.
    #[error("invalid request: audio: {0}")]
    Audio(#[from] OggError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::Invalid(_) | ApiError::Audio(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // Asked for what this build cannot do: the request's fault.
            ApiError::Simulator(SimError::NoTones) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Simulator(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        tracing::warn!(error = %self, %status, "request failed");
        (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

/// The whole router. The sandbox routes exist only when `simulator` is given.
pub fn router(webhook_state: WebhookState, simulator: Option<Simulator>) -> Router {
    let mut r = webhook::router(webhook_state);
    if let Some(sim) = simulator {
        r = r.merge(
            Router::new()
                .route("/sandbox/calls", post(place_call))
                .with_state(sim),
        );
    }
    r
}

/// Body of `POST /sandbox/calls`; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaceCall {
    /// The caller's number.
    pub from: Option<String>,
    /// The caller's name.
    pub name: Option<String>,
    /// A test tone for the caller to play, Hz (50–4000); only builds with the `tones` feature
    /// make tones (others answer 422).
    pub tone_hz: Option<f64>,
    /// An Ogg/Opus file (mono or stereo, 20 ms frames), base64, for the caller to play in a
    /// loop. With neither this nor `tone_hz` the caller plays the built-in melody.
    pub audio_ogg_base64: Option<String>,
    /// Seconds until the caller hangs up (0: never).
    pub hang_up_after_secs: Option<u64>,
}

/// Answer of `POST /sandbox/calls`.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlacedCall {
    /// Meta's call id of the simulated call.
    pub call_id: String,
}

async fn place_call(
    State(sim): State<Simulator>,
    body: Option<Json<PlaceCall>>,
) -> Result<Json<PlacedCall>, ApiError> {
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let mut spec = CallSpec::default();
    match (req.tone_hz, req.audio_ogg_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::Invalid(
                "give tone_hz or audio_ogg_base64, not both",
            ))
        }
        (Some(hz), None) => {
            if !(50.0..=4000.0).contains(&hz) {
                return Err(ApiError::Invalid("tone_hz must be between 50 and 4000"));
            }
            spec.audio = CallerAudio::Tone { hz };
        }
        (None, Some(b64)) => {
            let bytes = BASE64_STANDARD
                .decode(b64.trim())
                .map_err(|_| ApiError::Invalid("audio_ogg_base64 is not base64"))?;
            spec.audio = CallerAudio::from_ogg(&bytes)?;
        }
        (None, None) => {}
    }
    if let Some(from) = req.from {
        if from.is_empty() || from.len() > 20 || !from.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::Invalid("from must be up to 20 digits"));
        }
        spec.from = from;
    }
    if let Some(name) = req.name {
        spec.name = name.chars().take(64).collect();
    }
    if let Some(secs) = req.hang_up_after_secs {
        spec.hang_up_after = (secs > 0).then(|| Duration::from_secs(secs.min(24 * 3600)));
    }
    let call = sim.place_call(spec).await?;
    Ok(Json(PlacedCall {
        call_id: call.call_id.0.clone(),
    }))
}
