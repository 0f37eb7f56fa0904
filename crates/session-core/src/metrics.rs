//! The manager's metrics: what it records into its [`Metrics`] registry as calls come and go
//! ([`CallMetrics`], handles fetched once when the manager starts), the figures it copies in
//! from its resources when someone reads them ([`Exporter::refresh`]), and the `GET /metrics`
//! answer in the Prometheus text format ([`serve`], spawned from the manager when
//! `SessionManagerBuilder::metrics_address` asks for it).
//!
//! The metric names (no prefix):
//!
//! | name | kind | what |
//! |------|------|------|
//! | `calls_inbound_total`, `calls_outbound_total` | counter | sessions created, by direction |
//! | `calls_active` | gauge | sessions alive |
//! | `calls_ended_{local_hangup,remote_hangup,cancelled,failed,shutdown}_total` | counter | endings by reason |
//! | `setup_time_ms`, `talk_time_ms` | histogram | per answered call, when it ends |
//! | `rtp_lost_packets`, `rtp_jitter_us`, `mos_x100` | histogram | per answered call with our media, when it ends |
//! | `admission_active`, `ports_in_use` | gauge | read at scrape time |
//! | `calls_shed_total`, `admission_refused_total`, `event_bus_dropped_total` | counter | read at scrape time |
//! | `health_{no_final_response,no_ack,no_audio,one_way_audio,long_hold}` | gauge | live sessions with that finding of the tracer's health rules, at scrape time (with a `SessionTracer` only) |

use crate::call::CallStats;
use crate::core::Gauges;
use session_dialog::driver::SipHandle;
use session_events::{EventBus, TerminationReason};
use session_resources::{AdmissionController, Counter, Gauge, Histogram, Metrics, PortPool};
use session_types::Direction;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The largest request `GET /metrics` reads; a longer one gets 431 and the connection closed.
pub(crate) const MAX_REQUEST: usize = 8 * 1024;
/// How long one connection may take, from accept to the last byte of the answer.
pub(crate) const CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// The handles the manager task records into, fetched from the registry once. (`pub` for
/// `crate::bench_support` only.)
#[derive(Debug)]
pub struct CallMetrics {
    inbound: Counter,
    outbound: Counter,
    active: Gauge,
    ended_local_hangup: Counter,
    ended_remote_hangup: Counter,
    ended_cancelled: Counter,
    ended_failed: Counter,
    ended_shutdown: Counter,
    setup_time_ms: Histogram,
    talk_time_ms: Histogram,
    rtp_lost_packets: Histogram,
    rtp_jitter_us: Histogram,
    mos_x100: Histogram,
}

impl CallMetrics {
    /// Registers (or finds) every per-call metric in `registry`.
    pub fn new(registry: &Metrics) -> Self {
        Self {
            inbound: registry.counter("calls_inbound_total"),
            outbound: registry.counter("calls_outbound_total"),
            active: registry.gauge("calls_active"),
            ended_local_hangup: registry.counter("calls_ended_local_hangup_total"),
            ended_remote_hangup: registry.counter("calls_ended_remote_hangup_total"),
            ended_cancelled: registry.counter("calls_ended_cancelled_total"),
            ended_failed: registry.counter("calls_ended_failed_total"),
            ended_shutdown: registry.counter("calls_ended_shutdown_total"),
            setup_time_ms: registry.histogram("setup_time_ms"),
            talk_time_ms: registry.histogram("talk_time_ms"),
            rtp_lost_packets: registry.histogram("rtp_lost_packets"),
            rtp_jitter_us: registry.histogram("rtp_jitter_us"),
            mos_x100: registry.histogram("mos_x100"),
        }
    }

    /// A session was created; `active` sessions are alive now.
    pub fn created(&self, direction: Direction, active: usize) {
        match direction {
            Direction::Inbound => self.inbound.inc(),
            Direction::Outbound => self.outbound.inc(),
        }
        self.set_active(active);
    }

