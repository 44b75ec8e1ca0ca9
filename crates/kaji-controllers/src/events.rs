//! The controllers record Events with kaji-runtime's one recorder (client-go's
//! `EventRecorder` with its correlator); re-exported here for the controllers' files.

pub use kaji_runtime::events::*;
