//! [`SessionManager`] and its builder: the entry point. The builder takes every dependency
//! (limits, event bus, port pool, handler, identity, timers) so that tests and applications
//! inject their own; `start` binds the SIP transport and spawns the manager's task.

use crate::call::CallSession;
use crate::config::{
    DscpPolicy, Identity, ManagerConfig, MediaMode, SessionTimerConfig, StuckLimits,
};
use crate::core::{Command, CommandSender, Core, CoreParts, Gauges, OutgoingCall};
use crate::dependencies::Cascade;
use crate::error::{Result, SessionError};
use crate::handler::{AcceptAll, CallHandler};
use bytes::Bytes;
use session_bridge::{BridgeId, BridgeStats, Gain, MemberStats, TechnologyChoice};
use session_dialog::driver::{DriverConfig, SipDriver, SipHandle};
use session_dialog::endpoint::{EndpointConfig, Protocol};
use session_dialog::tls::TlsConfig;
use session_dialog::transaction::TimerConfig;
use session_events::{EventBus, Filter, Subscription};
use session_media::sdp::negotiate::MediaConfig;
use session_resources::{AdmissionController, Limits, Metrics, MetricsSnapshot, PortPool};
use session_sip::resource_priority::PriorityNamespace;
use session_sip::{Header, HeaderName, Uri};
use session_tracer::SessionTracer;
use session_types::{GroupId, Priority, SessionId};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::oneshot;

/// Builds a [`SessionManager`]. Every setting has a default suitable for loopback.
///
/// Its `Debug` shows the settings (credentials and keys redacted), e.g. to log them at start:
///
/// ```
/// use session_core::SessionManager;
///
/// let builder = SessionManager::builder().bind(([127, 0, 0, 1], 5070).into());
/// assert!(format!("{builder:?}").contains("127.0.0.1:5070"));
/// ```
pub struct SessionManagerBuilder {
    config: ManagerConfig,
    handler: Arc<dyn CallHandler>,
    bus: Option<EventBus>,
    admission: Option<AdmissionController>,
    ports: Option<PortPool>,
    tracer: Option<SessionTracer>,
    metrics: Option<Metrics>,
    metrics_address: Option<SocketAddr>,
    /// Server-side digest and the registrar (`registrar.rs`, `server_auth.rs`).
    server_auth: Option<crate::ServerAuth>,
    registrar: Option<crate::RegistrarConfig>,
}

/// The settings, and which parts were given rather than made by `start` (the handler, a bus,
/// limits …); credentials and keys show redacted.
impl std::fmt::Debug for SessionManagerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManagerBuilder")
            .field("config", &self.config)
            .field("bus_given", &self.bus.is_some())
            .field("admission_given", &self.admission.is_some())
            .field("ports_given", &self.ports.is_some())
            .field("tracer", &self.tracer.is_some())
            .field("metrics_given", &self.metrics.is_some())
            .field("metrics_address", &self.metrics_address)
            .field("server_auth", &self.server_auth.is_some())
            .field("registrar", &self.registrar.is_some())
            .finish_non_exhaustive()
    }
}

impl SessionManagerBuilder {
    fn new() -> Self {
        Self {
            config: ManagerConfig::default(),
            handler: Arc::new(AcceptAll),
            bus: None,
            admission: None,
            ports: None,
            tracer: None,
            metrics: None,
            metrics_address: None,
            server_auth: None,
            registrar: None,
        }
    }

    /// Records every session's timeline (SIP in and out, states, media, DTMF) in `tracer`.
    pub fn tracer(mut self, tracer: SessionTracer) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// The registry the manager records its metrics into (a new one by default; see
    /// [`SessionManager::metrics`] for the names). Share one with the application to export its
    /// own metrics next to the manager's.
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Serves the metrics at `GET /metrics` on `address` (plain HTTP/1.1, the Prometheus text
    /// format 0.0.4; port 0 picks one, see [`SessionManager::metrics_addr`]). Off by default.
    /// One connection is answered at a time and then closed; a request may be 8 KiB at most
    /// and a connection lasts 5 s at most. Expose it to the monitoring network only: there is
    /// no authentication.
    pub fn metrics_address(mut self, address: SocketAddr) -> Self {
        self.metrics_address = Some(address);
        self
    }

    /// Where SIP listens (UDP and TCP on the same port; port 0 picks one).
    pub fn bind(mut self, address: SocketAddr) -> Self {
        self.config.bind = address;
        self
    }

    /// Which transports to listen on (UDP and TCP by default).
    pub fn transports(mut self, transports: crate::config::Transports) -> Self {
        use crate::config::Transports;
        self.config.udp = matches!(transports, Transports::Udp | Transports::UdpAndTcp);
        self.config.tcp = matches!(transports, Transports::Tcp | Transports::UdpAndTcp);
        self
    }

    /// UDP socket buffer sizes (for load).
    pub fn socket_buffer(mut self, bytes: usize) -> Self {
        self.config.socket_buffer = Some(bytes);
        self
    }

    /// Who we are: user, display name, domain.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.config.identity = identity;
        self
    }

    /// The call engine's hook.
    pub fn handler(mut self, handler: impl CallHandler) -> Self {
        self.handler = Arc::new(handler);
        self
    }

    /// The call engine's hook, shared.
    pub fn shared_handler(mut self, handler: Arc<dyn CallHandler>) -> Self {
        self.handler = handler;
        self
    }

