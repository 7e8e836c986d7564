//! Ids as types: a voucher's id cannot be passed where an API key's is expected. [`text_id!`]
//! gives each one serde as a plain string, `as_str`, `Display` and, with the `sql` feature,
//! diesel's `ToSql` and `FromSql` for `Text` on every backend. Ids are opaque: one that names
//! nothing is found nowhere, so making one from any text is safe.

/// Declares an id stored as text: `text_id!(/// doc \n pub struct Name;)`.
#[macro_export]
macro_rules! text_id {
    ($(#[$meta:meta])* pub struct $name:ident;) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
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

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        #[cfg(feature = "sql")]
        impl<DB> diesel::serialize::ToSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            str: diesel::serialize::ToSql<diesel::sql_types::Text, DB>,
        {
            fn to_sql<'b>(
                &'b self,
                out: &mut diesel::serialize::Output<'b, '_, DB>,
            ) -> diesel::serialize::Result {
                <str as diesel::serialize::ToSql<diesel::sql_types::Text, DB>>::to_sql(&self.0, out)
            }
        }

        #[cfg(feature = "sql")]
        impl<DB> diesel::deserialize::FromSql<diesel::sql_types::Text, DB> for $name
        where
            DB: diesel::backend::Backend,
            String: diesel::deserialize::FromSql<diesel::sql_types::Text, DB>,
        {
            fn from_sql(bytes: DB::RawValue<'_>) -> diesel::deserialize::Result<Self> {
                <String as diesel::deserialize::FromSql<diesel::sql_types::Text, DB>>::from_sql(bytes)
                    .map($name)
            }
        }
    };
}

text_id! {
    /// An API key's id (not its secret).
    pub struct ApiKeyId;
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
}
