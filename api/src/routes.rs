//! The route table: every route, its handler and who may call it, declared once. The server
//! registers from this table, the guard enforces it, `voucherd openapi` writes each operation's
//! access into `openapi.yaml` from it, and tests walk it with every role.

use crate::handlers::{
    applications, budget, challenges, consulting, health, incentives, jobs, me, overruns, payments,
    prices, programme, reports, users, vouchers,
};
use crate::metrics;
use crate::proxy;
use crate::sandbox;
use actix_web::web;
use voucherd_domain::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A voucher API key (the metering proxy); checked by the proxy itself.
    ApiKey,
    /// The process's own sandbox key: the built-in sandbox, reached only through the proxy.
    Sandbox,
    /// The monitoring system: a bearer token from configuration (`metrics_token`); without
    /// one configured, the metrics are not served.
    Metrics,
    /// A signed-in user with one of these roles.
    Roles(&'static [Role]),
}

#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lower-case HTTP method, as in OpenAPI.
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

const SIGNED_IN: Access =
    Access::Roles(&[Role::Applicant, Role::Admin, Role::Assessor, Role::Adviser]);
const APPLICANT: Access = Access::Roles(&[Role::Applicant]);
const ADMIN: Access = Access::Roles(&[Role::Admin]);
const APPLICANT_OR_ADMIN: Access = Access::Roles(&[Role::Applicant, Role::Admin]);
const ASSESSOR: Access = Access::Roles(&[Role::Assessor]);
const ADVISER: Access = Access::Roles(&[Role::Adviser]);
const CONSULTING: Access = Access::Roles(&[Role::Applicant, Role::Admin, Role::Adviser]);

macro_rules! routes {
    ($( $method:ident $path:literal => $handler:path, $access:expr; )*) => {
        pub static ROUTES: &[Route] = &[
            $( Route { method: stringify!($method), path: $path, access: $access }, )*
        ];

        /// Registers the routes of the table that `wanted` selects.
        pub fn register(cfg: &mut web::ServiceConfig, wanted: &dyn Fn(&Route) -> bool) {
            $(
                if wanted(&Route { method: stringify!($method), path: $path, access: $access }) {
                    cfg.route($path, web::$method().to($handler));
                }
            )*
        }
    };
}

