//! The `seam` command line.

pub mod audit;
pub mod backfill;
#[cfg(feature = "sim")]
pub mod demo;
pub mod dlq;
pub mod doctor;
pub mod init;
pub mod journal;
pub mod link;
pub mod pack;
pub mod reconcile;
pub mod salesforce;
pub mod serve;
pub mod servicenow;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod simulated;
