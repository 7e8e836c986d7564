//! The published contract: openapi.yaml is what the code generates, lists exactly the served
//! routes with their access, and documents the cross-cutting behaviour every route shares.

use crate::helpers::*;
use std::collections::BTreeSet;
use voucherd_api::routes::{Access, ROUTES};

fn spec() -> serde_yaml::Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn access_of(op: &serde_yaml::Value) -> String {
    match &op["x-access"] {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Sequence(roles) => roles
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
        other => panic!("x-access missing or malformed: {other:?}"),
    }
}

/// `openapi.yaml` is generated (`voucherd openapi`): editing it by hand, or changing a route's
/// access or a served type without writing the file again, fails here.
#[test]
fn openapi_yaml_is_what_the_code_generates() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let generated = voucherd::openapi::document().unwrap();
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or(
                committed.lines().count().min(generated.lines().count()),
                |i| i,
            )
            + 1;
        panic!(
            "openapi.yaml differs from what the code generates, first at line {line}; \
             write it again with `cargo run -q -- openapi > openapi.yaml`"
        );
    }
}

#[test]
fn openapi_lists_exactly_the_routes_served_and_who_may_call_them() {
    const METHODS: [&str; 8] = [
        "get", "put", "post", "delete", "patch", "head", "options", "trace",
    ];
    let spec = spec();
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        for (method, op) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if METHODS.contains(&method) {
                documented.insert((
                    method.to_string(),
                    path.as_str().unwrap().to_string(),
                    access_of(op),
                ));
            }
        }
    }
    let access_name = |access: Access| match access {
        Access::Public => "public".to_string(),
        Access::ApiKey => "api_key".to_string(),
        Access::Sandbox => "sandbox".to_string(),
        Access::Metrics => "metrics_token".to_string(),
        Access::Roles(roles) => roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    let mut served: BTreeSet<(String, String, String)> = ROUTES
        .iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_string(),
                access_name(r.access),
            )
        })
        .collect();
    for page in voucherd_admin::PAGES {
        served.insert((
            page.method.to_string(),
            page.path.to_string(),
            access_name(page.access()),
        ));
    }
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}\ndocumented but not served: {extra:?}"
    );
}