    /// The bus session events are published on (a new one by default).
    pub fn event_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Admission limits; an INVITE beyond them gets 503 with Retry-After.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.admission = Some(AdmissionController::new(limits));
        self
    }

    /// A shared admission controller (e.g. one for several managers).
    pub fn admission(mut self, admission: AdmissionController) -> Self {
        self.admission = Some(admission);
        self
    }

    /// The RTP port range (even RTP ports, RTCP on the next).
    pub fn media_ports(mut self, range: RangeInclusive<u16>) -> Self {
        self.config.media_ports = range;
        self
    }

    /// A shared RTP port pool.
    pub fn port_pool(mut self, pool: PortPool) -> Self {
        self.ports = Some(pool);
        self
    }

    /// The address written in SDP and bound for RTP (the SIP bind address by default).
    pub fn media_ip(mut self, ip: IpAddr) -> Self {
        self.config.media_ip = Some(ip);
        self
    }

    /// RTP media per call (default), or signaling only.
    pub fn media_mode(mut self, mode: MediaMode) -> Self {
        self.config.media_mode = mode;
        self
    }

    /// Ends an active call (BYE, `FailureReason::MediaTimeout`) when no RTP has come from the
    /// peer for `timeout`: a peer that vanished (crashed, lost its network) does not hold the
    /// call and its resources for ever. Calls on hold and bridged calls are exempt. Off by
    /// default; 30–60 s is usual (it must exceed any silence the peer sends nothing for).
    pub fn media_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.media_timeout = Some(timeout);
        self
    }

    /// What a call sends while no source plays: silence (default) or nothing.
    pub fn idle_audio(mut self, idle: crate::config::IdleAudio) -> Self {
        self.config.idle_audio = idle;
        self
    }

    /// Codecs, telephone-event, ptime.
    pub fn media(mut self, media: MediaConfig) -> Self {
        self.config.media = media;
        self
    }

    /// SIP transaction timers (T1, T2, T4).
    pub fn timers(mut self, timers: TimerConfig) -> Self {
        self.config.timers = timers;
        self
    }

    /// RFC 4028 session timers for every call.
    pub fn session_timer(mut self, timer: SessionTimerConfig) -> Self {
        self.config.session_timer = Some(timer);
        self
    }

    /// How long `shutdown` waits for BYE/CANCEL transactions (2 s by default).
    pub fn shutdown_grace(mut self, grace: std::time::Duration) -> Self {
        self.config.shutdown_grace = grace;
        self
    }

    /// Sizes the manager's and the SIP layer's maps for `calls` concurrent calls up front, so
    /// that a busy server never pauses to grow them (a pause long enough to overflow the UDP
    /// socket queue under load).
    pub fn reserve_calls(mut self, calls: usize) -> Self {
        self.config.reserve_calls = calls;
        self
    }

    /// Sends every outbound call (transfers included) through the proxy at `proxy` — a
    /// loose router (RFC 3261 §16.12), as outbound proxies are: the INVITE goes to its address
    /// with `Route: <proxy;lr>` pre-loaded (§8.1.2), and the dialog then follows whatever route
    /// set the answer records (§12.1.2). [`CallOptions::proxy`] overrides it per call.
    pub fn outbound_proxy(mut self, proxy: Uri) -> Self {
        self.config.outbound_proxy = Some(proxy);
        self
    }

    /// Answers 401/407 challenges to every request our sessions send (INVITE, re-INVITE,
    /// UPDATE, BYE, REFER, INFO, MESSAGE, NOTIFY — never ACK or CANCEL, RFC 3261 §22.2) with
    /// credentials from `provider`, asked per realm: the request is re-sent with the same
    /// Call-ID and From tag and the next CSeq, and the ACK of a 2xx carries the INVITE's
    /// credentials. Wrong credentials end the request with the 401/407 as its final status
    /// (a call fails with `FailureReason::Rejected`, an operation with
    /// [`SessionError::Rejected`]) after one retry — never a loop. One account (one digest
    /// state) serves every call; [`CallOptions::credentials`] gives a call its own, and
    /// registrations ([`SessionManager::register`]) default to a fresh account over this
    /// provider. The provider runs on the manager's task (the SIP driver runs in it): it must
    /// answer at once.
    pub fn credentials(
        self,
        provider: impl crate::CredentialProvider + Send + Sync + 'static,
    ) -> Self {
        self.account(crate::Account::new(provider))
    }

    /// Like [`SessionManagerBuilder::credentials`], with an account made (and perhaps shared)
    /// by the caller.
    pub fn account(mut self, account: crate::Account) -> Self {
        self.config.account = Some(account);
        self
    }

    /// Seeds every random draw that reaches the wire — tags, branches, Call-IDs, glare delays
    /// and Retry-After values — so that a run can be replayed byte for byte (tests, a bug
    /// report). Leave it unset in production: Call-IDs and tags must be unique across runs
    /// (RFC 3261 §8.1.1.4, §19.3), and by default the seed comes from entropy.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.config.rng_seed = Some(seed);
        self
    }

    /// SIP over TLS: calls to `sips:` and `;transport=tls` URIs go over TLS with `tls`'s
    /// trusted roots, and with an identity in it we also listen for TLS (on `tls_bind`, by
    /// default port 5061 when SIP is on 5060, else a port the system picks; see
    /// [`SessionManager::tls_addr`]).
    pub fn tls(mut self, tls: TlsConfig, tls_bind: Option<SocketAddr>) -> Self {
        self.config.tls = Some(tls);
        self.config.tls_bind = tls_bind;
        self
    }

    /// How every session's packets are marked for DiffServ ([`DscpPolicy`]; by default RTP
    /// EF, SIP CS3).
    pub fn dscp(mut self, policy: DscpPolicy) -> Self {
        self.config.dscp = policy;
        self
    }

    /// The `Resource-Priority` namespace our calls' priorities are written in (`esnet` by
    /// default; both `esnet` and `wps` are read).
    pub fn priority_namespace(mut self, namespace: PriorityNamespace) -> Self {
        self.config.priority_namespace = namespace;
        self
    }

    /// Ends sessions stuck waiting past `limits` ([`StuckLimits`]; off by default).
    pub fn stuck_limits(mut self, limits: StuckLimits) -> Self {
        self.config.stuck = limits;
        self
    }

    /// How long a transfer waits for the peer's final NOTIFY (32 s by default).
    pub fn transfer_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.transfer_timeout = timeout;
        self
    }

    /// Challenges requests with digest authentication as a UAS (or, with
    /// [`crate::ServerAuth::proxy`], as a proxy): INVITEs by default, every request outside a
    /// call with [`crate::AuthScope::OutOfDialog`], REGISTERs when the registrar authenticates.
    /// Requests without valid credentials are answered 401/407 (400 when malformed) before
    /// any admission or per-call state; authorized INVITEs reach the handler with
    /// [`crate::IncomingCall::authenticated_user`]. Off by default.
    pub fn authenticate(mut self, auth: crate::ServerAuth) -> Self {
        self.server_auth = Some(auth);
        self
    }

    /// Serves REGISTER as an embedded registrar and location service (RFC 3261 §10.3; see
    /// [`crate::RegistrarConfig`]): bindings are looked up with [`SessionManager::lookup`] and
    /// each change is published as [`crate::SessionEvent::Registrar`]. With
    /// [`crate::RegistrarConfig::authenticate`] (the default) it needs
    /// [`SessionManagerBuilder::authenticate`], or `start` fails. Off by default (REGISTER
    /// then gets 405).
    pub fn registrar(mut self, config: crate::RegistrarConfig) -> Self {
        self.registrar = Some(config);
        self
    }

    /// Binds the transport and starts the manager. Must run inside a tokio runtime.
    pub async fn start(self) -> Result<SessionManager> {
        let Self {
            mut config,
            handler,
            bus,
            admission,
            ports,
            tracer,
            metrics,
            metrics_address,
            server_auth,
            registrar,
        } = self;
        // Bound first: a taken port fails the start before anything else is made.
        let metrics_listener = match metrics_address {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(SessionError::MetricsListener)?,
            ),
            None => None,
        };
        let metrics = metrics.unwrap_or_default();
        let ports = match ports {
            Some(ports) => ports,
            None => PortPool::new(config.media_ports.clone())?,
        };
        let mut endpoint = EndpointConfig {
            timers: config.timers,
            ..EndpointConfig::default()
        };
        // The SIP layer advertises what it implements; session-core turns on the user agent's
        // RFC 3262 reliable provisional responses and adds RFC 4028 timers, RFC 3891 Replaces
        // and RFC 4412 Resource-Priority.
        endpoint.policy.supported = crate::core::SUPPORTED_TAGS
            .iter()
            .map(|tag| (*tag).to_owned())
            .collect();
        if registrar.is_some() {
            endpoint
                .policy
                .allowed_methods
                .push(session_sip::Method::Register);
        }
        // The driver runs inside the manager's task (`core/mod.rs`): no task of its own, and
        // no hand-off between the user agent and the calls' state.
        let (inputs, mut driver, sip) = SipDriver::embed(DriverConfig {
            bind: config.bind,
            udp: config.udp,
            tcp: config.tcp,
            contact_user: config.identity.user.clone(),
            endpoint,
            socket_buffer: config.socket_buffer,
            dscp: config.dscp.sip_dscp(),
            tls: config.tls.clone(),
            tls_bind: config.tls_bind,
            rng_seed: config.rng_seed,
            ..DriverConfig::default()
        })
        .await?;
        // The manager's own draws (Call-IDs of its calls) follow the SIP layer's seed, the one
        // chosen from entropy included: one logged seed replays the whole manager.
        let seed = driver.user_agent().rng_seed();
        config.rng_seed = Some(seed);
        // Its own sequence from the same seed (the nonce secret, when not given, and salts).
        let server_side =
            crate::registrar::ServerSide::new(server_auth, registrar, seed.wrapping_add(2))?;
        let registrar = server_side.registrar.clone();
        let reserve = config.reserve_calls;
        if reserve > 0 {
            driver.user_agent().reserve(reserve);
        }
        let local_addr = sip.local_addr();
        let local_ip = match (config.media_ip, local_addr.ip()) {
            (Some(ip), _) => ip,
            (None, ip) if ip.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
            (None, ip) => ip,
        };
        config.media_ip = Some(local_ip);
        let domain = config
            .identity
            .domain
            .clone()
            .unwrap_or_else(|| match local_ip {
                IpAddr::V4(ip) => format!("{ip}:{}", local_addr.port()),
                IpAddr::V6(ip) => format!("[{ip}]:{}", local_addr.port()),
            });
        let our_uri =
            Uri::parse(&format!("sip:{}@{domain}", config.identity.user)).map_err(|_| {
                SessionError::InvalidInput {
                    what: "identity",
                    value: format!("{}@{domain}", config.identity.user),
                }
            })?;
        let bus = bus.unwrap_or_default();
        let admission = admission.unwrap_or_else(|| AdmissionController::new(Limits::default()));
        let (commands, inbox) = tokio::sync::mpsc::channel(crate::core::COMMAND_QUEUE);
        let stop = tokio_util::sync::CancellationToken::new();
        let groups = Arc::new(crate::groups::Groups::default());
        // The bus asks this manager's groups for a session's groups when it routes an event to
        // group subscriptions (nothing is mirrored into the bus). A bus shared by several
        // managers asks each of them (the union; a manager's sessions are its own), and forgets
        // a manager's groups once the manager is gone (it holds them weakly).
        bus.add_group_membership(&groups);
        let dependencies = Arc::new(crate::dependencies::Dependencies::default());
        // The bridges of this manager: one engine, its driver's tasks on this runtime.
        let (bridges, bridge_events) =
            session_bridge::BridgeDriver::start(session_bridge::DriverConfig::new());
        let gauges = Arc::new(Gauges::default());
        let parts = CoreParts {
            config: config.clone(),
            sip: sip.clone(),
            inputs,
            driver,
            handler,
            bus: bus.clone(),
            admission: admission.clone(),
            ports: ports.clone(),
            commands: commands.clone(),
            inbox,
            gauges: gauges.clone(),
            metrics: crate::metrics::CallMetrics::new(&metrics),
            local_ip,
            our_uri: our_uri.clone(),
            tracer: tracer.clone(),
            bridges: bridges.clone(),
            bridge_events,
            groups: groups.clone(),
            dependencies: dependencies.clone(),
            stop: stop.clone(),
            server_side,
        };
        // Probes get the load from the start, before the task first runs.
        crate::core::report_health(&sip, &admission);
        let task = tokio::spawn(Core::run(parts));
        let exporter = Arc::new(crate::metrics::Exporter::new(
            metrics,
            gauges.clone(),
            admission.clone(),
            ports.clone(),
            sip.clone(),
            bus.clone(),
            tracer,
        ));
        // Stopped by `shutdown`, or with the manager task when the last handle goes.
        let metrics_stop = stop.child_token();
        let (metrics_addr, metrics_task) = match metrics_listener {
            Some(listener) => {
                let address = listener
                    .local_addr()
                    .map_err(SessionError::MetricsListener)?;
                let server = tokio::spawn(crate::metrics::serve(
                    listener,
                    exporter.clone(),
                    metrics_stop.clone(),
                ));
                (Some(address), Some(server))
            }
            None => (None, None),
        };
        Ok(SessionManager {
            inner: Arc::new(Inner {
                commands,
                local_addr,
                our_uri,
                display_name: config.identity.display_name.clone(),
                outbound_proxy: config.outbound_proxy.clone(),
                bridges,
                bus,
                admission,
                ports,
                gauges,
                sip,
                groups,
                dependencies,
                b2bua_pairs: Arc::default(),
                registrar,
                priority_namespace: config.priority_namespace,
                exporter,
                metrics_addr,
                metrics_stop,
                metrics_task: parking_lot::Mutex::new(metrics_task),
                stop,
                task: parking_lot::Mutex::new(Some(task)),
            }),
        })
    }
}

