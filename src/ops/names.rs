//! The metric names, their descriptions and the label values that need mapping. A leaf: every
//! module that records a metric names it from here, so `docs/operations.md`, the Grafana
//! dashboard and the code agree on one list.
//!
//! *Owns*: names and bounded label sets. *Does not touch*: any state.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// Calls offered by Meta, by queue (duplicates not counted).
pub const CALLS_OFFERED: &str = "switchboard_calls_offered_total";
/// Calls an agent answered, by queue (once per call).
pub const CALLS_ANSWERED: &str = "switchboard_calls_answered_total";
/// Calls answered within the service-level target of their offer, by queue.
pub const CALLS_WITHIN_TARGET: &str = "switchboard_calls_answered_within_target_total";
/// Calls that ended, by queue and outcome.
pub const CALLS_ENDED: &str = "switchboard_calls_ended_total";
/// Calls rejected at Meta before they were answered, by queue and reason.
pub const CALLS_REJECTED: &str = "switchboard_calls_rejected_total";
/// Waiting calls handed between nodes: `direction` out (to another node) or in (taken over),
/// `result` ok or failed.
pub const CALLS_HANDED_OVER: &str = "switchboard_calls_handed_over_total";
/// Panics caught in the call machines (each ends the call it concerned).
pub const CALLS_MACHINE_PANICS: &str = "switchboard_calls_machine_panics_total";
/// Calls that failed, by queue and the last Meta error code seen.
pub const CALLS_FAILED: &str = "switchboard_calls_failed_total";
/// Calls in progress now.
pub const CALLS_ACTIVE: &str = "switchboard_calls_active";
/// The configured cap of calls in progress per business number.
pub const CALLS_CAP: &str = "switchboard_calls_per_number_cap";
/// Calls waiting in each queue now.
pub const QUEUE_WAITING: &str = "switchboard_queue_waiting_calls";
/// Seconds the oldest waiting call of each queue has waited.
pub const QUEUE_OLDEST_WAIT: &str = "switchboard_queue_oldest_wait_seconds";
/// Each queue's service level since start.
pub const QUEUE_SERVICE_LEVEL: &str = "switchboard_queue_service_level_ratio";
/// The service-level target.
pub const SERVICE_LEVEL_TARGET: &str = "switchboard_service_level_target_seconds";
/// Signed-in agents by state.
pub const AGENTS: &str = "switchboard_agents";
/// Rings an agent let time out or declined, by queue.
pub const RING_NO_ANSWER: &str = "switchboard_ring_no_answer_total";
/// HTTP connections held now, by listener (`public`, `metrics`).
pub const HTTP_CONNECTIONS: &str = "switchboard_http_connections";
/// HTTP connections (or, behind a trusted proxy, requests) refused, by listener and reason
/// (`per_client`: the address holds its share; `accept_error`: the process could not accept).
pub const HTTP_REFUSED: &str = "switchboard_http_refused_total";
/// HTTP connections closed by switchboard, by listener and reason (`header_timeout`: headers
/// not sent, or idle, within the header timeout; `error`: the client broke the protocol).
pub const HTTP_CLOSED: &str = "switchboard_http_closed_total";
/// Meta's webhook received → `pre_accept` sent.
pub const SETUP_WEBHOOK_TO_PRE_ACCEPT: &str = "switchboard_setup_webhook_to_pre_accept_seconds";
/// The agent answered → `accept` sent.
pub const SETUP_ANSWER_TO_ACCEPT: &str = "switchboard_setup_answer_to_accept_seconds";
/// `accept` sent → the first packet to Meta.
pub const SETUP_ACCEPT_TO_FIRST_PACKET: &str = "switchboard_setup_accept_to_first_packet_seconds";
/// The agent answered → the caller's first packet to the agent.
pub const SETUP_ANSWER_TO_CALLER_PACKET: &str =
    "switchboard_setup_answer_to_first_caller_packet_seconds";
