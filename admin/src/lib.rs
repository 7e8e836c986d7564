//! Server-rendered pages. For now the landing page that tells a visitor what this service is
//! and where its API lives; the portal and console build on the same templates.

use actix_web::{web, HttpResponse};
use handlebars::Handlebars;

const HOME: &str = include_str!("../templates/home.hbs");

/// Pages this crate serves, as (method, path), for the route/spec comparison.
pub static PAGES: &[(&str, &str)] = &[("get", "/")];

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home));
}

async fn home() -> HttpResponse {
    let hb = Handlebars::new();
    let page = hb.render_template(
        HOME,
        &serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }),
    );
    match page {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html),
        Err(e) => {
            tracing::error!(error = %e, "rendering the home page");
            HttpResponse::InternalServerError().finish()
        }
    }
}
