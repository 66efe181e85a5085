//! Handing a waiting call to another node: an internal leg bridged to the call's Meta leg.

use super::*;

pub(super) fn handed_over(direction: &'static str, result: &'static str) {
    metrics::counter!(crate::ops::names::CALLS_HANDED_OVER, "direction" => direction, "result" => result)
        .increment(1);
}

/// Offers an internal leg, points the Meta leg and it at each other, and hands the call to the
/// node at `url`; the internal leg once that node answered.
pub(super) async fn bridge(
    media: &dyn MediaPort,
    link: &dyn HandOver,
    url: String,
    call: &HandedCall,
    wa: &WaLeg,
) -> Result<LegId, (HandOffError, Option<LegId>)> {
    let trunk = media.offer_trunk().await.map_err(|e| (e.into(), None))?;
    let leg = Some(trunk.leg);
    let fail = |e: HandOffError| (e, leg);
    let stream = *trunk
        .streams
        .first()
        .ok_or_else(|| fail(HandOffError::NoStream))?;
    media
        .hold(wa.stream, false)
        .await
        .map_err(|e| fail(e.into()))?;
    media
        .route(wa.stream, Some(trunk.leg))
        .await
        .map_err(|e| fail(e.into()))?;
    media
        .route(stream, Some(wa.leg))
        .await
        .map_err(|e| fail(e.into()))?;
    let request = AdoptRequest {
        call: call.clone(),
        offer: trunk.sdp,
    };
    let answer = link
        .adopt(url, request)
        .await
        .map_err(|e| fail(HandOffError::Refused(e)))?;
    media
        .trunk_answered(trunk.leg, answer)
        .await
        .map_err(|e| fail(e.into()))?;
    Ok(trunk.leg)
}

/// Why a waiting call could not be handed to another node (it waits here again).
#[derive(Debug, thiserror::Error)]
pub(super) enum HandOffError {
    /// The engine could not make or route the trunk leg.
    #[error("media: {0}")]
    Media(#[from] crate::media::MediaError),
    /// The trunk leg's offer has no outgoing stream.
    #[error("the trunk leg has no outgoing stream")]
    NoStream,
    /// The other node did not take the call.
    #[error(transparent)]
    Refused(AdoptError),
}
