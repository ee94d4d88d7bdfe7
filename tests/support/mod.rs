//! Test support shared by the integration tests.
//!
//! Each integration test binary compiles this module on its own and uses only part of it,
//! hence the crate-wide `dead_code` allowance below (the one place it is allowed).
#![allow(dead_code)]

pub mod bot;
pub mod fake_discord;
pub mod logs;
pub mod world;
