//! The OpenAPI document, generated: `voucherd openapi` prints it, `openapi.yaml` is its output,
//! and a test fails when the two differ.
//!
//! Generated from code:
//! - every operation's access (`x-access`) and security scheme, from the route table
//!   (`voucherd_api::routes::ROUTES`) and the pages' table (`voucherd_admin::PAGES`); an
//!   operation in the document that neither table serves, or a served one the document lacks,
//!   stops generation;
//! - the refusals every operation of a kind shares (401, 403, 413, 415 and 503 on the REST API,
//!   403, 413 and 503 on the pages), from the same table: see `add_standard_responses`;
//! - the schemas of the types that state their own (`utoipa::ToSchema`), listed in
//!   `schemas` with every type they reach: the API's requests and views, the domain's enums,
//!   the kept reports (`voucherd_reports::document`);
//! - the proxy's request bodies, from the allowlist that checks them
//!   (`voucherd_api::proxy::contract`).
//!
//! Still written by hand, in `written.yaml` beside this file: the operations' prose, parameters
//! and their other responses, and one schema, `ChatCompletion`: the provider's answer, which
//! the proxy passes on unchanged and reads only the usage of, so no type of the product states
//! it. A schema is in exactly one of the two places: generation stops when both have it. Every
//! `$ref` must resolve.

use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use voucherd_api::routes::{Access, ROUTES};
use voucherd_api::service::{
    accounts, applications, challenges, consulting, incentives, operations, payments, prices,
    programme, reports,
};
use voucherd_api::views::{self, List};
use voucherd_domain::{ErrorCode, Role};

const WRITTEN: &str = include_str!("written.yaml");

#[derive(Debug, thiserror::Error)]
pub enum OpenApiError {
    #[error("written.yaml is not YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("written.yaml has no {0}")]
    Missing(String),
    #[error("{method} {path} is served but not documented")]
    Undocumented { method: String, path: String },
    #[error("{method} {path} is documented but not served")]
    NotServed { method: String, path: String },
    #[error("schema {0} is both generated and written by hand: remove it from written.yaml")]
    Twice(String),
    #[error("{0} points at nothing")]
    Dangling(String),
    #[error("{0} is not named by a string")]
    NotText(String),
}

/// One generated schema: its component name and the schema.
type Named = (String, RefOr<Schema>);

