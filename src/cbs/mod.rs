//! Talking to the AhsayCBS backup server: the HTTP client ([`client`]) and the tolerant
//! restore-job model it decodes replies into ([`model`]).

pub mod client;
pub mod model;

pub use client::{CbsClient, CbsClientConfig, CbsError, OutageReason};
