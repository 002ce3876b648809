//! The server's user directory: the configured test users, plus users that tests mint on the fly
//! by asking for a token for an unknown slug.

use std::sync::Mutex;

use crate::TestUser;
use crate::sync::lock;

pub(crate) struct Users {
    users: Mutex<Vec<TestUser>>,
}

impl Users {
    pub(crate) fn new(users: Vec<TestUser>) -> Users {
        Users {
            users: Mutex::new(users),
        }
    }

    /// The first configured user: the one auto-approved OAuth and the demo act as.
    pub(crate) fn first(&self) -> Option<TestUser> {
        lock(&self.users).first().cloned()
    }

    pub(crate) fn all(&self) -> Vec<TestUser> {
        lock(&self.users).clone()
    }

    pub(crate) fn find(&self, slug: &str) -> Option<TestUser> {
        lock(&self.users)
            .iter()
            .find(|user| user.slug == slug)
            .cloned()
    }

    /// The user called `slug`, created with the next free id if there is none yet.
    pub(crate) fn find_or_create(&self, slug: &str) -> TestUser {
        let mut users = lock(&self.users);
        if let Some(user) = users.iter().find(|user| user.slug == slug) {
            return user.clone();
        }
        let id = users.iter().map(|user| user.id).max().unwrap_or(0) + 1;
        let user = TestUser {
            id,
            slug: slug.to_owned(),
        };
        users.push(user.clone());
        user
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_slugs_get_the_next_free_id() {
        let users = Users::new(vec![TestUser {
            id: 7,
            slug: "sean".into(),
        }]);
        assert_eq!(users.find_or_create("sean").id, 7);
        let new = users.find_or_create("mallory");
        assert_eq!(new.id, 8);
        assert_eq!(users.find("mallory"), Some(new));
        assert_eq!(users.first().map(|user| user.slug), Some("sean".into()));
    }
}
