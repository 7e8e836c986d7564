use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Who a user is to the programme. Every route names the roles that may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Applicant,
    Admin,
    Assessor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Applicant, Role::Admin, Role::Assessor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Applicant => "applicant",
            Role::Admin => "admin",
            Role::Assessor => "assessor",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}"))
    }
}
