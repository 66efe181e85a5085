//! Builds every component, wires them together, and owns start-up and shutdown.
//!
//! *Owns*: the tasks it spawns (media engine thread, webhook processor, HTTP server, the calls
//! actor, the store thread, and in the sandbox the fake Graph API and the simulator) and their
//! shutdown order: stop taking requests, end every call at Meta, then stop the rest.
//!
//! *Does not touch*: packets, Meta's JSON, SDP text, call state. It moves typed events between
//! owners.

use std::net::SocketAddr;

mod accounts;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::calls::actor::{self, CallsHandle, Deps};
use crate::calls::CentreConfig;
use crate::config::{Config, Secret};
use crate::http;
use crate::media::{Bind, EngineConfig, EngineHandle, MediaDriver, MediaError};
use crate::routing::Floor;
use crate::signaling::auth::{self, AuthHandle, DemoSignIn};
use crate::signaling::ws::{self, WsState};
use crate::store::{StoreError, StoreHandle};
use crate::whatsapp::graph::{GraphClient, GraphError};
use crate::whatsapp::simulator::{FakeGraph, Reply, Simulator, SimulatorConfig};
use crate::whatsapp::webhook::{WebhookOptions, WebhookState, WebhookStats};

/// The business number id the sandbox's simulated Meta uses.
const SANDBOX_PHONE_NUMBER_ID: &str = "100000000000001";

