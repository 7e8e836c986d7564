//! The JSON REST API (`/api/v1`) and the OpenAI-compatible metering proxy (`/v1`).

pub mod auth;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod keys;
pub mod metrics;
pub mod proxy;
pub mod routes;
pub mod sandbox;
pub mod service;
pub mod state;
pub mod telemetry;
pub mod throttle;
pub mod views;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Which routes a process serves: one binary, several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// The REST API and the metering proxy.
    Everything,
    /// The REST API (and health).
    Api,
    /// The metering proxy (and health).
    Proxy,
}

/// Registers the routes of `serves`, and the proxy's OpenAI-shaped 404 for the rest of `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig, serves: Serves) {
    let health = |r: &routes::Route| matches!(r.path, "/healthz" | "/readyz" | "/metrics");
    let serve = |r: &routes::Route| match serves {
        Serves::Everything => true,
        Serves::Api => r.access != routes::Access::ApiKey && r.access != routes::Access::Sandbox,
        Serves::Proxy => {
            matches!(r.access, routes::Access::ApiKey | routes::Access::Sandbox) || health(r)
        }
    };
    // The proxy's routes first: actix tries routes in order, and they are the hot path.
    let proxy = |r: &routes::Route| r.access == routes::Access::ApiKey;
    routes::register(cfg, &|r| proxy(r) && serve(r));
    routes::register(cfg, &|r| !proxy(r) && serve(r));
    if serves != Serves::Api {
        cfg.service(web::scope("/v1").default_service(web::to(proxy::not_found)));
    }
}

/// Any path no route serves.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error::problem_response(
        StatusCode::NOT_FOUND,
        voucherd_domain::ErrorCode::NotFound,
        format!("no route for {} {}", req.method(), req.path()),
        None,
    )
}