/// The root types whose schemas are generated (with every type they reach).
fn schemas() -> Vec<Named> {
    let mut all = Vec::new();
    fn root<T: ToSchema>(all: &mut Vec<Named>) {
        all.push((T::name().into_owned(), T::schema()));
        T::schemas(all);
    }
    root::<List<views::VoucherView>>(&mut all);
    root::<List<views::KeyView>>(&mut all);
    root::<views::NewKeyView>(&mut all);
    root::<applications::ApplicationPage>(&mut all);
    root::<applications::ApplicationRequest>(&mut all);
    root::<views::UserView>(&mut all);
    root::<accounts::RegisterRequest>(&mut all);
    root::<accounts::LoginRequest>(&mut all);
    root::<accounts::TokenView>(&mut all);
    root::<payments::TopUpRequest>(&mut all);
    root::<applications::DecisionRequest>(&mut all);
    root::<applications::SecondApprovalRequest>(&mut all);
    root::<applications::OwnershipRequest>(&mut all);
    root::<applications::ReleaseRequest>(&mut all);
    root::<payments::SettingsView>(&mut all);
    root::<List<prices::PriceView>>(&mut all);
    root::<prices::SetPriceRequest>(&mut all);
    root::<programme::DepositView>(&mut all);
    root::<programme::OverviewView>(&mut all);
    root::<List<programme::BudgetLineView>>(&mut all);
    root::<programme::BudgetLineRequest>(&mut all);
    root::<programme::DepositRequest>(&mut all);
    root::<programme::MoveView>(&mut all);
    root::<programme::MoveRequest>(&mut all);
    root::<payments::ContributionView>(&mut all);
    root::<payments::TopUpsView>(&mut all);
    root::<payments::PaymentWithEvents>(&mut all);
    root::<voucherd_domain::RegionInput>(&mut all);
    root::<List<views::UsageView>>(&mut all);
    root::<List<views::TransferView>>(&mut all);
    root::<voucherd_api::error::Problem<'static>>(&mut all);
    root::<voucherd_domain::ApplicationStatus>(&mut all);
    root::<voucherd_domain::KeyMode>(&mut all);
    root::<voucherd_domain::PaymentStatus>(&mut all);
    root::<voucherd_domain::Role>(&mut all);
    root::<List<challenges::ChallengeView>>(&mut all);
    root::<challenges::ChallengeRequest>(&mut all);
    root::<List<challenges::EntryView>>(&mut all);
    root::<List<challenges::Assessment>>(&mut all);
    root::<challenges::EntryRequest>(&mut all);
    root::<challenges::EntryUpdate>(&mut all);
    root::<challenges::ScoreRequest>(&mut all);
    root::<challenges::ScoreView>(&mut all);
    root::<challenges::ConflictRequest>(&mut all);
    root::<List<challenges::ConflictView>>(&mut all);
    root::<consulting::SlotRequest>(&mut all);
    root::<List<consulting::SlotView>>(&mut all);
    root::<consulting::BookingRequest>(&mut all);
    root::<List<consulting::BookingView>>(&mut all);
    root::<consulting::OutcomeRequest>(&mut all);
    root::<consulting::AllowanceView>(&mut all);
    root::<incentives::RuleRequest>(&mut all);
    root::<List<incentives::RuleView>>(&mut all);
    root::<List<incentives::AppliedView>>(&mut all);
    root::<applications::EvaluationView>(&mut all);
    root::<List<reports::ReportView>>(&mut all);
    root::<voucherd_worker::report::document::Report>(&mut all);
    root::<voucherd_worker::report::document::PublicReport>(&mut all);
    root::<List<operations::RunView>>(&mut all);
    root::<List<operations::ReconciliationView>>(&mut all);
    root::<List<operations::NotificationView>>(&mut all);
    root::<List<programme::AuditView>>(&mut all);
    root::<operations::OverrunsView>(&mut all);
    root::<applications::DecidedView>(&mut all);
    root::<payments::WebhookReceipt>(&mut all);
    root::<List<payments::PaymentWithEvents>>(&mut all);
    root::<voucherd_api::service::vouchers::CreateKeyRequest>(&mut all);
    root::<views::Health>(&mut all);
    root::<views::Readiness>(&mut all);
    root::<prices::ModelName>(&mut all);
    root::<voucherd_api::proxy::OpenAIError<'static>>(&mut all);
    all.extend(voucherd_api::proxy::contract::requests());
    close_variants(&mut all, &["IncentiveEffect", "IncentiveTrigger"]);
    all
}

/// Marks each variant of the named internally tagged enums as refusing unknown properties.
/// Their types carry serde's `deny_unknown_fields`, which utoipa states for structs but not
/// for an enum's variants; without it the document would accept bodies the server refuses.
fn close_variants(all: &mut [Named], names: &[&str]) {
    use utoipa::openapi::schema::AdditionalProperties;
    for (name, schema) in all.iter_mut() {
        if !names.contains(&name.as_str()) {
            continue;
        }
        if let RefOr::T(Schema::OneOf(one)) = schema {
            for item in &mut one.items {
                if let RefOr::T(Schema::Object(variant)) = item {
                    variant.additional_properties =
                        Some(Box::new(AdditionalProperties::FreeForm(false)));
                }
            }
        }
    }
}

/// The document, as YAML.
pub fn document() -> Result<String, OpenApiError> {
    let mut doc: Value = serde_yaml::from_str(WRITTEN)?;
    set_access(&mut doc)?;
    add_schemas(&mut doc, schemas())?;
    check_refs(&doc)?;
    Ok(unambiguous_yaml(doc)?)
}