/// Why switchboard could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The media engine could not start (UDP bind).
    #[error("media engine: {0}")]
    Media(#[from] MediaError),
    /// The HTTP listener could not be bound.
    #[error("HTTP listener on {addr}: {source}")]
    Http {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The Graph API client could not be built.
    #[error("graph client: {0}")]
    Graph(#[from] GraphError),
    /// The sandbox's fake Graph API could not start.
    #[error("sandbox: {0}")]
    Sandbox(std::io::Error),
    /// The hold audio file is missing or not Ogg/Opus with 20 ms frames.
    #[error("hold audio (SWITCHBOARD_HOLD_AUDIO) {path}: {reason}")]
    HoldAudio {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The call records could not be opened.
    #[error("call records (SWITCHBOARD_DB): {0}")]
    Store(#[from] StoreError),
    /// Redis (`SWITCHBOARD_REDIS_URL`) is configured but does not answer.
    #[error("shared state (SWITCHBOARD_REDIS_URL): {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// On first start — no account stored yet — today's configuration becomes the `default`
/// account (issue 23: accounts live in the database, seeded from the file). Later starts keep
/// what is stored. Every node of a cluster may try at once: the first one's stands.
async fn seed_accounts(store: &StoreHandle, config: &Config) -> Result<(), StoreError> {
    if !store.accounts().await?.is_empty() {
        return Ok(());
    }
    let account = crate::accounts::Account::from_config(config);
    let (queues, people) = (account.queues.len(), account.people.len());
    match store.create_account(account).await {
        Ok(()) => {
            info!(
                account = crate::accounts::DEFAULT_ACCOUNT,
                queues, people, "the configuration file seeded the default account"
            );
            Ok(())
        }
        Err(StoreError::AccountExists(_)) => Ok(()),
        // The call centre still runs from the file, so a file the accounts' rules refuse (ids
        // the file has taken more loosely) costs nothing today: said, not fatal.
        Err(StoreError::InvalidAccount(e)) => {
            tracing::warn!(error = %e, "the configuration file does not make a valid account; none seeded");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A running switchboard.
pub struct Running {
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: SocketAddr,
    /// Where the media engine listens: the first socket of its pool.
    pub media_addr: SocketAddr,
    /// Every local UDP port of the media engine's pool.
    pub media_ports: Vec<u16>,
    /// The simulator, in the sandbox.
    pub simulator: Option<Simulator>,
    /// The media engine (for tests and, later, operations).
    pub media: EngineHandle,
    /// People, sessions and sign-in.
    pub auth: AuthHandle,
    /// In the sandbox without `[[people]]`: the demo people's sign-ins for this run.
    pub sandbox_sign_ins: Vec<DemoSignIn>,
    webhook: WebhookState,
    sandbox: Option<http::Sandbox>,
    draining: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The call centre.
    pub calls: CallsHandle,
    /// Call records.
    pub store: StoreHandle,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// Counters of the call centre, read with [`Running::call_stats`]; the metrics issue exports
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls in progress: from their offer to their end.
    pub in_progress: u64,
    /// Offers rejected at once because the business number had `max_calls_per_number` calls
    /// in progress.
    pub rejected_at_capacity: u64,
}

impl Running {
    /// The calls loop's counters so far.
    pub fn call_stats(&self) -> CallStats {
        let floor = self.calls.floor();
        let view = floor.borrow();
        CallStats {
            in_progress: view.calls.len() as u64,
            rejected_at_capacity: view.counters.rejected_at_capacity,
        }
    }

    /// The webhook edge's counters so far.
    pub fn webhook_stats(&self) -> WebhookStats {
        self.webhook.stats()
    }

    /// The sandbox's counters so far (`None` with live credentials).
    pub fn sandbox_stats(&self) -> Option<http::SandboxStats> {
        self.sandbox.as_ref().map(http::Sandbox::stats)
    }

    /// The sandbox's controls (`None` with live credentials): its simulated calls, and how its
    /// simulated customers answer call-backs.
    pub fn sandbox(&self) -> Option<&http::Sandbox> {
        self.sandbox.as_ref()
    }

    /// Starts draining: `/readyz` answers 503 at once and new calls are declined (Graph
    /// `reject`); calls in progress go on. Returns true when none is left, false after
    /// `deadline` (then [`Running::shutdown`] ends the rest at Meta).
    pub async fn drain(&self, deadline: std::time::Duration) -> bool {
        self.draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.calls.drain().await;
        let mut floor = self.calls.floor();
        let empty = tokio::time::timeout(deadline, floor.wait_for(|v| v.calls.is_empty())).await;
        matches!(empty, Ok(Ok(_)))
    }

    /// Stops everything and waits until it has stopped.
    pub async fn shutdown(self) {
        let Running {
            stop,
            done,
            media,
            store,
            ..
        } = self;
        // The engine and the store stop when their last handles are gone; these must not keep
        // them alive.
        drop(media);
        drop(store);
        let _ = stop.send(());
        let _ = done.await;
    }
}

/// Starts switchboard: binds its sockets, spawns its tasks and returns once it is serving.
pub async fn start(mut config: Config) -> Result<Running, AppError> {
    // First, so that everything counted from here on lands in it.
    let recorder = crate::ops::recorder();
    let hold = match &config.media.hold_audio {
        Some(path) => {
            let fail = |reason: String| AppError::HoldAudio {
                path: path.clone(),
                reason,
            };
            let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
            let file = crate::media::ogg::read(&bytes).map_err(|e| fail(e.to_string()))?;
            file.packets.into_iter().map(std::sync::Arc::from).collect()
        }
        None => hold_audio(),
    };
    let (media_driver, media, media_events) = MediaDriver::spawn(
        media_bind(&config.media),
        engine_config(&config.media, hold),
    )?;
    let media_addr = media_driver.local_addr();
    let media_ports = media_driver.ports().to_vec();
    if config.media.public_ip_detected {
        warn!(
            advertised = %config.media.public_ip,
            "SWITCHBOARD_PUBLIC_IP is not set: advertising the default route's interface to \
             Meta. Behind NAT (most cloud hosts) that is the wrong address and calls will \
             connect without audio: set SWITCHBOARD_PUBLIC_IP."
        );
    }

    let listener = TcpListener::bind(config.http_addr)
        .await
        .map_err(|source| AppError::Http {
            addr: config.http_addr,
            source,
        })?;
    let http_addr = listener.local_addr().map_err(|source| AppError::Http {
        addr: config.http_addr,
        source,
    })?;

    let mut sandbox_server = None;
    let mut sandbox_sign_ins = Vec::new();
    // Where the Graph API is and the token it takes: every business number's client uses them.
    let mut graph_base = (config.whatsapp.graph_url.clone(), None::<Secret>);
    let (graph, app_secret, verify_token, simulator) = match &config.whatsapp.credentials {
        Some(c) => (
            {
                graph_base.1 = Some(c.access_token.clone());
                GraphClient::new(
                    &config.whatsapp.graph_url,
                    &config.whatsapp.graph_version,
                    &c.phone_number_id,
                    c.access_token.clone(),
                )?
            },
            c.app_secret.clone(),
            c.verify_token.clone(),
            None,
        ),
        None => {
            // The sandbox: a fake Graph API on loopback and a simulator that calls us, with
            // secrets made up for this run.
            let token = Secret::new(random_token());
            let app_secret = Secret::new(random_token());
            let verify_token = Secret::new(random_token());
            let phone_number_id = SANDBOX_PHONE_NUMBER_ID.to_owned();
            let fake = FakeGraph::new(token.expose(), phone_number_id.clone());
            // Its simulated customers allow the business to call them (and accept a permission
            // request when asked), so an agent can call any of them back.
            fake.on_permission_request_by_default(Reply::accept_for_a_week());
            // A caller who hangs up while waiting comes back as a call-back task ("Place a
            // missed call"); deployments choose with `[[queues]] callbacks`.
            config
                .calls
                .callback_queues
                .insert(config.calls.default_queue.clone());
            let events = fake.take_events().expect("a new fake's events are untaken");
            let (graph_addr, server) = fake
                .clone()
                .serve((std::net::Ipv4Addr::LOCALHOST, 0).into())
                .await
                .map_err(AppError::Sandbox)?;
            sandbox_server = Some(server);
            let graph_url = format!("http://{graph_addr}");
            let sim = Simulator::start(
                SimulatorConfig {
                    webhook_url: format!(
                        "http://{}{}",
                        loopback_of(http_addr),
                        crate::whatsapp::webhook::WEBHOOK_PATH
                    ),
                    app_secret: app_secret.clone(),
                    phone_number_id: phone_number_id.clone(),
                    media_ip: loopback_of(http_addr).ip(),
                    ..SimulatorConfig::default()
                },
                fake,
                events,
            );
            warn!(
                graph = %graph_url,
                "SANDBOX: no WhatsApp credentials configured; Meta is simulated on this machine. \
                 Place a test call with `switchboard simulate-call` or POST /sandbox/calls; \
                 its simulated customers answer call-backs."
            );
            graph_base = (graph_url.clone(), Some(token.clone()));
            (
                GraphClient::new(
                    &graph_url,
                    &config.whatsapp.graph_version,
                    &phone_number_id,
                    token,
                )?,
                app_secret,
                verify_token,
                Some(sim),
            )
        }
    };

    let our_phone_number_id = match &config.whatsapp.credentials {
        Some(c) => c.phone_number_id.clone(),
        None => SANDBOX_PHONE_NUMBER_ID.to_owned(),
    };
    // Where the other nodes hand this one the events of its calls.
    let node_url = config.cluster.node_url.clone().unwrap_or_else(|| {
        if http_addr.ip().is_unspecified() {
            format!("http://{}:{}", config.store.node_id, http_addr.port())
        } else {
            format!("http://{http_addr}")
        }
    });
    let cluster = match &config.cluster.redis_url {
        Some(url) => {
            let cluster =
                crate::cluster::Cluster::connect(url.expose(), &config.store.node_id).await?;
            cluster.publish_url(&node_url).await?;
            cluster.renew_lease(config.cluster.lease).await?;
            info!(node = %cluster.node(), "joined the other nodes in Redis");
            Some(cluster)
        }
        None => None,
    };
    let (store, store_driver) = match (&config.store.database_url, &config.store.path) {
        (Some(url), _) => {
            let (url, node) = (url.expose().to_owned(), config.store.node_id.clone());
            info!(node = %node, "call records in the shared PostgreSQL database");
            let (reader_url, reader_node) = (url.clone(), node.clone());
            StoreHandle::spawn_with_reader(
                move || crate::store::PostgresStore::connect(&url, &node),
                move || crate::store::PostgresStore::connect(&reader_url, &reader_node),
            )
            .await?
        }
        (None, Some(path)) => StoreHandle::open(path).await?,
        (None, None) => StoreHandle::open_in_memory().await?,
    };
    seed_accounts(&store, &config).await?;
    // Checked when the configuration was read: 32 bytes in base64.
    let seal_key = config
        .auth
        .secrets_key
        .as_ref()
        .and_then(|k| crate::accounts::SealKey::from_base64(k.expose()).ok());
    // The accounts: the stored ones (the file seeds the first), with the sandbox's demo people
    // when nobody is configured.
    let mut source = accounts::Source {
        store: store.clone(),
        fallback: crate::accounts::Account::from_config(&config),
        demo: vec![],
        seal: seal_key.clone(),
        graph: accounts::GraphSetup {
            url: graph_base.0.clone(),
            version: config.whatsapp.graph_version.clone(),
            main_number: our_phone_number_id.clone(),
            token: graph_base.1.clone(),
        },
    };
    let nobody = source.accounts().await?.iter().all(|a| a.people.is_empty());
    if nobody && simulator.is_some() {
        let people;
        (people, sandbox_sign_ins) = auth::demo_people().await;
        source.demo = people
            .into_iter()
            .map(crate::accounts::PersonDef::from)
            .collect();
        let list: Vec<String> = sandbox_sign_ins.iter().map(|d| d.to_string()).collect();
        warn!(
            "SANDBOX: no [[people]] configured; demo sign-ins for this run only: {} \
             (agent page http://{}/ , supervisor page http://{}/supervisor)",
            list.join(", "),
            loopback_of(http_addr),
            loopback_of(http_addr),
        );
    } else if nobody {
        warn!("no [[people]] configured: nobody can sign in (see deploy/switchboard.example.toml)");
    }
    let accounts = source.accounts().await?;
    let roster = crate::accounts::Roster::new(&accounts);
    // Call events: the endpoints as the accounts say (made again at each change), and the
    // outbox's delivery task woken by each write.
    let (targets_tx, targets_rx) = tokio::sync::watch::channel(std::sync::Arc::new(
        crate::events::Targets::of(&accounts, seal_key.as_ref()),
    ));
    let events_wake = std::sync::Arc::new(tokio::sync::Notify::new());
    let emitter = crate::events::Emitter::new(targets_rx.clone(), events_wake.clone());
    let auth = AuthHandle::new(&config.auth, roster.people.clone());
    let (rule_tx, _) =
        tokio::sync::watch::channel(std::sync::Arc::new(crate::routing::QueueRule {
            numbers: roster.numbers.clone(),
            default: roster.default_queue.clone(),
            ours: our_phone_number_id.clone(),
        }));
    let (wa_tx, wa_rx) = mpsc::channel(1024);
    // Signs what the nodes hand each other (made from the app secret every node has).
    let node_key = cluster
        .as_ref()
        .map(|_| crate::cluster::NodeKey::derive(&app_secret));
    let authority = cluster
        .clone()
        .zip(node_key.clone())
        .map(|(c, key)| crate::cluster::RedisAuthority::new(c, key));
    // With several nodes, what the webhook edge admits is placed on its node first
    // (`calls::dispatch`); alone, it goes straight to the call machines.
    let (edge_tx, placement) = match &authority {
        Some(authority) => {
            let (meta_tx, meta_rx) = mpsc::channel(1024);
            let (handed_tx, handed_rx) = mpsc::channel(1024);
            let task = tokio::spawn(crate::calls::dispatch::place_events(
                authority.clone(),
                rule_tx.subscribe(),
                meta_rx,
                handed_rx,
                wa_tx.clone(),
                WebhookOptions::default().dedup_ttl,
            ));
            (meta_tx, Some((task, handed_tx)))
        }
        None => (wa_tx.clone(), None),
    };
    drop(wa_tx);
    let (webhook_state, webhook_processor) = WebhookState::spawn(
        app_secret,
        verify_token,
        edge_tx,
        WebhookOptions {
            cluster: cluster.clone(),
            ..WebhookOptions::default()
        },
    );
    let sandbox = simulator
        .clone()
        .map(|sim| http::Sandbox::new(sim, config.limits.sandbox_max_calls));
    if let Some(cluster) = &cluster {
        auth.share_with(cluster.clone());
    }

    // Calls a previous run left live at Meta are ended before new ones come in.
    actor::end_leftovers(&store, &graph, &config.store.node_id, Some(&emitter)).await;
    // The tasks that run as long as switchboard does; cancelled together once its calls ended.
    let background = tokio_util::task::TaskTracker::new();
    let stop_background = tokio_util::sync::CancellationToken::new();
    if let Some(c) = cluster.clone() {
        background.spawn(
            stop_background
                .clone()
                .run_until_cancelled_owned(keep_lease(
                    c,
                    node_url.clone(),
                    store.clone(),
                    graph.clone(),
                    config.cluster.lease,
                    (config.store.node_id.clone(), emitter.clone()),
                )),
        );
    }
    if let Some(sandbox) = &sandbox {
        // The simulated customers pick up the business's calls (call-backs) until shutdown.
        background.spawn(
            stop_background
                .clone()
                .run_until_cancelled_owned(sandbox.clone().answer_call_backs()),
        );
    }
    let floor = Floor::new(roster.queues.clone(), roster.default_queue.clone());
    let queues = crate::routing::Routing::queue_ids(&floor);
    let centre = CentreConfig {
        ring_timeout: config.calls.ring_timeout,
        wrap_up: config.calls.wrap_up,
        grace: config.calls.grace,
        answer_deadline: config.calls.answer_deadline,
        max_calls_per_number: config.limits.max_calls_per_number.get(),
        // Set-up work (answering offers, DTLS handshakes) spreads over the media threads.
        max_setting_up: crate::calls::DEFAULT_MAX_SETTING_UP * config.media.shards.max(1),
        number_queues: roster.numbers.clone(),
        service_level_target: config.calls.service_level_target,
        account_times: roster.times.clone(),
        account_hold: roster.hold_audio.clone(),
        callback_no_answer: config.calls.callback_no_answer,
        callback_queues: roster.callback_queues.clone(),
    };
    // Every business number's client, each with its own account's access token.
    let mut clients = crate::calls::GraphClients::new(
        our_phone_number_id.clone(),
        graph.clone(),
        source.graph_clients(&accounts),
    );
    clients.permission_template = config.whatsapp.permission_template.clone();
    let graph_clients = std::sync::Arc::new(clients);
    if let Some(on) = config.whatsapp.callback_permission_status {
        // Meta's setting, not ours: said once at start, and a failure only logged (the
        // number keeps what it had).
        let graph = graph.clone();
        background.spawn(async move {
            match graph.set_callback_permission(on).await {
                Ok(()) => info!(enabled = on, "callback_permission_status set at Meta"),
                Err(e) => warn!(error = %e, "callback_permission_status could not be set"),
            }
        });
    }
    let (calls, calls_task) = actor::spawn(
        centre,
        floor,
        Deps {
            media: std::sync::Arc::new(media.clone()),
            graph: graph_clients.clone(),
            store: std::sync::Arc::new(store.clone()),
            phone_number_id: our_phone_number_id,
            node: config.store.node_id.clone(),
            link: authority.as_ref().map(|a| {
                std::sync::Arc::new(a.link()) as std::sync::Arc<dyn crate::calls::HandOver>
            }),
            events: Some(emitter.clone()),
        },
        wa_rx,
        media_events,
    );
    // Accounts changed through the admin API (here, or on another node: Redis tells) reach
    // every owner at once; the periodic resync catches what an outage hid.
    let (roster_tx, roster_rx) = tokio::sync::watch::channel(std::sync::Arc::new(roster));
    let changes = std::sync::Arc::new(tokio::sync::Notify::new());
    if let Some(c) = &cluster {
        c.follow_accounts(std::sync::Arc::downgrade(&changes));
    }
    let (applied_tx, applied_rx) = tokio::sync::watch::channel(0);
    let accounts_changed =
        http::admin::AccountsChanged::new(changes.clone(), cluster.clone(), applied_rx);
    background.spawn(
        stop_background
            .clone()
            .run_until_cancelled_owned(accounts::follow(
                accounts::Live {
                    source,
                    auth: auth.clone(),
                    calls: calls.clone(),
                    graph: graph_clients,
                    roster: roster_tx,
                    rule: rule_tx,
                    applied: accounts,
                    changes: accounts_changed.clone(),
                    done: applied_tx,
                    targets: targets_tx,
                },
                changes,
            )),
    );
    // Call events go out from the outbox, off every call's path.
    {
        let writer = store.clone();
        let changed = accounts_changed.clone();
        let disable: crate::events::deliver::Disable =
            std::sync::Arc::new(move |account: String, endpoint: String, reason: String| {
                let (store, changed) = (writer.clone(), changed.clone());
                Box::pin(async move {
                    accounts::disable_endpoint(&store, &account, &endpoint, &reason).await?;
                    changed.announce().await;
                    Ok(())
                })
            });
        let deliverer = crate::events::deliver::Deliverer {
            store: store.clone(),
            transport: std::sync::Arc::new(crate::events::deliver::HttpTransport::new(
                config.events.timeout,
                config.events.private_targets,
            )),
            targets: targets_rx,
            wake: events_wake.clone(),
            policy: config.events.retry,
            timeout: config.events.timeout,
            node: config.store.node_id.clone(),
            disable,
        };
        background.spawn(deliverer.run(stop_background.clone()));
    }
    let draining = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(c) = cluster.clone() {
        background.spawn(stop_background.clone().run_until_cancelled_owned(
            crate::calls::shared::share_floor(
                c,
                calls.floor(),
                draining.clone(),
                config.cluster.lease / 3,
            ),
        ));
    }
    // Waiting calls are served in the order the nodes share, whenever a node's floor changes.
    if let Some(a) = authority.clone() {
        background.spawn(stop_background.clone().run_until_cancelled_owned(
            crate::calls::dispatch::serve_waiting(
                a,
                calls.clone(),
                calls.floor(),
                crate::calls::dispatch::RESYNC,
            ),
        ));
    }
    let ops = crate::ops::Ops {
        media: media.clone(),
        calls: calls.clone(),
        store: store.clone(),
        cap: config.limits.max_calls_per_number.get(),
        draining: draining.clone(),
        busy: Default::default(),
        cluster,
    };
    ops.register(&queues, config.calls.service_level_target);
    let router = http::router(webhook_state.clone(), auth.clone(), sandbox.clone())
        .merge(crate::web::router())
        .merge(http::openapi::router())
        .merge(crate::ops::health_router(ops.clone()))
        .merge(ws::router(WsState {
            auth: auth.clone(),
            calls: calls.clone(),
            roster: roster_rx.clone(),
        }))
        .merge(http::my_calls(store.clone(), auth.clone()))
        .merge(http::admin::router(
            store.clone(),
            config.auth.operator_key.clone(),
            seal_key,
            accounts_changed,
            auth.clone(),
            http::admin::EventsAdmin {
                private_targets: config.events.private_targets,
                wake: events_wake,
            },
            Some(http::admin::CentreAdmin {
                calls: calls.clone(),
                roster: roster_rx.clone(),
            }),
        ))
        .merge(match (authority, node_key, &placement) {
            (Some(a), Some(key), Some((_, handed))) => {
                http::nodes::router(key, calls.clone(), a, handed.clone())
            }
            _ => axum::Router::new(),
        })
        .merge(http::supervisors_only(
            crate::store::http::router(store.clone()),
            auth.clone(),
        ))
        // Pages of other origins: only those an account allows, with its people's sessions.
        .layer(axum::middleware::from_fn_with_state(
            http::cors::Cors {
                auth: auth.clone(),
                roster: roster_rx,
            },
            http::cors::check,
        ));
    // One socket per port, and one more per port for IPv6.
    let media_sockets = media_ports.len() * (1 + usize::from(config.media.public_ip6.is_some()));
    let public_limits = http::serve::ListenerLimits::public(
        &config.http,
        config.auth.trust_forwarded_for,
        media_sockets,
    );
    info!(
        max_connections = public_limits.max_connections,
        max_per_client = config.http.max_connections_per_client.get(),
        header_timeout_secs = public_limits.header_timeout.as_secs_f64(),
        request_timeout_secs = public_limits.request_timeout.as_secs_f64(),
        "HTTP limits"
    );

    let metrics_listener = TcpListener::bind(config.metrics_addr)
        .await
        .map_err(|source| AppError::Http {
            addr: config.metrics_addr,
            source,
        })?;
    let metrics_addr = metrics_listener
        .local_addr()
        .map_err(|source| AppError::Http {
            addr: config.metrics_addr,
            source,
        })?;
    let metrics_limits = http::serve::ListenerLimits::metrics(&config.http);
    let metrics_server = tokio::spawn(http::serve::serve(
        metrics_listener,
        crate::ops::metrics_router(recorder),
        metrics_limits,
        "metrics",
        std::future::pending(),
    ));
    background.spawn(
        stop_background
            .clone()
            .run_until_cancelled_owned(ops.clone().flush_forever()),
    );
    background.close();

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (http_stop_tx, http_stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(http::serve::serve(
        listener,
        router,
        public_limits,
        "public",
        async {
            let _ = http_stop_rx.await;
        },
    ));
    info!(http = %http_addr, metrics = %metrics_addr, media = %media_addr, sandbox = config.is_sandbox(), "switchboard started");
    let calls_for_shutdown = calls.clone();
    let ops_for_shutdown = ops;
    let draining_flag = draining.clone();
    let done = tokio::spawn(async move {
        let _ = stop_rx.await;
        info!("switchboard stopping");
        // Not ready from now on: a load balancer sends new work elsewhere.
        draining.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = http_stop_tx.send(());
        let _ = server.await;
        webhook_processor.shutdown().await;
        // What the edge admitted reaches its node (or this one's call machines) first.
        if let Some((task, handed)) = placement {
            drop(handed);
            let _ = task.await;
        }
        // No call is left dangling at Meta: each is terminated (or rejected) and recorded.
        calls_for_shutdown.shutdown().await;
        drop(calls_for_shutdown);
        let _ = calls_task.await;
        metrics_server.abort();
        stop_background.cancel();
        background.wait().await;
        // Stopped cleanly, with its calls ended: no other node must take them over.
        if let Some(c) = &ops_for_shutdown.cluster {
            if let Err(e) = c.leave(c.node()).await {
                warn!(error = %e, "could not leave the other nodes in Redis");
            }
        }
        drop(ops_for_shutdown);
        if let Err(e) = store_driver.join().await {
            warn!(error = %e, "the call records did not close cleanly");
        }
        if let Some(s) = sandbox_server {
            s.shutdown().await;
        }
        let _ = tokio::task::spawn_blocking(move || media_driver.join()).await;
        info!("switchboard stopped");
    });
    Ok(Running {
        http_addr,
        metrics_addr,
        media_addr,
        media_ports,
        simulator,
        media,
        auth,
        sandbox_sign_ins,
        webhook: webhook_state,
        sandbox,
        calls,
        store,
        draining: draining_flag,
        stop: stop_tx,
        done,
    })
}

/// Renews this node's lease every third of its length and, on each round, ends at Meta the
/// calls of any node whose lease ran out (one node takes each such job: see
/// [`crate::cluster::Cluster::claim_takeover`]). Runs until aborted at shutdown.
async fn keep_lease(
    cluster: crate::cluster::Cluster,
    url: String,
    store: StoreHandle,
    graph: GraphClient,
    lease: std::time::Duration,
    (me, events): (String, crate::events::Emitter),
) {
    let mut tick = tokio::time::interval(lease / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The address too: a Redis that restarted empty learns it again.
        if let Err(e) = async {
            // A ping first: it replaces a connection that stopped reconnecting by itself.
            cluster.ping().await?;
            cluster.renew_lease(lease).await?;
            cluster.publish_url(&url).await
        }
        .await
        {
            warn!(error = %e, "could not renew this node's lease");
            continue;
        }
        let dead = match cluster.dead_nodes().await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "could not read the other nodes' leases");
                continue;
            }
        };
        for node in dead {
            if !matches!(cluster.claim_takeover(&node, lease * 3).await, Ok(true)) {
                continue;
            }
            warn!(node = %node, "a node stopped renewing its lease: ending its calls at Meta");
            let Some(n) = actor::take_over(&store, &graph, &node, Some(&events)).await else {
                continue; // tried again once the claim runs out
            };
            // Its events not yet delivered are this node's to deliver now.
            match store.adopt_events(node.clone(), me.clone()).await {
                Ok(0) => {}
                Ok(rows) => {
                    info!(node = %node, events = rows, "took over a lost node's undelivered events");
                    events.written();
                }
                Err(e) => {
                    warn!(node = %node, error = %e, "could not take over a lost node's events")
                }
            }
            info!(node = %node, calls = n, "took over a lost node's calls");
            if let Err(e) = cluster.leave(&node).await {
                warn!(node = %node, error = %e, "could not remove a lost node");
            }
        }
    }
}

/// Runs until Ctrl-C or SIGTERM, then drains: new calls are declined, calls in progress finish
/// (up to `SWITCHBOARD_DRAIN_SECS`), the rest are ended at Meta. A second signal ends them at
/// once (still at Meta).
pub async fn run(config: Config) -> Result<(), AppError> {
    let drain_for = config.drain_deadline;
    // Listening before start-up says it has started: a SIGTERM right after that line drains
    // rather than kills.
    let mut stop = StopSignals::install();
    let running = start(config).await?;
    stop.recv().await;
    // Unready before the line that says so: whoever reads the log may probe at once.
    running
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    info!(deadline_secs = drain_for.as_secs(), "draining");
    tokio::select! {
        done = running.drain(drain_for) => {
            if !done {
                warn!("drain deadline reached; ending the calls left at Meta");
            }
        }
        _ = stop.recv() => warn!("second signal: ending every call now"),
    }
    running.shutdown().await;
    Ok(())
}

/// Ctrl-C and SIGTERM, listened for from [`StopSignals::install`] on.
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn install() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// The next Ctrl-C or SIGTERM.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            tokio::select! { _ = next(&mut self.term) => {}, _ = next(&mut self.int) => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn media_bind(c: &crate::config::MediaConfig) -> Bind {
    Bind {
        ip: c.bind_ip,
        // IPv6 is bound on every interface unless the advertised address is loopback (tests).
        ip6: c.public_ip6.map(|ip| {
            if ip.is_loopback() {
                ip
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            }
        }),
        ports: c.ports,
    }
}

fn engine_config(
    c: &crate::config::MediaConfig,
    hold_audio: std::sync::Arc<[std::sync::Arc<[u8]>]>,
) -> EngineConfig {
    EngineConfig {
        public_ip: c.public_ip,
        public_ip6: c.public_ip6,
        // Filled by the driver with the ports it bound.
        ports: Vec::new(),
        shards: c.shards,
        limits: c.limits.clone(),
        hold_audio,
        connect_timeout: c.connect_timeout,
        idle_timeout: c.idle_timeout,
        stats_interval: c.stats_interval,
    }
}

/// The built-in hold audio: the melody shipped in the binary, read once into packets.
fn hold_audio() -> std::sync::Arc<[std::sync::Arc<[u8]>]> {
    match crate::media::ogg::read(crate::media::ogg::MELODY) {
        Ok(f) => f.packets.into_iter().map(std::sync::Arc::from).collect(),
        Err(e) => {
            // A bug in what we ship, not an operator's mistake: silence stands in.
            warn!(error = %e, "the built-in hold audio is unreadable; holding with silence");
            std::sync::Arc::from(Vec::new())
        }
    }
}

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// The address to reach a listener from this machine (0.0.0.0 → 127.0.0.1).
pub fn loopback_of(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}