/// A call-back: the agent pressed Call back → Graph `connect` sent.
pub const SETUP_CALLBACK_TO_CONNECT: &str = "switchboard_setup_callback_to_connect_seconds";
/// A call-back: the customer's answer webhook → the first packet to them.
pub const SETUP_CALLEE_ANSWER_TO_PACKET: &str =
    "switchboard_setup_callee_answer_to_first_packet_seconds";
/// Call-backs by what became of them (`outcome`: placed, connected, declined, no_answer,
/// cancelled, failed, refused with `code`; unknown_status: a status for a call not placed here).
pub const CALLBACKS: &str = "switchboard_callbacks_total";
/// Permission requests sent (`requested`, `failed`, `granted`: a permanent one existed) and
/// customers' replies (`accepted`, `rejected`).
pub const PERMISSION_REQUESTS: &str = "switchboard_permission_requests_total";

/// Media legs alive.
pub const MEDIA_LEGS: &str = "switchboard_media_legs";
/// RTP packets forwarded, by the kind of leg they were sent on.
pub const MEDIA_FORWARDED_PACKETS: &str = "switchboard_media_forwarded_packets_total";
/// RTP payload bytes forwarded, by the kind of leg they were sent on.
pub const MEDIA_FORWARDED_BYTES: &str = "switchboard_media_forwarded_bytes_total";
/// Packets the engine made itself, by kind.
pub const MEDIA_GENERATED: &str = "switchboard_media_generated_packets_total";
/// Packets not forwarded, by reason.
pub const MEDIA_DROPPED: &str = "switchboard_media_dropped_packets_total";
/// Datagrams received, and those dropped, by outcome.
pub const MEDIA_DATAGRAMS: &str = "switchboard_media_datagrams_total";
/// Offers the engine refused, by reason.
pub const MEDIA_OFFERS_REFUSED: &str = "switchboard_media_offers_refused_total";
/// Legs that failed, by kind and reason.
pub const MEDIA_LEGS_FAILED: &str = "switchboard_media_legs_failed_total";
/// Per-leg loss (fraction), each statistics report.
pub const MEDIA_LEG_LOSS: &str = "switchboard_media_leg_loss_ratio";
/// Per-leg jitter, each statistics report.
pub const MEDIA_LEG_JITTER: &str = "switchboard_media_leg_jitter_seconds";
/// Per-leg round-trip time, each statistics report.
pub const MEDIA_LEG_RTT: &str = "switchboard_media_leg_rtt_seconds";
/// The media threads' busy share over the last flush interval, averaged over the shards.
pub const MEDIA_BUSY_RATIO: &str = "switchboard_media_engine_busy_ratio";
/// The media threads' busy time, added up.
pub const MEDIA_BUSY_SECONDS: &str = "switchboard_media_engine_busy_seconds_total";
/// Media engine threads.
pub const MEDIA_SHARDS: &str = "switchboard_media_engine_shards";
/// Packets forwarded from one media thread to another (the call's legs on two shards).
pub const MEDIA_CROSSED: &str = "switchboard_media_crossed_packets_total";
/// Datagrams the sockets refused to send.
pub const MEDIA_SEND_ERRORS: &str = "switchboard_media_send_errors_total";
/// Statistics and DTMF events dropped because the program read too slowly.
pub const MEDIA_EVENTS_DROPPED: &str = "switchboard_media_events_dropped_total";

/// Graph API request latency, by action.
pub const GRAPH_DURATION: &str = "switchboard_graph_request_duration_seconds";
/// Graph API requests, by action and outcome.
pub const GRAPH_REQUESTS: &str = "switchboard_graph_requests_total";
/// Graph API errors, by action and code.
pub const GRAPH_ERRORS: &str = "switchboard_graph_errors_total";
/// Webhook requests, by outcome.
pub const WEBHOOKS: &str = "switchboard_webhooks_total";
/// Webhook call events, by outcome.
pub const WEBHOOK_EVENTS: &str = "switchboard_webhook_events_total";
/// Meta's `account_update` calling-quality events, by event and type.
pub const META_QUALITY_EVENTS: &str = "switchboard_meta_quality_events_total";

