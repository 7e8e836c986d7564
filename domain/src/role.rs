use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Who a user is to the programme. Every route names the roles that may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Applicant,
    Admin,
    Assessor,
    /// Gives technical consulting sessions booked against vouchers.
    Adviser,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Applicant, Role::Admin, Role::Assessor, Role::Adviser];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Applicant => "applicant",
            Role::Admin => "admin",
            Role::Assessor => "assessor",
            Role::Adviser => "adviser",
        }
    }

    /// The role in a sentence: "signed in as an administrator".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Applicant => "an applicant",
            Role::Admin => "an administrator",
            Role::Assessor => "an assessor",
            Role::Adviser => "an adviser",
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
