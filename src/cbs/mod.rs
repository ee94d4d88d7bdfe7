//! Talking to the AhsayCBS backup server.

pub mod model;