/// Call events written to the outbox (one per event and endpoint), by result (`ok`, or
/// `failed`: the database refused them and they are lost).
pub const EVENTS_WRITTEN: &str = "switchboard_events_written_total";
/// Delivery attempts of call events, by result: `delivered`, `retry` (failed, tried again
/// later) or `failed` (retried for the whole window; its endpoint is disabled).
pub const EVENT_DELIVERIES: &str = "switchboard_event_deliveries_total";
/// Seconds from the state change to its event's delivery (the endpoint's 2xx answer).
pub const EVENT_LAG: &str = "switchboard_event_delivery_lag_seconds";
/// Call events waiting for delivery on this node.
pub const EVENTS_PENDING: &str = "switchboard_events_pending";
/// Event endpoints switchboard disabled because they kept failing.
pub const EVENT_ENDPOINTS_DISABLED: &str = "switchboard_event_endpoints_disabled_total";

/// 1 while draining.
pub const DRAINING: &str = "switchboard_draining";
/// 1, labelled with the version.
pub const BUILD_INFO: &str = "switchboard_build_info";

/// Buckets of the set-up and Graph latency histograms, seconds: a few ms (our own steps) up to
/// Meta's patience.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of the event lag histogram, seconds: milliseconds when the endpoint is up, hours
/// when it was down and the event retried.
pub const EVENT_LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
    3600.0, 21600.0, 86400.0,
];
/// Buckets of the loss histogram (fraction lost).
pub const LOSS_BUCKETS: &[f64] = &[0.0, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];
/// Buckets of the jitter and round-trip time histograms, seconds.
pub const NETWORK_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0,
];

/// Meta's documented calling error codes (reference §7.2) keep their number as a label; any
/// other code becomes `other`, so a label set stays bounded whatever Meta sends.
pub fn meta_code_label(code: i64) -> &'static str {
    match code {
        100 => "100",
        613 => "613",
        131009 => "131009",
        131030 => "131030",
        131044 => "131044",
        131055 => "131055",
        138000 => "138000",
        138001 => "138001",
        138002 => "138002",
        138003 => "138003",
        138004 => "138004",
        138005 => "138005",
        138006 => "138006",
        138007 => "138007",
        138009 => "138009",
        138012 => "138012",
        138013 => "138013",
        138014 => "138014",
        138015 => "138015",
        138017 => "138017",
        138018 => "138018",
        138019 => "138019",
        138020 => "138020",
        138021 => "138021",
        138022 => "138022",
        138023 => "138023",
        190 => "190",
        _ => "other",
    }
}

/// `account_update` events and types as labels (Meta's spelling, lower case); others `other`.
pub fn quality_event_label(event: &str) -> &'static str {
    match event {
        "ACCOUNT_VIOLATION" => "account_violation",
        "ACCOUNT_RESTRICTION" => "account_restriction",
        _ => "other",
    }
}

/// See [`quality_event_label`].
pub fn quality_type_label(kind: &str) -> &'static str {
    match kind {
        "LOW_CALLING_QUALITY" => "low_calling_quality",
        "USER_INITIATED_CALLS_LOW_PICKUP_RATE" => "user_initiated_calls_low_pickup_rate",
        "RESTRICTED_USER_INITIATED_CALLING_CALL_BUTTON_HIDDEN" => {
            "restricted_user_initiated_calling_call_button_hidden"
        }
        "RESTRICTED_USER_INITIATED_CALLING" => "restricted_user_initiated_calling",
        "RESTRICTED_BUSINESS_INITIATED_CALLING" => "restricted_business_initiated_calling",
        "RESTRICTED_BIZ_INITIATED_AND_USER_INITIATED_CALLING" => {
            "restricted_biz_initiated_and_user_initiated_calling"
        }
        _ => "other",
    }
}

