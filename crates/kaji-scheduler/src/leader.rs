//! Leader election: the one elector of kaji-runtime ([`kaji_runtime::leader`]), shared with the
//! controller manager; re-exported here for the scheduler's callers.

pub use kaji_runtime::leader::{LeaderElectionConfig, LeaderElector, default_identity};