struct Inner {
    commands: CommandSender,
    local_addr: SocketAddr,
    our_uri: Uri,
    display_name: Option<String>,
    outbound_proxy: Option<Uri>,
    bridges: session_bridge::BridgeDriver,
    bus: EventBus,
    admission: AdmissionController,
    ports: PortPool,
    gauges: Arc<Gauges>,
    /// The SIP layer (for its counters).
    sip: SipHandle,
    /// The session groups.
    groups: Arc<crate::groups::Groups>,
    /// Which session depends on which.
    dependencies: Arc<crate::dependencies::Dependencies>,
    /// The connected B2BUA calls, by leg (for local transfers).
    b2bua_pairs: Arc<crate::b2bua::Pairs>,
    /// The registrar's bindings, when it serves REGISTER.
    registrar: Option<Arc<parking_lot::Mutex<crate::registrar::Registrar>>>,
    /// The namespace our `Resource-Priority` values are written in.
    priority_namespace: PriorityNamespace,
    /// The metrics registry and what it reads at scrape time.
    exporter: Arc<crate::metrics::Exporter>,
    /// Where `GET /metrics` is served, if it is.
    metrics_addr: Option<SocketAddr>,
    /// Stops the metrics server (a child of `stop`).
    metrics_stop: tokio_util::sync::CancellationToken,
    metrics_task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Stops the task when the last handle goes without `shutdown`.
    stop: tokio_util::sync::CancellationToken,
    task: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone without `shutdown`: stop the task (calls end as Shutdown).
        // Not through the command queue, which may be full (and a drop cannot wait).
        self.stop.cancel();
    }
}

