//! Every route × every role: the route table's declaration is what the server enforces.

use crate::helpers::*;
use voucherd_api::routes::{Access, ROUTES};
use voucherd_domain::Role;

on_both_backends!(every_route_admits_exactly_the_roles_it_declares);

async fn every_route_admits_exactly_the_roles_it_declares(app: TestApp) {
    let mut tokens = vec![(None, None)];
    for &role in Role::ALL {
        let token = app
            .user_with_role(
                &format!("{}@programme.gov.uk", role.as_str()),
                role.as_str(),
            )
            .await;
        tokens.push((Some(role), Some(token)));
    }
    // A token signed with another secret is no token at all.
    tokens.push((
        None,
        Some("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4Iiwicm9sZSI6ImFkbWluIn0.c2lnbmF0dXJl".into()),
    ));
    // Signing out ends the session its token names: that route goes last.
    let mut routes: Vec<_> = ROUTES.iter().collect();
    routes.sort_by_key(|r| r.path == "/api/v1/auth/logout");
    for route in routes {
        let path = route
            .path
            .replace("{id}", "00000000-0000-0000-0000-000000000000")
            .replace("{model}", "test-model");
        for (role, token) in &tokens {
            let mut req = app
                .client
                .request(route.method.to_uppercase().parse().unwrap(), app.url(&path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            if route.method != "get" && route.method != "delete" {
                req = req.json(&serde_json::json!({}));
            }
            let status = req.send().await.unwrap().status().as_u16();
            let who = format!("{} {} as {:?}", route.method, route.path, role);
            match route.access {
                Access::Public => assert!(status != 401 && status != 403, "{who}: {status}"),
                Access::ApiKey => assert_eq!(status, 401, "{who}: a user token is not an API key"),
                Access::Sandbox => {
                    assert_eq!(status, 401, "{who}: only the proxy reaches the sandbox")
                }
                Access::Metrics => {
                    assert_eq!(status, 404, "{who}: a user token is not the metrics token")
                }
                Access::Roles(allowed) => match role {
                    None => assert_eq!(status, 401, "{who}"),
                    Some(r) if allowed.contains(r) => {
                        assert!(status != 401 && status != 403, "{who}: {status}")
                    }
                    Some(_) => assert_eq!(status, 403, "{who}"),
                },
            }
        }
    }
}
