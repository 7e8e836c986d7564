//! Prometheus metrics, served as text at `/metrics`.

use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub tokens: IntCounterVec,
    pub cost_micros: IntCounterVec,
    pub holds_outstanding: IntGauge,
    /// Statements sent to the database (the benchmark divides it by requests).
    pub db_statements: IntGauge,
    pub usage_batches: IntGauge,
    pub usage_batch_rows: IntGauge,
    pub upstream_errors: IntCounterVec,
    pub settle_retries: IntCounterVec,
    pub overrun_micros: IntCounterVec,
    pub overrun_requests: IntCounterVec,
    pub disconnects: IntCounterVec,
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let metrics = Metrics {
            registry: Registry::new_custom(Some("voucherd".into()), None)?,
            http_requests: counter_vec(
                "http_requests_total",
                "Requests by route, method and status.",
                &["route", "method", "status"],
            )?,
            http_duration: http_duration()?,
            tokens: counter_vec(
                "proxy_tokens_total",
                "Tokens billed, by model and kind (prompt, cached, completion).",
                &["model", "kind"],
            )?,
            cost_micros: counter_vec(
                "proxy_cost_micros_total",
                "Cost billed in micro-pounds, by model.",
                &["model"],
            )?,
            holds_outstanding: IntGauge::new(
                "proxy_holds_outstanding",
                "Holds this process opened and has not yet settled or released.",
            )?,
            db_statements: IntGauge::new(
                "db_statements_total",
                "Statements this process has sent to its database, transaction control included.",
            )?,
            usage_batches: IntGauge::new(
                "usage_batches_total",
                "Group commits of leased requests' usage (transactions, failed ones included).",
            )?,
            usage_batch_rows: IntGauge::new(
                "usage_batch_rows_total",
                "Usage rows carried by those group commits: rows / batches is the batch size.",
            )?,
            upstream_errors: counter_vec(
                "proxy_upstream_errors_total",
                "Upstream failures by kind (timeout, unreachable, status).",
                &["kind"],
            )?,
            settle_retries: counter_vec(
                "proxy_settle_retries_total",
                "Settlements retried for want of the database, by outcome.",
                &["outcome"],
            )?,
            overrun_micros: counter_vec(
                "proxy_overrun_micros_total",
                "Usage above its request's hold (booked to overrun loss), in micro-pounds, by model.",
                &["model"],
            )?,
            overrun_requests: counter_vec(
                "proxy_overrun_requests_total",
                "Requests whose usage was above their hold, by model.",
                &["model"],
            )?,
            disconnects: counter_vec(
                "proxy_stream_disconnects_total",
                "Streams whose client went away, by how they were billed (provider_usage, held_bound).",
                &["billed"],
            )?,
        };
        metrics.register()?;
        Ok(metrics)
    }

    /// Registers every metric with the registry `/metrics` renders.
    fn register(&self) -> Result<(), prometheus::Error> {
        for c in [
            Box::new(self.http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.http_duration.clone()),
            Box::new(self.tokens.clone()),
            Box::new(self.cost_micros.clone()),
            Box::new(self.holds_outstanding.clone()),
            Box::new(self.db_statements.clone()),
            Box::new(self.usage_batches.clone()),
            Box::new(self.usage_batch_rows.clone()),
            Box::new(self.upstream_errors.clone()),
            Box::new(self.settle_retries.clone()),
            Box::new(self.overrun_micros.clone()),
            Box::new(self.overrun_requests.clone()),
            Box::new(self.disconnects.clone()),
        ] {
            self.registry.register(c)?;
        }
        Ok(())
    }

    pub fn render(&self) -> String {
        self.db_statements
            .set(i64::try_from(voucherd_store::db::statements_executed()).unwrap_or(i64::MAX));
        let (batches, rows) = voucherd_store::usage_writer::batches_and_rows();
        self.usage_batches
            .set(i64::try_from(batches).unwrap_or(i64::MAX));
        self.usage_batch_rows
            .set(i64::try_from(rows).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Time to the response head, by route: buckets from a millisecond to half a minute.
fn http_duration() -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(
        HistogramOpts::new(
            "http_request_duration_seconds",
            "Time to the response head, by route.",
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
        ]),
        &["route"],
    )
}

/// A counter by labels; most metrics are one.
fn counter_vec(
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    IntCounterVec::new(Opts::new(name, help), labels)
}

pub async fn serve(state: web::Data<crate::state::AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