/// Options of an outbound call beyond its target.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CallOptions {
    /// Our address of record for this call (the manager's identity by default).
    pub from: Option<String>,
    /// Extra headers, as (name, value).
    pub headers: Vec<(String, String)>,
    /// Offer this SDP instead of negotiating media ourselves.
    pub sdp: Option<Bytes>,
    /// UDP (default) or TCP; a `;transport=tcp` URI parameter also selects TCP.
    pub tcp: bool,
    /// The proxy this call goes through (`sip:host:port`), instead of the manager's
    /// [`SessionManagerBuilder::outbound_proxy`].
    pub proxy: Option<String>,
    /// The group the call is placed into: admitted under that group's limit
    /// (`Limits::max_for_group`; beyond it the call fails at once with
    /// [`SessionError::Resources`]) and a member from its creation.
    pub group: Option<GroupId>,
    /// How urgent the call is: admitted at this priority (`Limits::reserve_for`), its RTP
    /// marked by it ([`DscpPolicy`]), and above routine sent with `Resource-Priority`
    /// (RFC 4412) in the manager's namespace.
    pub priority: Priority,
    /// Whose credentials answer challenges to this call's requests, instead of the manager's
    /// ([`SessionManagerBuilder::credentials`]).
    pub account: Option<crate::Account>,
}

impl CallOptions {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Uses TCP.
    pub fn tcp(mut self) -> Self {
        self.tcp = true;
        self
    }

    /// Goes through the proxy at `uri` (see [`SessionManagerBuilder::outbound_proxy`]).
    pub fn proxy(mut self, uri: &str) -> Self {
        self.proxy = Some(uri.to_owned());
        self
    }

    /// Places the call into `group`: admitted under the group's limit, a member from its
    /// creation.
    pub fn group(mut self, group: GroupId) -> Self {
        self.group = Some(group);
        self
    }

    /// Places the call at `priority` (see [`CallOptions::priority`]).
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// Answers challenges to this call's requests with credentials from `provider` (an
    /// account of the call's own; see [`SessionManagerBuilder::credentials`]).
    pub fn credentials(
        self,
        provider: impl crate::CredentialProvider + Send + Sync + 'static,
    ) -> Self {
        self.account(crate::Account::new(provider))
    }

    /// Answers challenges to this call's requests with `account` (which may serve other
    /// calls too).
    pub fn account(mut self, account: crate::Account) -> Self {
        self.account = Some(account);
        self
    }
}

