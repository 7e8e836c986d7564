use crate::db::Store;
use crate::error::{is_unique_violation, StoreError, StoreResult};
use crate::schema::users;
use chrono::NaiveDateTime;
use diesel::prelude::*;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: String,
    /// Lower-cased by the caller, so the UNIQUE index is case-insensitive in effect.
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub role: String,
    pub created_at: NaiveDateTime,
}

impl Store {
    pub async fn create_user(&self, row: UserRow) -> StoreResult<UserRow> {
        self.write(
            move |c| match diesel::insert_into(users::table).values(&row).execute(c) {
                Ok(_) => Ok(row),
                Err(e) if is_unique_violation(&e) => Err(StoreError::EmailTaken),
                Err(e) => Err(e.into()),
            },
        )
        .await
    }

    pub async fn user_by_email(&self, email: String) -> StoreResult<Option<UserRow>> {
        self.read(move |c| {
            Ok(users::table
                .filter(users::email.eq(email))
                .select(UserRow::as_select())
                .first(c)
                .optional()?)
        })
        .await
    }

    pub async fn user(&self, id: String) -> StoreResult<UserRow> {
        self.read(move |c| {
            users::table
                .find(id)
                .select(UserRow::as_select())
                .first(c)
                .optional()?
                .ok_or(StoreError::NotFound("user"))
        })
        .await
    }
}

impl Store {
    pub async fn count_users(&self) -> StoreResult<i64> {
        self.read(|c| Ok(users::table.count().get_result(c)?)).await
    }
}
