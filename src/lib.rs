//! switchboard: answers WhatsApp Cloud API calls with its own WebRTC media engine and relays the
//! Opus packets, untouched, between the WhatsApp caller and an agent's browser.
//!
//! The architecture is in `docs/` and in each module's own docs; in short, data flows one way:
//! edges (HTTP, WebSocket, UDP) → typed events → a call's state machine → commands to the media
//! engine and the Graph API → events back. Nothing reaches across.
#![warn(unreachable_pub, missing_docs)]

pub mod accounts;
pub mod app;
pub mod calls;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod events;
pub mod http;
pub mod ids;
pub mod media;
pub mod ops;
pub mod routing;
pub mod sdp;
pub mod signaling;
pub mod sim;
pub mod store;
pub mod web;
pub mod whatsapp;