/// The session manager: makes calls, receives them (through the [`CallHandler`]), and owns
/// every session's resources. Cloning shares it.
#[derive(Clone)]
pub struct SessionManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("local_addr", &self.inner.local_addr)
            .field("calls", &self.active_calls())
            .finish()
    }
}

impl SessionManager {
    /// A builder with defaults.
    pub fn builder() -> SessionManagerBuilder {
        SessionManagerBuilder::new()
    }

    /// The SIP address we listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// Our address of record (`sip:user@host:port`).
    pub fn uri(&self) -> &Uri {
        &self.inner.our_uri
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The admission controller (live counts).
    pub fn admission(&self) -> &AdmissionController {
        &self.inner.admission
    }

    /// The RTP port pool (ports in use).
    pub fn ports(&self) -> &PortPool {
        &self.inner.ports
    }

    /// Sessions alive now.
    pub fn active_calls(&self) -> usize {
        self.inner.gauges.calls.load(Ordering::Relaxed)
    }

    /// The registry the manager records into: `calls_inbound_total`, `calls_outbound_total`,
    /// `calls_active`, `calls_ended_{local_hangup,remote_hangup,cancelled,failed,shutdown}_total`
    /// (each call counted once, when it ends), the histograms `setup_time_ms` and
    /// `talk_time_ms` (answered calls) and `rtp_lost_packets`, `rtp_jitter_us`, `mos_x100`
    /// (answered calls with our media; `mos_x100` once something was received), all recorded
    /// as calls end; and, brought up to date by
    /// [`SessionManager::metrics_snapshot`] and each scrape, `admission_active`, `ports_in_use`,
    /// `calls_shed_total`, `admission_refused_total` and `event_bus_dropped_total`.
    pub fn metrics(&self) -> &Metrics {
        self.inner.exporter.registry()
    }

    /// Every metric, with the figures read from the resources brought up to date first.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.inner.exporter.refresh();
        self.inner.exporter.registry().snapshot()
    }

