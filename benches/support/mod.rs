//! Support shared by the benchmarks and the tests: the instant AWS backend
//! ([`responder`]) and /proc readings ([`procfs`]).

pub mod procfs;
pub mod responder;