    /// `active` sessions are alive now.
    pub(crate) fn set_active(&self, active: usize) {
        self.active.set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    /// A call ended for `reason` with its final `stats`: counted once, here.
    pub fn ended(&self, reason: TerminationReason, stats: &CallStats) {
        match reason {
            TerminationReason::LocalHangup => self.ended_local_hangup.inc(),
            TerminationReason::RemoteHangup => self.ended_remote_hangup.inc(),
            TerminationReason::Cancelled => self.ended_cancelled.inc(),
            TerminationReason::Shutdown => self.ended_shutdown.inc(),
            // `Failed`, and any reason added later.
            _ => self.ended_failed.inc(),
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        if let Some(setup) = stats.setup_time {
            self.setup_time_ms.record(millis(setup));
        }
        if let Some(talk) = stats.talk_time {
            self.talk_time_ms.record(millis(talk));
        }
        // Media figures of answered calls only: a call refused or cancelled may have opened
        // its media, but it carried none, and its zeros would flatter the distributions.
        if let (Some(rtp), Some(_)) = (&stats.rtp, stats.setup_time) {
            self.rtp_lost_packets
                .record(u64::try_from(rtp.packets_lost).unwrap_or(0));
            // Float-to-int casts saturate (NaN gives 0).
            self.rtp_jitter_us
                .record((rtp.jitter_ms.max(0.0) * 1000.0).round() as u64);
            if let Some(mos) = rtp.mos {
                self.mos_x100.record((mos.max(0.0) * 100.0).round() as u64);
            }
        }
    }
}

/// The figures read from the manager's resources when the metrics are read, and the text
/// answer to a scrape.
pub(crate) struct Exporter {
    registry: Metrics,
    gauges: Arc<Gauges>,
    admission: AdmissionController,
    ports: PortPool,
    sip: SipHandle,
    bus: EventBus,
    active: Gauge,
    admission_active: Gauge,
    ports_in_use: Gauge,
    shed: Counter,
    admission_refused: Counter,
    bus_dropped: Counter,
    /// The tracer whose health findings are counted, and the gauges they go in.
    health: Option<(session_tracer::SessionTracer, HealthGauges)>,
    /// Serialises refreshes: the mirrored counters catch up by difference.
    refreshing: parking_lot::Mutex<()>,
}

impl Exporter {
    pub(crate) fn new(
        registry: Metrics,
        gauges: Arc<Gauges>,
        admission: AdmissionController,
        ports: PortPool,
        sip: SipHandle,
        bus: EventBus,
        tracer: Option<session_tracer::SessionTracer>,
    ) -> Self {
        Self {
            health: tracer.map(|tracer| (tracer, HealthGauges::new(&registry))),
            active: registry.gauge("calls_active"),
            admission_active: registry.gauge("admission_active"),
            ports_in_use: registry.gauge("ports_in_use"),
            shed: registry.counter("calls_shed_total"),
            admission_refused: registry.counter("admission_refused_total"),
            bus_dropped: registry.counter("event_bus_dropped_total"),
            registry,
            gauges,
            admission,
            ports,
            sip,
            bus,
            refreshing: parking_lot::Mutex::new(()),
        }
    }

    /// The registry.
    pub(crate) fn registry(&self) -> &Metrics {
        &self.registry
    }

    /// Copies the resources' current figures into the registry.
    pub(crate) fn refresh(&self) {
        let _serial = self.refreshing.lock();
        let gauge = |g: &Gauge, value: usize| g.set(i64::try_from(value).unwrap_or(i64::MAX));
        gauge(&self.active, self.gauges.calls.load(Ordering::Relaxed));
        gauge(&self.admission_active, self.admission.active());
        gauge(&self.ports_in_use, self.ports.in_use());
        // The sources count on their own; the registry's counters follow them.
        let catch_up = |c: &Counter, value: u64| c.add(value.saturating_sub(c.get()));
        catch_up(&self.shed, self.sip.shed_invites());
        catch_up(&self.admission_refused, self.admission.refused_total());
        catch_up(&self.bus_dropped, self.bus.stats().lagged);
        if let Some((tracer, gauges)) = &self.health {
            gauges.set(&tracer.health(crate::core::now()));
        }
    }

    /// Every metric, refreshed, in the Prometheus text format.
    pub(crate) fn render(&self) -> String {
        self.refresh();
        self.registry.snapshot().to_prometheus("")
    }
}

/// One gauge per kind of health finding.
#[derive(Debug)]
struct HealthGauges {
    no_final_response: Gauge,
    no_ack: Gauge,
    no_audio: Gauge,
    one_way_audio: Gauge,
    long_hold: Gauge,
}

impl HealthGauges {
    fn new(registry: &Metrics) -> Self {
        Self {
            no_final_response: registry.gauge("health_no_final_response"),
            no_ack: registry.gauge("health_no_ack"),
            no_audio: registry.gauge("health_no_audio"),
            one_way_audio: registry.gauge("health_one_way_audio"),
            long_hold: registry.gauge("health_long_hold"),
        }
    }

    /// Counts `issues` by kind into the gauges.
    fn set(&self, issues: &[session_tracer::HealthIssue]) {
        use session_tracer::HealthKind;
        let mut counts = [0i64; 5];
        for issue in issues {
            let slot = match issue.kind {
                HealthKind::NoFinalResponse { .. } => 0,
                HealthKind::NoAck { .. } => 1,
                HealthKind::NoAudio { .. } => 2,
                HealthKind::OneWayAudio { .. } => 3,
                HealthKind::LongHold { .. } => 4,
                // A kind added later is not counted until it has a gauge.
                _ => continue,
            };
            counts[slot] += 1;
        }
        let gauges = [
            &self.no_final_response,
            &self.no_ack,
            &self.no_audio,
            &self.one_way_audio,
            &self.long_hold,
        ];
        for (gauge, count) in gauges.into_iter().zip(counts) {
            gauge.set(count);
        }
    }
}

/// Answers `GET /metrics` on `listener`, one connection at a time (each bounded by
/// [`CONNECTION_TIMEOUT`] and [`MAX_REQUEST`]), until `stop` is cancelled.
pub(crate) async fn serve(listener: TcpListener, exporter: Arc<Exporter>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            biased;
            () = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, most likely: let some close rather than spin.
                    tracing::debug!(%error, "metrics listener: accept failed");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        tokio::select! {
            () = stop.cancelled() => return,
            answered = tokio::time::timeout(CONNECTION_TIMEOUT, answer(stream, &exporter)) => {
                match answered {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::debug!(%error, "metrics request failed"),
                    Err(_) => tracing::debug!("metrics request timed out"),
                }
            }
        }
    }
}

/// Reads one request from `stream`, answers it and closes the connection.
async fn answer(mut stream: TcpStream, exporter: &Exporter) -> std::io::Result<()> {
    let mut request = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let head_complete = loop {
        if request[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if len == request.len() {
            break false;
        }
        let read = stream.read(&mut request[len..]).await?;
        if read == 0 {
            // Closed before a whole request: nothing to answer.
            return Ok(());
        }
        len += read;
    };
    let (status, content_type, body) = if head_complete {
        respond(&request[..len], exporter)
    } else {
        (
            "431 Request Header Fields Too Large",
            "text/plain",
            "request too large\n".to_owned(),
        )
    };
    let allow = if status.starts_with("405") {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {allow}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The status, content type and body for the request whose head is `head`.
fn respond(head: &[u8], exporter: &Exporter) -> (&'static str, &'static str, String) {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", "text/plain", "bad request\n".to_owned());
    };
    if !version.starts_with("HTTP/1.") {
        return ("400 Bad Request", "text/plain", "bad request\n".to_owned());
    }
    let path = target.split('?').next().unwrap_or(target);
    match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, exporter.render()),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_owned()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET\n".to_owned(),
        ),
    }
}
