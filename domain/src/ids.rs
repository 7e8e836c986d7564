//! Ids as types: a voucher's id cannot be passed where an API key's is expected. [`text_id!`]
//! gives each one serde as a plain string, `as_str`, `Display`, `From<String>` and, with the
//! `sql` feature, diesel's `ToSql` and `FromSql` for `Text` on every backend. Ids are opaque:
//! one that names nothing is found nowhere, so making one from any text is safe. Each states its
//! own OpenAPI schema (a string named after the type).

/// Declares an id stored as text: `text_id!(/// doc \n pub struct Name;)`.
#[macro_export]
macro_rules! text_id {
    ($(#[$meta:meta])* pub struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[cfg_attr(feature = "sql", derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow))]
        #[cfg_attr(feature = "sql", diesel(sql_type = diesel::sql_types::Text))]
        pub struct $name(String);

        impl $name {
            pub fn new(id: impl Into<String>) -> $name {
                $name(id.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> $name {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> $name {
                $name(id.to_string())
            }
        }

        /// An id read from a path or a form is text until it is looked up.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        /// Hashes and orders as its text, so maps keyed by the id can be searched with text.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        $crate::text_sql!($name, |text: String| Ok($name(text)));
    };
}

text_id! {
    /// An API key's id (not its secret).
    pub struct ApiKeyId;
}

text_id! {
    /// A voucher's id.
    pub struct VoucherId;
}

text_id! {
    /// An application's id.
    pub struct ApplicationId;
}

text_id! {
    /// A user's id: an applicant, an administrator or an assessor.
    pub struct UserId;
}

text_id! {
    /// An innovation challenge's id (one cycle of it).
    pub struct ChallengeId;
}

text_id! {
    /// An entry to a challenge.
    pub struct EntryId;
}

text_id! {
    /// A budget line's id: a part of the programme fund, by financial year and target group.
    pub struct BudgetLineId;
}

text_id! {
    /// A consulting slot's id: an adviser's time that a voucher may book.
    pub struct SlotId;
}

text_id! {
    /// A proxy instance's id: the process that opened a hold, whose holds are settled should
    /// it stop beating.
    pub struct InstanceId;
}

text_id! {
    /// A payment's id (a top-up or a co-funding contribution through Stripe).
    pub struct PaymentId;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_text_on_the_wire() {
        let id = ApiKeyId::new("0193-key");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0193-key\"");
        let back: ApiKeyId = serde_json::from_str("\"0193-key\"").unwrap();
        assert_eq!(
            (back.as_str(), id.to_string()),
            ("0193-key", "0193-key".to_string())
        );
    }

    #[test]
    fn an_id_made_from_its_text_is_the_same_id() {
        let id = VoucherId::from("0193-voucher".to_string());
        assert_eq!(id, VoucherId::new("0193-voucher"));
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"0193-voucher\"");
    }
}
