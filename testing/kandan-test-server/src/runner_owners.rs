//! Which user owns which runner id: the first user to join `local_runner:<id>` or to open its
//! forward tunnel. Only that user may open the runner's tunnel (protocol §6.4); like the chat,
//! ownership is server data and survives restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sync::lock;

#[derive(Default)]
pub(crate) struct RunnerOwners {
    owners: Mutex<HashMap<String, i64>>,
}

impl RunnerOwners {
    /// Makes `user_id` the owner of `runner_id` unless someone else already is; `Err(owner)`
    /// then names that owner.
    pub(crate) fn claim(&self, runner_id: &str, user_id: i64) -> Result<(), i64> {
        let mut owners = lock(&self.owners);
        match owners.get(runner_id) {
            Some(&owner) if owner != user_id => Err(owner),
            Some(_) => Ok(()),
            None => {
                owners.insert(runner_id.to_owned(), user_id);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_claim_wins() {
        let owners = RunnerOwners::default();
        assert_eq!(owners.claim("r1", 1), Ok(()));
        assert_eq!(owners.claim("r1", 1), Ok(()));
        assert_eq!(owners.claim("r1", 2), Err(1));
        assert_eq!(owners.claim("r2", 2), Ok(()));
    }
}
