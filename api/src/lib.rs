//! The JSON REST API (`/api/v1`) and the OpenAI-compatible metering proxy (`/v1`).

pub mod auth;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod keys;
pub mod proxy;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod views;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

/// Registers the API's routes, and the proxy's OpenAI-shaped 404 for the rest of `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig) {
    routes::register(cfg);
    cfg.service(web::scope("/v1").default_service(web::to(proxy::not_found)));
}

/// Any path no route serves.
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    error::problem_response(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
        None,
    )
}