    /// Where `GET /metrics` is served ([`SessionManagerBuilder::metrics_address`]), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.inner.metrics_addr
    }

    /// New calls refused at the door so far: INVITEs answered 503 with Retry-After by the SIP
    /// layer before any session, transaction or handler call was made for them — while the
    /// manager was at its admission limit or its input queue ran short of room. They are not
    /// in [`SessionManager::admission`]'s refusal counts (which count what reached it).
    pub fn shed_calls(&self) -> u64 {
        self.inner.sip.shed_invites()
    }

    /// Creates an empty bridge: calls joined to it hear each other — relayed packet by packet
    /// when there are two (transcoding PCMU ↔ PCMA when they differ), mixed (each member hears
    /// everyone but itself) when there are more or when a mute, deaf or gain setting asks for
    /// it. `TechnologyChoice::Auto` picks that; the other choices force one.
    pub fn create_bridge(&self, technology: TechnologyChoice) -> Result<BridgeId> {
        Ok(self.inner.bridges.create_bridge(technology)?)
    }

    /// Creates a bridge and joins `a` and `b` to it: the two calls hear each other through us.
    pub async fn bridge_calls(&self, a: &CallSession, b: &CallSession) -> Result<BridgeId> {
        let bridge = self.create_bridge(TechnologyChoice::Auto)?;
        if let Err(error) = a.join_bridge(bridge).await {
            let _ = self.destroy_bridge(bridge).await;
            return Err(error);
        }
        if let Err(error) = b.join_bridge(bridge).await {
            let _ = self.destroy_bridge(bridge).await;
            return Err(error);
        }
        Ok(bridge)
    }

    /// Destroys `bridge`: its members get their own media back (their streams go on).
    pub async fn destroy_bridge(&self, bridge: BridgeId) -> Result<()> {
        let (reply, done) = oneshot::channel();
        self.inner
            .commands
            .send(Command::DestroyBridge { bridge, reply })
            .await
            .map_err(|_| SessionError::Shutdown)?;
        done.await.map_err(|_| SessionError::Shutdown)?
    }

    /// The bridge `call` is in, if any.
    pub fn bridge_of(&self, call: &CallSession) -> Option<BridgeId> {
        self.inner.bridges.bridge_of(call.id())
    }

    /// The calls in `bridge`.
    pub fn bridge_members(&self, bridge: BridgeId) -> Option<Vec<SessionId>> {
        self.inner.bridges.members(bridge)
    }

    /// Moves every member of `from` into `into` (no gap for anyone) and destroys `from`.
    pub fn merge_bridges(&self, from: BridgeId, into: BridgeId) -> Result<()> {
        Ok(self.inner.bridges.merge(from, into)?)
    }

    /// Whether the others in its bridge hear `call` (mute) — it still hears them.
    pub fn set_muted(&self, call: &CallSession, muted: bool) -> Result<()> {
        Ok(self.inner.bridges.set_muted(call.id(), muted)?)
    }

    /// Whether `call` hears the others in its bridge (deaf) — they still hear it.
    pub fn set_deaf(&self, call: &CallSession, deaf: bool) -> Result<()> {
        Ok(self.inner.bridges.set_deaf(call.id(), deaf)?)
    }

    /// How loud `listener` hears `talker` in their bridge: `Gain::ZERO` for not at all (a
    /// supervisor who listens in unheard, or whispers to one member only), `Gain::UNITY` by
    /// default.
    pub fn set_gain(&self, listener: &CallSession, talker: &CallSession, gain: Gain) -> Result<()> {
        Ok(self
            .inner
            .bridges
            .set_gain(listener.id(), talker.id(), gain)?)
    }

    /// A bridge's figures (members, technology, packets relayed and mixed …).
    pub fn bridge_stats(&self, bridge: BridgeId) -> Option<BridgeStats> {
        self.inner.bridges.stats(bridge)
    }

    // ---- groups ----

    /// A new, empty session group.
    pub fn create_group(&self) -> GroupId {
        self.inner.groups.create()
    }

    /// Adds `call` to `group` (one of [`SessionManager::create_group`], or any `GroupId` the
    /// application chooses); [`SessionEvent::GroupMemberJoined`] is published. A session may be
    /// in several groups and leaves them all when it ends. Adding a member applies no
    /// admission limit (those apply to calls placed with [`CallOptions::group`]). `Ok(false)`
    /// when it was a member already; [`SessionError::Ended`] for a call that has ended.
    ///
    /// [`SessionEvent::GroupMemberJoined`]: crate::SessionEvent::GroupMemberJoined
    pub fn add_to_group(&self, call: &CallSession, group: GroupId) -> Result<bool> {
        let mut ended = None;
        let added = self
            .inner
            .groups
            .add(&self.inner.bus, call.id(), group, || {
                // `ending` is set before the state turns final (`Core::end_call`, every ending
                // path), so the state's `watch` is read only for the error.
                if call.shared.ending.load(Ordering::Relaxed) {
                    ended = Some(call.state());
                }
                ended.is_none()
            });
        match ended {
            Some(state) => Err(SessionError::Ended(state)),
            None => Ok(added),
        }
    }

    /// Takes `call` out of `group`; `false` when it was not in it.
    pub fn remove_from_group(&self, call: &CallSession, group: GroupId) -> bool {
        self.inner.groups.remove(&self.inner.bus, call.id(), group)
    }

    /// The members of `group`, in joining order; `None` for a group that does not exist.
    pub fn group_members(&self, group: GroupId) -> Option<Vec<SessionId>> {
        self.inner.groups.members(group)
    }

    /// The groups `call` is in.
    pub fn groups_of(&self, call: &CallSession) -> Vec<GroupId> {
        self.inner.groups.of(call.id())
    }

    /// A subscription to the events of every current member of `group` (the bus follows the
    /// membership as it changes), their joining and leaving included.
    pub fn subscribe_group(&self, group: GroupId) -> Subscription {
        self.inner.bus.subscribe(Filter::group(group))
    }

    /// Ends every member's call ([`CallSession::hangup`]: BYE, CANCEL, or 480) and returns how many it asked to end;
    /// the calls leave the group as they end.
    pub async fn hangup_group(&self, group: GroupId) -> usize {
        let mut ended = 0;
        for session in self.group_members(group).unwrap_or_default() {
            if let Some(call) = self.session(session).await
                && call.hangup().await.is_ok()
            {
                ended += 1;
            }
        }
        ended
    }

    /// Dissolves `group`: its members leave it (their calls go on); returns them.
    pub fn dissolve_group(&self, group: GroupId) -> Vec<SessionId> {
        self.inner.groups.dissolve(&self.inner.bus, group)
    }

    // ---- dependencies ----

    /// Makes `dependent` depend on `on` (a consultation call on the call it consults for, a
    /// B leg on its A leg): when `on` ends, [`SessionEvent::DependencyEnded`] is published for
    /// `dependent`, and with [`Cascade::EndDependent`] `dependent` is ended too. A link that
    /// would close a cycle is refused ([`SessionError::DependencyCycle`]); linking an ending
    /// call is refused with [`SessionError::Ended`]. `Ok(false)` when the link existed (its
    /// cascade is updated).
    ///
    /// [`SessionEvent::DependencyEnded`]: crate::SessionEvent::DependencyEnded
    pub fn add_dependency(
        &self,
        dependent: &CallSession,
        on: &CallSession,
        cascade: Cascade,
    ) -> Result<bool> {
        let mut ended = None;
        let linked = self
            .inner
            .dependencies
            .link(dependent.id(), on.id(), cascade, || {
                // As in `add_to_group`: `ending` comes before a final state.
                for call in [dependent, on] {
                    if call.shared.ending.load(Ordering::Relaxed) {
                        ended = Some(call.state());
                    }
                }
                ended.is_none()
            })?;
        match ended {
            Some(state) => Err(SessionError::Ended(state)),
            None => Ok(linked),
        }
    }

    /// Removes the link from `dependent` to `on`; `false` if there was none.
    pub fn remove_dependency(&self, dependent: &CallSession, on: &CallSession) -> bool {
        self.inner.dependencies.unlink(dependent.id(), on.id())
    }

    /// The sessions that depend on `call`.
    pub fn dependents_of(&self, call: &CallSession) -> Vec<SessionId> {
        self.inner.dependencies.dependents_of(call.id())
    }

    /// The sessions `call` depends on.
    pub fn depends_on(&self, call: &CallSession) -> Vec<SessionId> {
        self.inner.dependencies.depends_on(call.id())
    }

    /// A bridged call's own figures in its bridge: mute/deaf/sending, packets in and out,
    /// relayed and mixed, dropped, digits, its jitter buffer and RTCP figures; `None` when the
    /// call is in no bridge.
    pub fn member_stats(&self, call: &CallSession) -> Option<MemberStats> {
        self.inner.bridges.member_stats(call.id())
    }

    /// A handle on the session `id` — one seen on the bus, or a transfer's
    /// [`CallSession::transferred_to`] — while it is alive; `None` once it has ended (or for an
    /// id this manager never had).
    pub async fn session(&self, id: SessionId) -> Option<CallSession> {
        let (reply, handle) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Session { session: id, reply })
            .await
            .ok()?;
        handle.await.ok().flatten()
    }

    /// Whether the manager holds nothing: no call, no admission slot, no RTP port.
    pub fn is_idle(&self) -> bool {
        self.active_calls() == 0 && self.admission().active() == 0 && self.ports().in_use() == 0
    }

    /// Resolves once the manager holds nothing ([`SessionManager::is_idle`]) — what a test or
    /// a draining server awaits instead of polling the counts. A session gives its counts back
    /// before its `SessionTerminated` is published, so this checks after each of those (and
    /// returns when the manager has stopped).
    pub async fn idle(&self) {
        let mut ended = self
            .events()
            .subscribe(Filter::kind(session_events::EventKind::SessionTerminated));
        while !self.is_idle() {
            if let Err(session_events::RecvError::Closed) = ended.recv().await {
                return;
            }
        }
    }

    /// Where we listen for SIP over TLS, when we do ([`SessionManagerBuilder::tls`]).
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.inner.sip.tls_addr()
    }

    /// How many [`crate::b2bua::connect`] calls have both legs up right now.
    pub fn b2bua_calls(&self) -> usize {
        self.inner.b2bua_pairs.connected()
    }

    /// The connected B2BUA calls, by leg.
    pub(crate) fn b2bua_pairs(&self) -> &Arc<crate::b2bua::Pairs> {
        &self.inner.b2bua_pairs
    }

    /// The current bindings of address of record `aor` (`sip:alice@example.com`, or
    /// `alice@example.com`) at the embedded registrar ([`SessionManagerBuilder::registrar`]),
    /// highest q first: call one with [`SessionManager::call`] on its
    /// [`crate::Binding::contact`]. Expired bindings are never returned; empty without a
    /// registrar.
    pub fn lookup(&self, aor: &str) -> Vec<crate::Binding> {
        self.inner
            .registrar
            .as_ref()
            .map_or_else(Vec::new, |registrar| {
                registrar.lock().lookup(aor, crate::core::now())
            })
    }

    /// How many bindings the embedded registrar holds (expired ones not yet swept included).
    pub fn registrar_bindings(&self) -> usize {
        self.inner
            .registrar
            .as_ref()
            .map_or(0, |registrar| registrar.lock().len())
    }

    /// Calls `target` (`sip:user@host:port`) with our identity.
    pub async fn call(&self, target: &str) -> Result<CallSession> {
        self.call_with(target, CallOptions::default()).await
    }

    /// Calls `target` with options.
    pub async fn call_with(&self, target: &str, options: CallOptions) -> Result<CallSession> {
        let invalid = |what, value: &str| SessionError::InvalidInput {
            what,
            value: value.to_owned(),
        };
        let to = Uri::parse(target).map_err(|_| invalid("target URI", target))?;
        let from = match &options.from {
            Some(from) => Uri::parse(from).map_err(|_| invalid("from URI", from))?,
            None => self.inner.our_uri.clone(),
        };
        let proxy = match &options.proxy {
            Some(proxy) => Some(Uri::parse(proxy).map_err(|_| invalid("proxy URI", proxy))?),
            None => self.inner.outbound_proxy.clone(),
        };
        let next_hop = proxy.as_ref().unwrap_or(&to);
        let (destination, mut protocol) = resolve(next_hop)
            .await
            .ok_or_else(|| invalid("next hop host", next_hop.as_str()))?;
        if protocol == Protocol::Tls {
            // The server's certificate must name the host we meant (RFC 3261 §26.3.1).
            self.inner.sip.set_tls_name(destination, next_hop.host());
        }
        if options.tcp {
            protocol = Protocol::Tcp;
        }
        let mut headers = Vec::with_capacity(options.headers.len() + 2);
        headers.extend(proxy.as_ref().map(preloaded_route));
        if options.priority > Priority::ROUTINE {
            let value = self.inner.priority_namespace.value_for(options.priority);
            headers.push(Header::new(HeaderName::ResourcePriority, value));
        }
        for (name, value) in &options.headers {
            headers
                .push(Header::other(name, value.clone()).ok_or_else(|| invalid("header", name))?);
        }
        let call = OutgoingCall {
            from,
            from_display: self.inner.display_name.clone(),
            to,
            destination,
            protocol,
            headers,
            sdp: options.sdp,
            transfer_of: None,
            group: options.group,
            priority: options.priority,
            account: options.account,
            from_tag: None,
            interval_retried: false,
        };
        let (reply, result) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Call {
                call: Box::new(call),
                reply,
            })
            .await
            .map_err(|_| SessionError::Shutdown)?;
        result.await.map_err(|_| SessionError::Shutdown)?
    }

    /// Registers at a registrar (RFC 3261 §10) and keeps the binding fresh until the returned
    /// [`crate::Registration`] unregisters, is dropped, or the manager shuts down (see
    /// [`crate::RegisterOptions`] and the crate docs' guide). Returns once the first REGISTER
    /// is sent; [`crate::Registration::registered`] waits for the registrar's answer.
    ///
    /// # Errors
    ///
    /// [`SessionError::InvalidInput`] for a URI that does not parse or a host that does not
    /// resolve; [`SessionError::Shutdown`] after shutdown.
    pub async fn register(&self, options: crate::RegisterOptions) -> Result<crate::Registration> {
        let invalid = |what, value: &str| SessionError::InvalidInput {
            what,
            value: value.to_owned(),
        };
        let registrar = Uri::parse(&options.registrar)
            .map_err(|_| invalid("registrar URI", &options.registrar))?;
        let aor = Uri::parse(&options.address_of_record)
            .map_err(|_| invalid("address of record", &options.address_of_record))?;
        let contact = match &options.contact {
            Some(contact) => Some(Uri::parse(contact).map_err(|_| invalid("contact", contact))?),
            None => None,
        };
        let proxy = match &options.outbound_proxy {
            Some(proxy) => Some(Uri::parse(proxy).map_err(|_| invalid("proxy URI", proxy))?),
            None => self.inner.outbound_proxy.clone(),
        };
        let next_hop = proxy.as_ref().unwrap_or(&registrar);
        let (destination, mut protocol) = resolve(next_hop)
            .await
            .ok_or_else(|| invalid("next hop host", next_hop.as_str()))?;
        if protocol == Protocol::Tls {
            self.inner.sip.set_tls_name(destination, next_hop.host());
        }
        if options.tcp {
            protocol = Protocol::Tcp;
        }
        let registration = crate::registration::NewRegistration {
            registrar,
            aor,
            contact,
            expires: options.expires,
            account: options.account,
            destination,
            protocol,
            route: proxy.as_ref().map(preloaded_route),
        };
        crate::registration::start(&self.inner.commands, registration).await
    }

    /// Takes the manager out of service gracefully, as a server behind a balancer leaves it:
    /// new calls are refused from now on, the calls in progress may finish within `grace`,
    /// and then the manager shuts down ([`SessionManager::shutdown`]: the calls still up get
    /// BYE, CANCEL, or 503 if not answered yet). Returns once it has stopped, with how many
    /// calls finished by themselves and how many it ended.
    ///
    /// The refusal takes effect before this first waits, and costs no per-call state: the SIP
    /// layer answers a new INVITE 503 with `Retry-After` itself, and an out-of-dialog OPTIONS
    /// 503 too (200 while healthy), so a balancer that probes with OPTIONS — Kamailio's
    /// dispatcher does — takes this server out of its set. Requests inside calls go on as
    /// before, and so do calls placed with [`SessionManager::call`] (a B2BUA's B legs, a
    /// transfer's new leg, which calls in progress may need). A [`SessionManager::shutdown`]
    /// during the drain cuts it short (the calls still up count as ended); a second `drain`
    /// joins the first, the earlier end of grace winning. Dropping the returned future does
    /// not call the drain off: the manager still stops when it is over. The grace runs on the
    /// manager's clock (tokio's). Draining and its end are logged at INFO.
    ///
    /// ```no_run
    /// # async fn demo(manager: session_core::SessionManager) {
    /// // SIGTERM: leave the cluster without cutting calls, within 30 s.
    /// let report = manager.drain(std::time::Duration::from_secs(30)).await;
    /// println!("{} calls finished, {} ended", report.finished, report.ended);
    /// # }
    /// ```
    pub async fn drain(&self, grace: std::time::Duration) -> DrainReport {
        // In effect at once, before the manager's task hears of it.
        self.inner.gauges.draining.store(true, Ordering::Relaxed);
        self.inner.sip.set_draining(true);
        let (reply, report) = oneshot::channel();
        let sent = self
            .inner
            .commands
            .send(Command::Drain { grace, reply })
            .await;
        // Without an answer the manager had stopped already: nothing was left to drain.
        let report = match sent {
            Ok(()) => report.await.unwrap_or_default(),
            Err(_) => DrainReport::default(),
        };
        self.shutdown().await;
        report
    }

    /// Whether [`SessionManager::drain`] has been called: new calls are refused.
    pub fn is_draining(&self) -> bool {
        self.inner.gauges.draining.load(Ordering::Relaxed)
    }

    /// Ends every call (BYE, CANCEL, or 503 for calls not answered yet), waits for those
    /// transactions (bounded by the shutdown grace), releases everything and stops the
    /// transport. Idempotent.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self
            .inner
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = done.await;
        }
        let task = self.inner.task.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
        // The final figures stay readable through `metrics`; the listener closes.
        self.inner.metrics_stop.cancel();
        let server = self.inner.metrics_task.lock().take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }
}

