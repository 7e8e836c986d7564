crate::text_enum! {
    /// Who a user is to the programme. Every route names the roles that may call it.
    pub enum Role {
        /// An SME.
        Applicant = "applicant",
        /// A programme administrator.
        Admin = "admin",
        /// Scores challenge entries.
        Assessor = "assessor",
        /// Gives technical consulting sessions booked against vouchers.
        Adviser = "adviser",
    }
}

impl Role {
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