/// Words that YAML 1.1 readers (PyYAML, which schemathesis uses, among them) take for booleans.
const YAML_11_BOOLEANS: [&str; 22] = [
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
    "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
];

/// A string that only marks where a YAML 1.1 boolean word must be written quoted.
const QUOTE_MARK: &str = "__voucherd_quote__";

/// YAML whose strings every reader takes for strings. serde_yaml writes YAML 1.2, where `yes`
/// is a plain string, so an enum of `[yes, no]` would reach a YAML 1.1 reader as booleans: each
/// such string is swapped for a marked one before writing and quoted after.
fn unambiguous_yaml(mut doc: Value) -> Result<String, serde_yaml::Error> {
    fn mark(value: &mut Value) {
        match value {
            Value::String(s) if YAML_11_BOOLEANS.contains(&s.as_str()) => {
                *s = format!("{QUOTE_MARK}{s}{QUOTE_MARK}");
            }
            Value::Sequence(items) => items.iter_mut().for_each(mark),
            Value::Mapping(map) => {
                let entries = std::mem::take(map);
                for (mut key, mut inner) in entries {
                    mark(&mut key);
                    mark(&mut inner);
                    map.insert(key, inner);
                }
            }
            _ => {}
        }
    }
    mark(&mut doc);
    let mut text = serde_yaml::to_string(&doc)?;
    for word in YAML_11_BOOLEANS {
        text = text.replace(
            &format!("{QUOTE_MARK}{word}{QUOTE_MARK}"),
            &format!("'{word}'"),
        );
    }
    Ok(text)
}

fn child<'a>(value: &'a mut Value, key: &str) -> Result<&'a mut Mapping, OpenApiError> {
    value
        .get_mut(key)
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| OpenApiError::Missing(key.to_string()))
}

/// `x-access` as the document spells it, and the security scheme that carries it.
fn access_of(access: Access, page: bool) -> (Value, Value) {
    let scheme = |name: &str| {
        let mut requirement = Mapping::new();
        requirement.insert(name.into(), Value::Sequence(Vec::new()));
        Value::Sequence(vec![Value::Mapping(requirement)])
    };
    let none = Value::Sequence(Vec::new());
    match access {
        Access::Public => ("public".into(), none),
        // The proxy checks the key itself; the sandbox is reached only through the proxy.
        Access::ApiKey => ("api_key".into(), scheme("voucherKey")),
        Access::Sandbox => ("sandbox".into(), none),
        Access::Metrics => ("metrics_token".into(), scheme("metricsToken")),
        Access::Roles(roles) => (
            Value::Sequence(roles.iter().map(|r| r.as_str().into()).collect()),
            scheme(if page { "cookieAuth" } else { "bearerAuth" }),
        ),
    }
}

