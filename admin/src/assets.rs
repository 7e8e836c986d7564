//! Static files, embedded in the binary: GOV.UK Frontend (copied from npm by
//! `admin/refresh-govuk-frontend.sh`, with its licence) and the service's own few.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

macro_rules! files {
    ($( $name:literal => $source:literal, $kind:literal; )*) => {
        /// (path under /assets/, bytes, content type)
        static FILES: &[(&str, &[u8], &str)] = &[
            $( ($name, include_bytes!($source), $kind), )*
        ];
    };
}

files! {
    "govuk-frontend.min.css" => "../assets/govuk-frontend/govuk-frontend.min.css", "text/css; charset=utf-8";
    "govuk-frontend.min.js" => "../assets/govuk-frontend/govuk-frontend.min.js", "text/javascript; charset=utf-8";
    "manifest.json" => "../assets/govuk-frontend/manifest.json", "application/manifest+json";
    "LICENSE.txt" => "../assets/govuk-frontend/LICENSE.txt", "text/plain; charset=utf-8";
    "fonts/bold-affa96571d-v2.woff" => "../assets/govuk-frontend/fonts/bold-affa96571d-v2.woff", "font/woff";
    "fonts/bold-b542beb274-v2.woff2" => "../assets/govuk-frontend/fonts/bold-b542beb274-v2.woff2", "font/woff2";
    "fonts/light-94a07e06a1-v2.woff2" => "../assets/govuk-frontend/fonts/light-94a07e06a1-v2.woff2", "font/woff2";
    "fonts/light-f591b13f7d-v2.woff" => "../assets/govuk-frontend/fonts/light-f591b13f7d-v2.woff", "font/woff";
    "images/favicon.ico" => "../assets/govuk-frontend/images/favicon.ico", "image/x-icon";
    "images/favicon.svg" => "../assets/govuk-frontend/images/favicon.svg", "image/svg+xml";
    "images/govuk-crest.svg" => "../assets/govuk-frontend/images/govuk-crest.svg", "image/svg+xml";
    "images/govuk-icon-180.png" => "../assets/govuk-frontend/images/govuk-icon-180.png", "image/png";
    "images/govuk-icon-192.png" => "../assets/govuk-frontend/images/govuk-icon-192.png", "image/png";
    "images/govuk-icon-512.png" => "../assets/govuk-frontend/images/govuk-icon-512.png", "image/png";
    "images/govuk-icon-mask.svg" => "../assets/govuk-frontend/images/govuk-icon-mask.svg", "image/svg+xml";
    "images/govuk-opengraph-image.png" => "../assets/govuk-frontend/images/govuk-opengraph-image.png", "image/png";
    "js-enabled.js" => "../assets/voucherd/js-enabled.js", "text/javascript; charset=utf-8";
    "init.js" => "../assets/voucherd/init.js", "text/javascript; charset=utf-8";
    "voucherd.css" => "../assets/voucherd/voucherd.css", "text/css; charset=utf-8";
}

pub fn register(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/{path:.*}", web::get().to(serve));
}

async fn serve(path: web::Path<String>) -> HttpResponse {
    let wanted = path.into_inner();
    match FILES.iter().find(|(name, _, _)| *name == wanted) {
        Some((_, bytes, kind)) => HttpResponse::Ok()
            .content_type(*kind)
            // Fonts and images never change under a name; the rest may with a release.
            .insert_header((
                header::CACHE_CONTROL,
                if wanted.starts_with("fonts/") || wanted.starts_with("images/") {
                    "public, max-age=31536000, immutable"
                } else {
                    "public, max-age=3600"
                },
            ))
            .body(*bytes),
        None => HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body("not found"),
    }
}