/// What the server answers to a body it cannot take is documented wherever a body is taken: on
/// the REST API a JSON body may be malformed (400), too large (413), of another media type
/// (415) or invalid (422); the sandbox refuses the first three; a page's form may be too large
/// (413). A path with a `{parameter}` may name nothing (404), and every parameter is declared,
/// so a client knows what to send.
#[test]
fn openapi_documents_every_refusal_of_a_body_and_every_path_parameter() {
    let spec = spec();
    let parameter_name = |p: &serde_yaml::Value| -> Option<String> {
        let p = match p["$ref"].as_str() {
            Some(r) => {
                &spec["components"]["parameters"]
                    [r.strip_prefix("#/components/parameters/").unwrap_or(r)]
            }
            None => p,
        };
        (p["in"] == "path").then(|| p["name"].as_str().unwrap_or_default().to_string())
    };
    let mut missing = Vec::new();
    for (path, item) in spec["paths"].as_mapping().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in item.as_mapping().unwrap() {
            let Some(method) = method.as_str() else {
                continue;
            };
            let body = &op["requestBody"]["content"];
            let mut need: Vec<&str> = Vec::new();
            if !body["application/json"].is_null() && path.starts_with("/api/v1/") {
                need.extend(["400", "413", "415", "422"]);
            }
            if !body["application/json"].is_null() && path.starts_with("/sandbox/v1/") {
                need.extend(["400", "413", "415"]);
            }
            if !body["application/x-www-form-urlencoded"].is_null() {
                need.push("413");
            }
            // A path with a parameter names something that may not exist.
            if path.contains('{') {
                need.push("404");
            }
            for code in need {
                if op["responses"][code].is_null() {
                    missing.push(format!("{method} {path}: response {code}"));
                }
            }
            let declared: Vec<String> = op["parameters"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(parameter_name)
                .collect();
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                if !declared.iter().any(|d| d == name) {
                    missing.push(format!("{method} {path}: path parameter {name}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not documented:\n{}",
        missing.join("\n")
    );
}

on_both_backends!(
    every_response_carries_a_request_id_and_unknown_paths_are_problems,
    health_and_readiness_answer,
    registration_and_login_refuse_bad_credentials,
);

async fn every_response_carries_a_request_id_and_unknown_paths_are_problems(app: TestApp) {
    let resp = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("x-request-id", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-123");
    assert_problem(resp, 404, "not_found").await;
    let resp = app.client.get(app.url("/api/v1/me")).send().await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_problem(resp, 401, "unauthenticated").await;
    // An unsafe id is replaced, not echoed.
    for unsafe_id in ["a b".to_string(), "x".repeat(65)] {
        let resp = app
            .client
            .get(app.url("/healthz"))
            .header("x-request-id", &unsafe_id)
            .send()
            .await
            .unwrap();
        assert!(uuid::Uuid::parse_str(resp.headers()["x-request-id"].to_str().unwrap()).is_ok());
    }
}

async fn health_and_readiness_answer(app: TestApp) {
    let h = body(app.client.get(app.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(h["status"], "ok");
    let r = body(app.client.get(app.url("/readyz")).send().await.unwrap()).await;
    assert_eq!(r["status"], "ready");
    let expected = if app.database_url.starts_with("sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
    assert_eq!(r["database"], expected);
    let page = app.client.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains(r#"<h1 class="govuk-heading-xl">Get an AI voucher for your business</h1>"#));
}

async fn registration_and_login_refuse_bad_credentials(app: TestApp) {
    assert_eq!(app.register("Ada@Example.org").await.status().as_u16(), 201);
    assert_problem(app.register("ada@example.org").await, 409, "email_taken").await;
    let resp = app
        .client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "not-an-email", "password": "short", "full_name": ""}))
        .send()
        .await
        .unwrap();
    let p = assert_problem(resp, 422, "validation_failed").await;
    assert_eq!(fields(&p), ["email", "full_name", "password"]);
    assert_problem(
        app.login("ada@example.org", "wrong password!!").await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_problem(
        app.login("nobody@example.org", PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    let ok = body(app.login("ADA@example.org", PASSWORD).await).await;
    assert_eq!(ok["token_type"], "Bearer");
    assert_eq!(ok["expires_in"], 3600);
    let lower = app
        .client
        .get(app.url("/api/v1/me"))
        .header(
            "authorization",
            format!("bearer {}", ok["access_token"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        lower.status().as_u16(),
        200,
        "the scheme is case-insensitive"
    );
    let resp = app.get("/api/v1/me", "not.a.token").await;
    assert_problem(resp, 401, "unauthenticated").await;
}

#[tokio::test]
async fn each_role_serves_only_its_own_routes() {
    use voucherd::Role;
    for backend in [
        voucherd_store::Backend::Sqlite,
        voucherd_store::Backend::Postgres,
    ] {
        let api = spawn_role(backend, Role::Api, |_| {}).await;
        assert_eq!(
            api.client
                .get(api.url("/api/v1/prices"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        assert_problem(
            api.client.get(api.url("/v1/models")).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
        let proxy = spawn_role(backend, Role::Proxy, |c| c.jwt_secret = None).await;
        assert_eq!(
            proxy
                .client
                .get(proxy.url("/readyz"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
        let resp = proxy
            .client
            .get(proxy.url("/v1/models"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(body(resp).await["error"]["code"], "invalid_api_key");
        assert_problem(
            proxy
                .client
                .get(proxy.url("/api/v1/prices"))
                .send()
                .await
                .unwrap(),
            404,
            "not_found",
        )
        .await;
        assert_eq!(
            proxy
                .client
                .get(proxy.url("/"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            404
        );
    }
}