/// Describes every metric to the recorder (HELP and unit lines).
pub fn describe() {
    describe_counter!(
        CALLS_OFFERED,
        "Calls Meta offered, by queue (duplicates not counted)."
    );
    describe_counter!(
        CALLS_ANSWERED,
        "Calls an agent answered, by queue (once per call)."
    );
    describe_counter!(
        CALLS_WITHIN_TARGET,
        "Calls answered within the service-level target of their offer, by queue."
    );
    describe_counter!(CALLS_ENDED, "Calls that ended, by queue and outcome.");
    describe_counter!(
        CALLS_REJECTED,
        "Calls rejected at Meta before they were answered, by queue and reason."
    );
    describe_counter!(
        CALLS_HANDED_OVER,
        "Waiting calls handed between nodes, by direction (out, in) and result (ok, failed)."
    );
    describe_counter!(
        CALLS_MACHINE_PANICS,
        "Panics caught in the call machines; each ended the call it concerned."
    );
    describe_counter!(
        CALLS_FAILED,
        "Calls that failed, by queue and the last Meta error code seen (none: no code)."
    );
    describe_gauge!(CALLS_ACTIVE, "Calls in progress.");
    describe_gauge!(
        CALLS_CAP,
        "The configured cap of calls in progress per business number."
    );
    describe_gauge!(QUEUE_WAITING, "Calls waiting in each queue.");
    describe_gauge!(
        QUEUE_OLDEST_WAIT,
        Unit::Seconds,
        "How long the oldest waiting call of each queue has waited."
    );
    describe_gauge!(
        QUEUE_SERVICE_LEVEL,
        "Of each queue's calls that ended since start, the share answered within the target."
    );
    describe_gauge!(
        SERVICE_LEVEL_TARGET,
        Unit::Seconds,
        "The service-level target ([calls] service_level_target)."
    );
    describe_gauge!(AGENTS, "Signed-in agents by state.");
    describe_counter!(
        RING_NO_ANSWER,
        "Rings an agent let time out or declined, by the call's queue."
    );
    describe_histogram!(
        SETUP_WEBHOOK_TO_PRE_ACCEPT,
        Unit::Seconds,
        "Meta's connect webhook received to pre_accept sent."
    );
    describe_histogram!(
        SETUP_ANSWER_TO_ACCEPT,
        Unit::Seconds,
        "The agent answered to accept sent."
    );
    describe_histogram!(
        SETUP_ACCEPT_TO_FIRST_PACKET,
        Unit::Seconds,
        "accept sent to the first packet sent to Meta."
    );
    describe_histogram!(
        SETUP_ANSWER_TO_CALLER_PACKET,
        Unit::Seconds,
        "The agent answered to the caller's first packet sent to the agent."
    );
    describe_histogram!(
        SETUP_CALLBACK_TO_CONNECT,
        Unit::Seconds,
        "A call-back: Call back pressed to Graph connect sent (permission checked, offer made)."
    );
    describe_histogram!(
        SETUP_CALLEE_ANSWER_TO_PACKET,
        Unit::Seconds,
        "A call-back: the customer's answer webhook to the first packet sent to them."
    );
    describe_counter!(
        PERMISSION_REQUESTS,
        "Call-permission requests (requested, failed, granted) and the customers' replies (accepted, rejected)."
    );
    describe_counter!(
        CALLBACKS,
        "Call-backs by outcome (placed, connected, declined, no_answer, cancelled, failed, refused by Meta's code)."
    );
    describe_gauge!(MEDIA_LEGS, "Media legs alive.");
    describe_counter!(
        MEDIA_FORWARDED_PACKETS,
        "RTP packets forwarded, by the kind of leg they were sent on."
    );
    describe_counter!(
        MEDIA_FORWARDED_BYTES,
        Unit::Bytes,
        "RTP payload bytes forwarded, by the kind of leg they were sent on."
    );
    describe_counter!(
        MEDIA_GENERATED,
        "Packets the engine made itself, by kind (silence, hold, dtmf)."
    );
    describe_counter!(MEDIA_DROPPED, "Packets not forwarded, by reason.");
    describe_counter!(
        MEDIA_DATAGRAMS,
        "Datagrams received, and dropped by reason."
    );
    describe_counter!(
        MEDIA_OFFERS_REFUSED,
        "Offers the engine refused, by reason."
    );
    describe_counter!(MEDIA_LEGS_FAILED, "Legs that failed, by kind and reason.");
    describe_histogram!(
        MEDIA_LEG_LOSS,
        "Fraction of a leg's incoming packets lost, each statistics report."
    );
    describe_histogram!(
        MEDIA_LEG_JITTER,
        Unit::Seconds,
        "A leg's incoming interarrival jitter, each statistics report."
    );
    describe_histogram!(
        MEDIA_LEG_RTT,
        Unit::Seconds,
        "A leg's round-trip time, each statistics report."
    );
    describe_gauge!(
        MEDIA_BUSY_RATIO,
        "Share of the last flush interval the media threads spent working, averaged over them \
         (1: saturated)."
    );
    describe_counter!(
        MEDIA_BUSY_SECONDS,
        Unit::Seconds,
        "Time the media threads spent working, added up."
    );
    describe_gauge!(MEDIA_SHARDS, "Media engine threads.");
    describe_counter!(
        MEDIA_CROSSED,
        "Packets forwarded from one media thread to another."
    );
    describe_counter!(MEDIA_SEND_ERRORS, "Datagrams the sockets refused to send.");
    describe_counter!(
        MEDIA_EVENTS_DROPPED,
        "Statistics and DTMF events dropped because they were not read fast enough."
    );
    describe_histogram!(
        GRAPH_DURATION,
        Unit::Seconds,
        "Graph API request latency (each attempt), by action."
    );
    describe_counter!(
        GRAPH_REQUESTS,
        "Graph API requests (each attempt), by action and outcome."
    );
    describe_counter!(
        GRAPH_ERRORS,
        "Graph API errors, by action and code (Meta's code, or http, network, timeout, decode, unconfirmed)."
    );
    describe_counter!(WEBHOOKS, "Webhook requests, by outcome.");
    describe_counter!(WEBHOOK_EVENTS, "Webhook call events, by outcome.");
    describe_counter!(
        META_QUALITY_EVENTS,
        "Meta's account_update calling-quality events, by event and type."
    );
    describe_gauge!(HTTP_CONNECTIONS, "HTTP connections held, by listener.");
    describe_counter!(
        HTTP_REFUSED,
        "HTTP connections (behind a trusted proxy: requests) refused, by listener and reason."
    );
    describe_counter!(
        HTTP_CLOSED,
        "HTTP connections closed by switchboard, by listener and reason (header_timeout, error)."
    );
    describe_counter!(
        EVENTS_WRITTEN,
        "Call events written to the outbox (one per event and endpoint), by result (ok, failed)."
    );
    describe_counter!(
        EVENT_DELIVERIES,
        "Call event delivery attempts, by result (delivered, retry, failed)."
    );
    describe_histogram!(
        EVENT_LAG,
        Unit::Seconds,
        "Seconds from a state change to its event's delivery."
    );
    describe_gauge!(
        EVENTS_PENDING,
        "Call events waiting for delivery on this node."
    );
    describe_counter!(
        EVENT_ENDPOINTS_DISABLED,
        "Event endpoints disabled because they kept failing."
    );
    describe_gauge!(DRAINING, "1 while switchboard drains (new calls rejected).");
    describe_gauge!(BUILD_INFO, "1, labelled with the running version.");
}