/// Writes each operation's `x-access` and `security` from the tables, right after its
/// summary, and checks that the document lists exactly the operations served.
fn set_access(doc: &mut Value) -> Result<(), OpenApiError> {
    let served = ROUTES
        .iter()
        .map(|r| (r.method, r.path, r.access, false))
        .chain(
            voucherd_admin::PAGES
                .iter()
                .map(|p| (p.method, p.path, p.access(), true)),
        );
    let paths = child(doc, "paths")?;
    let mut seen = BTreeSet::new();
    for (method, path, access, page) in served {
        let undocumented = || OpenApiError::Undocumented {
            method: method.to_string(),
            path: path.to_string(),
        };
        let operation = paths
            .get_mut(path)
            .and_then(|item| item.get_mut(method))
            .and_then(Value::as_mapping_mut)
            .ok_or_else(undocumented)?;
        let (x_access, security) = access_of(access, page);
        let mut rebuilt = Mapping::new();
        for (key, value) in std::mem::take(operation) {
            let after = key.as_str() == Some("summary");
            rebuilt.insert(key, value);
            if after {
                rebuilt.insert("x-access".into(), x_access.clone());
                rebuilt.insert("security".into(), security.clone());
            }
        }
        if !rebuilt.contains_key("x-access") {
            return Err(OpenApiError::Missing(format!("summary of {method} {path}")));
        }
        add_standard_responses(&mut rebuilt, path, access, page);
        *operation = rebuilt;
        seen.insert((method.to_string(), path.to_string()));
    }
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    for (path, item) in paths.iter() {
        for method in item.as_mapping().into_iter().flat_map(|m| m.keys()) {
            let (Some(path), Some(method)) = (path.as_str(), method.as_str()) else {
                continue;
            };
            if METHODS.contains(&method) && !seen.contains(&(method.to_string(), path.to_string()))
            {
                return Err(OpenApiError::NotServed {
                    method: method.to_string(),
                    path: path.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// A response of the REST API's problem+json shape.
fn problem(description: String) -> Value {
    response(
        description,
        "application/problem+json",
        "$ref",
        "#/components/schemas/Problem",
    )
}

/// A response of the pages: an HTML page.
fn html(description: String) -> Value {
    response(description, "text/html", "type", "string")
}

fn response(description: String, media: &str, key: &str, schema: &str) -> Value {
    let mut schema_of = Mapping::new();
    schema_of.insert(key.into(), schema.into());
    let mut content_of = Mapping::new();
    content_of.insert("schema".into(), Value::Mapping(schema_of));
    let mut content = Mapping::new();
    content.insert(media.into(), Value::Mapping(content_of));
    let mut response = Mapping::new();
    response.insert("description".into(), description.into());
    response.insert("content".into(), Value::Mapping(content));
    Value::Mapping(response)
}

/// The refusals every operation of a kind shares, from what the guards and extractors do: a
/// role route without a valid token (401), one whose roles leave some out (403), a JSON body
/// over the limit or of another media type (413, 415), the database away (503); for a page,
/// the same as pages. An operation's own wording, written by hand, wins. The responses end up
/// in status order.
fn add_standard_responses(operation: &mut Mapping, path: &str, access: Access, page: bool) {
    let roles = match access {
        Access::Roles(roles) => Some(roles),
        _ => None,
    };
    let some_roles_refused =
        roles.is_some_and(|roles| Role::ALL.iter().any(|role| !roles.contains(role)));
    let json_body = operation
        .get("requestBody")
        .and_then(|body| body.get("content"))
        .and_then(|content| content.get("application/json"))
        .is_some();
    let posted = operation.contains_key("requestBody");
    // A refusal of the REST API: its words, and the code the body carries.
    let refusal = |words: &str, code: ErrorCode| problem(format!("{words} (`{}`).", code.as_str()));
    let mut standard: Vec<(&str, Value)> = Vec::new();
    if page {
        if some_roles_refused {
            standard.push(("403", html("Signed in with a role that may not open this page: a GOV.UK \"You cannot open this page\" page.".to_string())));
        }
        if posted {
            standard.push(("413", html(format!("The form exceeds the pages' {} KiB limit: a \"Your answers could not be read\" page; nothing is done.", voucherd_admin::FORM_LIMIT_BYTES / 1024))));
        }
        if roles.is_some() {
            standard.push(("503", html("The database or a service the page needs is unavailable (for payments, also Stripe unavailable or payments disabled): a GOV.UK \"Sorry, there is a problem with the service\" page.".to_string())));
        }
    } else if path.starts_with("/api/v1/") {
        if roles.is_some() {
            let words = "Missing, invalid or expired access token";
            standard.push(("401", refusal(words, ErrorCode::Unauthenticated)));
        }
        if some_roles_refused {
            let words = "The caller's role may not call this route";
            standard.push(("403", refusal(words, ErrorCode::Forbidden)));
        }
        if json_body {
            let words = "The body exceeds the configured size limit";
            standard.push(("413", refusal(words, ErrorCode::PayloadTooLarge)));
            let words = "The body is not `application/json`";
            standard.push(("415", refusal(words, ErrorCode::UnsupportedMediaType)));
        }
        let words = "The database is unavailable; retry shortly";
        standard.push(("503", refusal(words, ErrorCode::Unavailable)));
    }
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_mapping_mut)
    else {
        return;
    };
    // A status written without quotes (`403:`) is a number to YAML: every status is made
    // text before it is compared, so a written response still wins.
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses)
        .into_iter()
        .map(|(status, response)| (status_text(&status), response))
        .collect();
    for (status, response) in standard {
        if !sorted.iter().any(|(written, _)| written == status) {
            sorted.push((status.to_string(), response));
        }
    }
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    *responses = sorted
        .into_iter()
        .map(|(status, response)| (Value::String(status), response))
        .collect();
}

/// A response's status as text, however YAML read it (`'403'` or `403`; `default`).
fn status_text(status: &Value) -> String {
    match status {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
    }
}

/// Adds the generated schemas; the document's schemas are then in name order.
fn add_schemas(doc: &mut Value, generated: Vec<Named>) -> Result<(), OpenApiError> {
    let components = child(doc, "components")?;
    let schemas = components
        .get_mut("schemas")
        .and_then(Value::as_mapping_mut)
        .ok_or_else(|| OpenApiError::Missing("components.schemas".to_string()))?;
    let mut all: Vec<(String, Value)> = Vec::new();
    for (name, schema) in std::mem::take(schemas) {
        // Nothing written is dropped: a schema whose name YAML reads as something other
        // than text (`null`, `true`, a number) stops generation.
        let Value::String(name) = name else {
            return Err(OpenApiError::NotText(format!("the schema {name:?}")));
        };
        all.push((name, schema));
    }
    let written: BTreeSet<String> = all.iter().map(|(name, _)| name.clone()).collect();
    let mut added = BTreeSet::new();
    for (name, schema) in generated {
        if written.contains(&name) {
            return Err(OpenApiError::Twice(name));
        }
        // A type reached from several roots is listed once.
        if added.insert(name.clone()) {
            all.push((name, serde_yaml::to_value(schema)?));
        }
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    *schemas = all
        .into_iter()
        .map(|(k, v)| (Value::String(k), v))
        .collect();
    Ok(())
}

/// Every `$ref` in the document names something in it.
fn check_refs(doc: &Value) -> Result<(), OpenApiError> {
    fn walk(doc: &Value, value: &Value) -> Result<(), OpenApiError> {
        match value {
            Value::Mapping(map) => {
                for (key, inner) in map {
                    if let (Some("$ref"), Some(target)) = (key.as_str(), inner.as_str()) {
                        let found = target
                            .strip_prefix("#/")
                            .map(|pointer| {
                                // JSON pointer escapes (RFC 6901): `~1` is `/`, `~0` is `~`.
                                pointer
                                    .split('/')
                                    .map(|part| part.replace("~1", "/").replace("~0", "~"))
                                    .try_fold(doc, |at, part| at.get(part.as_str()))
                                    .is_some()
                            })
                            .unwrap_or(false);
                        if !found {
                            return Err(OpenApiError::Dangling(target.to_string()));
                        }
                    }
                    walk(doc, inner)?;
                }
                Ok(())
            }
            Value::Sequence(items) => items.iter().try_for_each(|item| walk(doc, item)),
            _ => Ok(()),
        }
    }
    walk(doc, doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dangling_reference_stops_generation() {
        let doc: Value = serde_yaml::from_str(
            "components:\n  schemas:\n    A:\n      $ref: '#/components/schemas/B'\n",
        )
        .unwrap();
        assert!(
            matches!(check_refs(&doc), Err(OpenApiError::Dangling(t)) if t == "#/components/schemas/B")
        );
    }

    #[test]
    fn a_schema_written_and_generated_stops_generation() {
        let mut doc: Value =
            serde_yaml::from_str("components:\n  schemas:\n    Money:\n      type: string\n")
                .unwrap();
        let generated = vec![(
            "Money".to_string(),
            <voucherd_domain::money::Money as utoipa::PartialSchema>::schema(),
        )];
        assert!(
            matches!(add_schemas(&mut doc, generated), Err(OpenApiError::Twice(n)) if n == "Money")
        );
    }

    #[test]
    fn an_operation_gets_the_refusals_of_its_kind_and_keeps_its_own_wording() {
        let mut operation: Mapping = serde_yaml::from_str(
            "requestBody:\n  content:\n    application/json: {}\nresponses:\n  '200': {description: ok}\n  '403': {description: Only administrators.}\n",
        )
        .unwrap();
        add_standard_responses(
            &mut operation,
            "/api/v1/things",
            Access::Roles(&[Role::Admin]),
            false,
        );
        let responses = operation["responses"].as_mapping().unwrap();
        let codes: Vec<&str> = responses.keys().filter_map(Value::as_str).collect();
        assert_eq!(codes, ["200", "401", "403", "413", "415", "503"]);
        assert_eq!(
            responses["403"]["description"],
            Value::from("Only administrators.")
        );
        assert_eq!(
            responses["401"]["description"],
            Value::from("Missing, invalid or expired access token (`unauthenticated`).")
        );

        // Every role may call it: no 403; no body: no 413 or 415.
        let mut operation: Mapping =
            serde_yaml::from_str("responses:\n  '200': {description: ok}\n").unwrap();
        add_standard_responses(
            &mut operation,
            "/api/v1/me",
            Access::Roles(Role::ALL),
            false,
        );
        let codes: Vec<&str> = operation["responses"]
            .as_mapping()
            .unwrap()
            .keys()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(codes, ["200", "401", "503"]);
    }

    #[test]
    fn a_reference_into_a_path_is_followed_through_its_escapes() {
        let doc: Value = serde_yaml::from_str(
            "paths:\n  /api/v1/me:\n    get: {}\ncomponents:\n  x:\n    $ref: '#/paths/~1api~1v1~1me/get'\n",
        )
        .unwrap();
        assert!(check_refs(&doc).is_ok());
    }

    #[test]
    fn a_schema_not_named_by_text_stops_generation() {
        let mut doc: Value =
            serde_yaml::from_str("components:\n  schemas:\n    null:\n      type: string\n")
                .unwrap();
        assert!(matches!(
            add_schemas(&mut doc, Vec::new()),
            Err(OpenApiError::NotText(_))
        ));
    }

    #[test]
    fn a_status_written_without_quotes_still_wins() {
        let mut operation: Mapping = serde_yaml::from_str(
            "responses:\n  200: {description: ok}\n  503: {description: Payments are off.}\n",
        )
        .unwrap();
        add_standard_responses(&mut operation, "/api/v1/topups", Access::Public, false);
        let responses = operation["responses"].as_mapping().unwrap();
        let codes: Vec<&str> = responses.keys().filter_map(Value::as_str).collect();
        assert_eq!(codes, ["200", "503"]);
        assert_eq!(
            responses["503"]["description"],
            Value::from("Payments are off.")
        );
    }

    #[test]
    fn yaml_11_boolean_words_stay_strings() {
        let doc: Value =
            serde_yaml::from_str("enum: ['y', 'yes', 'no', 'maybe']\n'on': true\n").unwrap();
        assert_eq!(
            unambiguous_yaml(doc).unwrap(),
            "enum:\n- 'y'\n- 'yes'\n- 'no'\n- maybe\n'on': true\n"
        );
    }

    #[test]
    fn the_written_part_and_the_tables_make_a_document() {
        let text = document().unwrap();
        let doc: Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(
            doc["components"]["schemas"]["Voucher"]["properties"]["status"]["$ref"],
            Value::from("#/components/schemas/VoucherStatus")
        );
        assert_eq!(
            doc["paths"]["/api/v1/vouchers/{id}"]["get"]["x-access"],
            serde_yaml::from_str::<Value>("[applicant, admin]").unwrap()
        );
    }
}