routes! {
    get "/healthz" => health::healthz, Access::Public;
    get "/readyz" => health::readyz, Access::Public;
    get "/metrics" => metrics::serve, Access::Metrics;
    post "/api/v1/auth/register" => me::register, Access::Public;
    post "/api/v1/auth/login" => me::login, Access::Public;
    post "/api/v1/auth/logout" => me::logout, SIGNED_IN;
    post "/api/v1/auth/email-verification" => me::verify_link, Access::Public;
    post "/api/v1/auth/password-reset-request" => me::request_reset, Access::Public;
    post "/api/v1/auth/password-reset" => me::reset_password, Access::Public;
    post "/api/v1/auth/invitation-acceptance" => me::accept_invitation, Access::Public;
    get "/api/v1/me" => me::me, SIGNED_IN;
    post "/api/v1/me/email-verification" => me::verify_code, SIGNED_IN;
    post "/api/v1/me/verification-email" => me::resend_verification, SIGNED_IN;
    post "/api/v1/me/password" => me::change_password, SIGNED_IN;
    get "/api/v1/users" => users::list, ADMIN;
    post "/api/v1/users" => users::invite, ADMIN;
    post "/api/v1/users/{id}/invitation" => users::reinvite, ADMIN;
    put "/api/v1/users/{id}/role" => users::change_role, ADMIN;
    post "/api/v1/users/{id}/disablement" => users::disable, ADMIN;
    post "/api/v1/users/{id}/enablement" => users::enable, ADMIN;
    post "/api/v1/applications" => applications::submit, APPLICANT;
    get "/api/v1/applications" => applications::list, APPLICANT_OR_ADMIN;
    get "/api/v1/applications/{id}" => applications::get, APPLICANT_OR_ADMIN;
    post "/api/v1/applications/{id}/decision" => applications::decide, ADMIN;
    post "/api/v1/applications/{id}/second-approval" => applications::second_approval, ADMIN;
    post "/api/v1/applications/{id}/ownership" => applications::ownership, ADMIN;
    post "/api/v1/applications/{id}/release" => applications::release, ADMIN;
    get "/api/v1/applications/{id}/incentives" => applications::preview_incentives, ADMIN;
    post "/api/v1/incentives" => incentives::create, ADMIN;
    get "/api/v1/incentives" => incentives::list, ADMIN;
    put "/api/v1/incentives/{key}" => incentives::update, ADMIN;
    get "/api/v1/vouchers/{id}/incentives" => incentives::for_voucher, APPLICANT_OR_ADMIN;
    get "/api/v1/audit" => programme::audit, ADMIN;
    post "/api/v1/programme/deposits" => programme::deposit, ADMIN;
    get "/api/v1/programme" => programme::overview, ADMIN;
    post "/api/v1/budget-lines" => budget::create, ADMIN;
    get "/api/v1/budget-lines" => budget::list, ADMIN;
    post "/api/v1/budget-lines/moves" => budget::move_money, ADMIN;
    get "/api/v1/jobs/runs" => jobs::runs, ADMIN;
    get "/api/v1/reconciliations" => jobs::reconciliations, ADMIN;
    get "/api/v1/outbox" => jobs::outbox, ADMIN;
    get "/api/v1/vouchers" => vouchers::list, APPLICANT_OR_ADMIN;
    get "/api/v1/vouchers/{id}" => vouchers::get, APPLICANT_OR_ADMIN;
    post "/api/v1/vouchers/{id}/suspension" => vouchers::suspend, ADMIN;
    post "/api/v1/vouchers/{id}/reinstatement" => vouchers::reinstate, ADMIN;
    post "/api/v1/vouchers/{id}/expiry" => vouchers::expire_now, ADMIN;
    get "/api/v1/vouchers/{id}/transactions" => vouchers::transactions, APPLICANT_OR_ADMIN;
    get "/api/v1/vouchers/{id}/usage" => vouchers::usage, APPLICANT_OR_ADMIN;
    get "/api/v1/vouchers/{id}/statement" => vouchers::statement, APPLICANT_OR_ADMIN;
    post "/api/v1/vouchers/{id}/keys" => vouchers::create_key, APPLICANT;
    get "/api/v1/vouchers/{id}/keys" => vouchers::list_keys, APPLICANT_OR_ADMIN;
    delete "/api/v1/keys/{id}" => vouchers::revoke_key, APPLICANT_OR_ADMIN;
    post "/api/v1/keys/{id}/rotate" => vouchers::rotate_key, APPLICANT;
    post "/api/v1/keys/{id}/reinstatement" => overruns::reinstate_key, ADMIN;
    get "/api/v1/overruns" => overruns::list, ADMIN;
    get "/api/v1/payments/settings" => payments::settings, SIGNED_IN;
    get "/api/v1/vouchers/{id}/contribution" => payments::contribution, APPLICANT_OR_ADMIN;
    post "/api/v1/vouchers/{id}/contribution" => payments::pay_contribution, APPLICANT;
    post "/api/v1/topups" => payments::create_top_up, APPLICANT;
    get "/api/v1/topups" => payments::list_top_ups, APPLICANT_OR_ADMIN;
    get "/api/v1/topups/{id}" => payments::get_top_up, APPLICANT_OR_ADMIN;
    get "/api/v1/payments" => payments::list_payments, ADMIN;
    post "/webhooks/stripe" => payments::stripe_webhook, Access::Public;
    post "/api/v1/challenges" => challenges::create, ADMIN;
    get "/api/v1/challenges" => challenges::list, SIGNED_IN;
    get "/api/v1/challenges/{id}" => challenges::get, SIGNED_IN;
    put "/api/v1/challenges/{id}" => challenges::update, ADMIN;
    post "/api/v1/challenges/{id}/cancellation" => challenges::cancel, ADMIN;
    post "/api/v1/challenges/{id}/entries/{entry_id}/kind-check" => challenges::check_kind, ADMIN;
    post "/api/v1/challenges/{id}/entries" => challenges::submit_entry, APPLICANT;
    get "/api/v1/challenges/{id}/entries" => challenges::list_entries, APPLICANT_OR_ADMIN;
    put "/api/v1/challenges/{id}/entries/{entry_id}" => challenges::update_entry, APPLICANT;
    get "/api/v1/assessments" => challenges::assessments, ASSESSOR;
    get "/api/v1/assessments/{entry_id}" => challenges::assessment, ASSESSOR;
    put "/api/v1/assessments/{entry_id}" => challenges::score, ASSESSOR;
    post "/api/v1/conflicts" => challenges::declare_conflict, ASSESSOR;
    get "/api/v1/conflicts" => challenges::list_conflicts, ASSESSOR;
    post "/api/v1/consulting/slots" => consulting::create_slot, ADVISER;
    get "/api/v1/consulting/slots" => consulting::list_slots, CONSULTING;
    post "/api/v1/consulting/bookings" => consulting::book, APPLICANT;
    get "/api/v1/consulting/bookings" => consulting::list_bookings, CONSULTING;
    delete "/api/v1/consulting/bookings/{id}" => consulting::cancel, APPLICANT;
    put "/api/v1/consulting/bookings/{id}/outcome" => consulting::record_outcome, ADVISER;
    get "/api/v1/vouchers/{id}/consulting" => consulting::allowance, APPLICANT_OR_ADMIN;
    get "/api/v1/reports" => reports::list, ADMIN;
    post "/api/v1/reports" => reports::make, ADMIN;
    get "/api/v1/reports/{id}" => reports::get, ADMIN;
    get "/api/v1/reports/{id}/html" => reports::html, ADMIN;
    get "/api/v1/reports/{id}/csv" => reports::csv_table, ADMIN;
    get "/public/reports/latest" => reports::public_latest, Access::Public;
    get "/public/reports/{from}/{to}" => reports::public_period, Access::Public;
    get "/api/v1/prices" => prices::list, Access::Public;
    get "/api/v1/price-versions" => prices::history, ADMIN;
    put "/api/v1/prices/{model}" => prices::set, ADMIN;
    post "/v1/chat/completions" => proxy::chat_completions, Access::ApiKey;
    post "/v1/responses" => proxy::responses, Access::ApiKey;
    post "/v1/embeddings" => proxy::embeddings, Access::ApiKey;
    get "/v1/models" => proxy::list_models, Access::ApiKey;
    post "/sandbox/v1/chat/completions" => sandbox::chat, Access::Sandbox;
    post "/sandbox/v1/responses" => sandbox::responses, Access::Sandbox;
    post "/sandbox/v1/embeddings" => sandbox::embeddings, Access::Sandbox;
}