/// What [`SessionManager::drain`] did with the calls it found in progress (and any that
/// arrived before the refusal took effect).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DrainReport {
    /// Calls that ended by themselves during the drain: hung up by either side, cancelled,
    /// refused or failed.
    pub finished: usize,
    /// Calls still up when the grace ran out (or a shutdown cut the drain short), ended by
    /// the drain with BYE, CANCEL, or 503 if not answered yet.
    pub ended: usize,
}

/// The Route header that sends a request through the loose-routing proxy `proxy` (RFC 3261
/// §8.1.2: a pre-loaded route set; `;lr` added when the URI lacks it).
pub(crate) fn preloaded_route(proxy: &Uri) -> Header {
    let value = if proxy.param("lr").is_some() {
        format!("<{proxy}>")
    } else {
        format!("<{proxy};lr>")
    };
    Header::new(session_sip::HeaderName::Route, value)
}

/// Where a SIP URI's requests go: its host and port (5060 by default) and its transport
/// parameter, without DNS (IP literals only).
pub(crate) fn destination_of(uri: &Uri) -> Option<(SocketAddr, Protocol)> {
    let host = uri.host().trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    let protocol = protocol_of(uri);
    Some((SocketAddr::new(ip, port_of(uri, protocol)), protocol))
}

/// The transport a URI asks for: TLS for `sips:` (RFC 3261 §19.1) or `;transport=tls`, TCP
/// for `;transport=tcp`, else UDP.
fn protocol_of(uri: &Uri) -> Protocol {
    if uri.scheme() == session_sip::Scheme::Sips {
        return Protocol::Tls;
    }
    match uri.param("transport").flatten() {
        Some(t) if t.eq_ignore_ascii_case("tcp") => Protocol::Tcp,
        Some(t) if t.eq_ignore_ascii_case("tls") => Protocol::Tls,
        _ => Protocol::Udp,
    }
}

/// The URI's port, or the transport's default (5061 for TLS, 5060 otherwise; §19.1.2).
fn port_of(uri: &Uri, protocol: Protocol) -> u16 {
    let default = if protocol == Protocol::Tls {
        5061
    } else {
        5060
    };
    uri.port().unwrap_or(default)
}

/// As [`destination_of`], looking host names up (A/AAAA; no SRV/NAPTR).
pub(crate) async fn resolve(uri: &Uri) -> Option<(SocketAddr, Protocol)> {
    if let Some(found) = destination_of(uri) {
        return Some(found);
    }
    let protocol = protocol_of(uri);
    let port = port_of(uri, protocol);
    let mut addresses = tokio::net::lookup_host((uri.host(), port)).await.ok()?;
    addresses.next().map(|address| (address, protocol))
}
